"""Exact programmatic edits of clip art, their text instructions, and the test of which pairs commute.

A picture is a :class:`Drawing` (the source image's colours and its foreground mask, at the working size) seen
through a :class:`SceneState` of six attributes: foreground colour, background colour, pose (mirror + quarter
turns of the drawing), scale of the drawing, border, and a small badge in a corner. :func:`render` turns
(drawing, state) into the exact uint8 picture; an :class:`Edit` changes one attribute of the state, so the
target of any edit or chain of edits is the exact rendering of the edited state.

Edits act on what the picture shows *now*: "mirror the drawing" flips the current drawing, so mirroring after a
quarter turn is not the same as turning after mirroring (the pose is an element of the dihedral group). Two edits
are claimed to commute when they touch different attributes (:func:`claimed_to_commute`); :func:`commutes` checks a
pair on a real drawing: both orders must be applicable and render to identical pixels. Pairs that fail are
dropped from training and evaluation chains (same colour attribute with two values, mirror with a quarter turn on
an asymmetric drawing, shrink with enlarge ...).

Each edit has several text templates; :func:`parse_instruction` maps a template sentence back to its edit and
names the sentence it cannot parse.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace

import numpy as np

from genir.errors import DatasetError

FG_COLOURS = {"red": (220, 30, 30), "green": (30, 160, 50), "blue": (30, 70, 220), "yellow": (235, 200, 20),
              "purple": (130, 40, 170), "orange": (245, 130, 20)}
BG_COLOURS = {"white": (255, 255, 255), "light blue": (185, 215, 250), "pink": (250, 200, 215),
              "light green": (195, 240, 190), "light yellow": (250, 245, 185), "grey": (200, 200, 200)}
BORDER_COLOURS = {"black": (20, 20, 20), "red": (200, 20, 20), "blue": (20, 50, 200), "green": (20, 140, 40)}
CORNERS = ("top left", "top right", "bottom left", "bottom right")
BADGE_COLOUR = (230, 30, 140)  # magenta: apart from every foreground and border colour
FOREGROUND_THRESHOLD = 235  # a pixel is foreground when its darkest channel is below this (images are on white)

# op -> (attribute it changes, values or None, templates); "{v}" is the value's name
OPS: dict[str, tuple[str, tuple[str, ...] | None, tuple[str, ...]]] = {
    "recolour_fg": ("fg", tuple(FG_COLOURS), (
        "make the drawing {v}", "colour the figure {v}", "change the drawing's colour to {v}",
        "paint the object {v}")),
    "recolour_bg": ("bg", tuple(BG_COLOURS), (
        "make the background {v}", "change the background to {v}", "put it on a {v} background",
        "use a {v} background")),
    "mirror": ("pose", None, (
        "mirror the drawing", "flip the drawing horizontally", "show the drawing mirrored left to right")),
    "rotate_cw": ("pose", None, (
        "rotate the drawing 90 degrees clockwise", "turn the drawing a quarter turn to the right",
        "rotate the figure clockwise by 90 degrees")),
    "rotate_ccw": ("pose", None, (
        "rotate the drawing 90 degrees counterclockwise", "turn the drawing a quarter turn to the left",
        "rotate the figure anticlockwise by 90 degrees")),
    "shrink": ("scale", None, (
        "make the drawing smaller", "shrink the drawing to half its size", "scale the figure down by half")),
    "enlarge": ("scale", None, (
        "make the drawing bigger", "enlarge the drawing to full size", "scale the figure back up")),
    "add_border": ("border", tuple(BORDER_COLOURS), (
        "add a {v} border", "put a {v} frame around the picture", "draw a {v} border around the image")),
    "remove_border": ("border", None, (
        "remove the border", "take the frame off", "delete the border around the picture")),
    "add_badge": ("badge", CORNERS, (
        "add a badge in the {v} corner", "put a small pink dot in the {v} corner", "place a badge at the {v}")),
    "remove_badge": ("badge", None, (
        "remove the badge", "take away the corner badge", "delete the small dot")),
}
IDENTITY_TEMPLATES = ("", "keep it as it is", "leave the picture unchanged", "no change")
FAMILIES = ("fg", "bg", "pose", "scale", "border", "badge")  # = the attributes; border and badge are fine-grained
FINE_GRAINED = ("border", "badge")


@dataclass(frozen=True)
class SceneState:
    """The attributes an edit can change. ``fg``: a colour name or None (the drawing's own colours); ``flip`` and
    ``turns``: the drawing is shown as ``rot90(fliplr^flip(drawing), turns)``; ``small``: drawn at half size;
    ``border``: a colour name or None; ``badge``: a corner or None."""

    fg: str | None = None
    bg: str = "white"
    flip: bool = False
    turns: int = 0
    small: bool = False
    border: str | None = None
    badge: str | None = None


@dataclass(frozen=True)
class Edit:
    """One edit: an operator of :data:`OPS` and its value (a colour or a corner) where it takes one."""

    op: str
    value: str | None = None

    def __post_init__(self):
        if self.op not in OPS:
            raise DatasetError(f"unknown edit {self.op!r}; known: {sorted(OPS)}")
        values = OPS[self.op][1]
        if (values is None) != (self.value is None) or (values is not None and self.value not in values):
            raise DatasetError(f"edit {self.op}: value {self.value!r} not allowed (expected one of {values})")

    @property
    def attribute(self) -> str:
        return OPS[self.op][0]

    def applies(self, s: SceneState) -> bool:
        """Whether the edit changes something: no recolouring to the current colour, no border on a border ..."""
        return {"recolour_fg": lambda: s.fg != self.value, "recolour_bg": lambda: s.bg != self.value,
                "shrink": lambda: not s.small, "enlarge": lambda: s.small,
                "add_border": lambda: s.border is None, "remove_border": lambda: s.border is not None,
                "add_badge": lambda: s.badge is None, "remove_badge": lambda: s.badge is not None,
                }.get(self.op, lambda: True)()

    def apply(self, s: SceneState) -> SceneState:
        """The state after the edit (the caller checks :meth:`applies`)."""
        if self.op == "mirror":  # fliplr(rot90(y, k)) == rot90(fliplr(y), -k)
            return replace(s, flip=not s.flip, turns=(-s.turns) % 4)
        if self.op in ("rotate_cw", "rotate_ccw"):
            return replace(s, turns=(s.turns + (1 if self.op == "rotate_ccw" else -1)) % 4)
        field, value = {"recolour_fg": ("fg", self.value), "recolour_bg": ("bg", self.value),
                        "shrink": ("small", True), "enlarge": ("small", False),
                        "add_border": ("border", self.value), "remove_border": ("border", None),
                        "add_badge": ("badge", self.value), "remove_badge": ("badge", None)}[self.op]
        return replace(s, **{field: value})

    def texts(self) -> list[str]:
        """Every instruction sentence of this edit (one per template)."""
        return [t.replace("{v}", self.value or "") for t in OPS[self.op][2]]

    def __str__(self) -> str:
        return self.op if self.value is None else f"{self.op}({self.value})"


ALL_EDITS: tuple[Edit, ...] = tuple(Edit(op, v) for op, (_, values, _) in OPS.items()
                                    for v in (values if values is not None else (None,)))


@dataclass
class Drawing:
    """A source image at the working size: ``rgb`` (S, S, 3) uint8 and ``mask`` (S, S) bool foreground."""

    rgb: np.ndarray
    mask: np.ndarray

    @classmethod
    def from_image(cls, image, size: int | None = None, where: str = "image") -> Drawing:
        """From an (H, W, 3) uint8 array or an RGB PIL image with H == W, resized (area average) to ``size``;
        DatasetError naming ``where`` for any other shape, dtype or mode."""
        from PIL import Image

        if isinstance(image, Image.Image):
            if image.mode != "RGB":
                raise DatasetError(f"{where}: expected an RGB image, got PIL mode {image.mode!r} "
                                   "(convert it with image.convert('RGB'))")
            image = np.asarray(image)
        arr = np.asarray(image)
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise DatasetError(f"{where}: expected an (H, W, 3) RGB image, got shape {arr.shape}")
        if arr.dtype != np.uint8:
            raise DatasetError(f"{where}: expected uint8 pixels, got {arr.dtype}")
        if arr.shape[0] != arr.shape[1]:
            raise DatasetError(f"{where}: expected a square image, got {arr.shape[0]}x{arr.shape[1]}")
        if size is not None and arr.shape[0] != size:
            if arr.shape[0] % size:
                raise DatasetError(f"{where}: {arr.shape[0]}px cannot be reduced to {size}px by whole blocks")
            arr = np.asarray(Image.fromarray(arr).resize((size, size), Image.BOX))
        if arr.shape[0] % 4:
            raise DatasetError(f"{where}: the working size must be a multiple of 4 (half-size drawings are "
                               f"centred on whole pixels), got {arr.shape[0]}")
        return cls(np.ascontiguousarray(arr), arr.min(axis=2) < FOREGROUND_THRESHOLD)

    @property
    def size(self) -> int:
        return self.rgb.shape[0]

    @property
    def foreground_share(self) -> float:
        return float(self.mask.mean())


def _layer(drawing: Drawing, state: SceneState) -> tuple[np.ndarray, np.ndarray]:
    """The drawing layer, premultiplied: (S, S, 3) colour * alpha and (S, S) alpha, after colour, scale, pose."""
    rgb = drawing.rgb.astype(np.float64) / 255.0
    alpha = drawing.mask.astype(np.float64)
    if state.fg is not None:  # keep the shading: the new colour scaled by the pixel's luminance
        lum = rgb @ np.array([0.299, 0.587, 0.114])
        rgb = np.asarray(FG_COLOURS[state.fg], dtype=np.float64)[None, None, :] / 255.0 * (0.3 + 0.7 * lum)[..., None]
    colour = rgb * alpha[..., None]
    if state.small:  # 2x2 area average, centred
        s = drawing.size
        pooled_c = colour.reshape(s // 2, 2, s // 2, 2, 3).mean(axis=(1, 3))
        pooled_a = alpha.reshape(s // 2, 2, s // 2, 2).mean(axis=(1, 3))
        colour, alpha = np.zeros_like(colour), np.zeros_like(alpha)
        lo, hi = s // 4, s // 4 + s // 2
        colour[lo:hi, lo:hi], alpha[lo:hi, lo:hi] = pooled_c, pooled_a
    if state.flip:
        colour, alpha = colour[:, ::-1], alpha[:, ::-1]
    colour, alpha = np.rot90(colour, state.turns), np.rot90(alpha, state.turns)
    return colour, alpha


def border_width(size: int) -> int:
    return max(1, size // 16)


def badge_geometry(size: int, corner: str) -> tuple[int, int, int]:
    """(row, column, radius) of the badge disc in ``corner``: inside the border, radius ~ size / 10."""
    r = max(2, size // 10)
    near = border_width(size) + 1 + r
    far = size - 1 - near
    row = near if corner.startswith("top") else far
    col = near if corner.endswith("left") else far
    return row, col, r


def render(drawing: Drawing, state: SceneState) -> np.ndarray:
    """The exact picture (S, S, 3) uint8 of ``drawing`` under ``state``."""
    colour, alpha = _layer(drawing, state)
    bg = np.asarray(BG_COLOURS[state.bg], dtype=np.float64) / 255.0
    out = colour + (1.0 - alpha)[..., None] * bg[None, None, :]
    s = drawing.size
    if state.border is not None:
        w, c = border_width(s), np.asarray(BORDER_COLOURS[state.border]) / 255.0
        out[:w], out[-w:], out[:, :w], out[:, -w:] = c, c, c, c
    if state.badge is not None:
        row, col, r = badge_geometry(s, state.badge)
        yy, xx = np.mgrid[:s, :s]
        out[(yy - row) ** 2 + (xx - col) ** 2 <= r * r] = np.asarray(BADGE_COLOUR) / 255.0
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


def apply_chain(state: SceneState, edits) -> SceneState | None:
    """The state after ``edits`` in order, or None when one of them does not apply at its turn."""
    for e in edits:
        if not e.applies(state):
            return None
        state = e.apply(state)
    return state


def claimed_to_commute(a: Edit, b: Edit) -> bool:
    """The claim the data is built on: edits of different attributes commute."""
    return a.attribute != b.attribute


def commutes(drawing: Drawing, state: SceneState, a: Edit, b: Edit) -> bool:
    """Both orders apply (each edit changes something at its turn) and render to identical pixels."""
    ab, ba = apply_chain(state, (a, b)), apply_chain(state, (b, a))
    if ab is None or ba is None:
        return False
    return np.array_equal(render(drawing, ab), render(drawing, ba))


def commuting_pairs(drawing: Drawing, state: SceneState, edits=ALL_EDITS) -> list[tuple[Edit, Edit]]:
    """Every unordered pair of distinct edits that :func:`commutes` on this drawing and state (the filter)."""
    return [(a, b) for a, b in itertools.combinations(edits, 2) if commutes(drawing, state, a, b)]


# -- instructions ------------------------------------------------------------------------------------------------
def instruction_vocabulary() -> list[str]:
    """Every instruction sentence the templates make, identity sentences first (index 0 is the empty one)."""
    return list(IDENTITY_TEMPLATES) + [t for e in ALL_EDITS for t in e.texts()]


def _template_patterns() -> list[tuple[re.Pattern, str, tuple[str, ...] | None]]:
    out = []
    for op, (_, values, templates) in OPS.items():
        for t in templates:
            body = re.escape(t)
            if values is not None:
                alts = "|".join(re.escape(v) for v in sorted(values, key=len, reverse=True))
                body = body.replace(re.escape("{v}"), f"(?P<v>{alts})")
            out.append((re.compile(rf"\s*{body}\s*\.?\s*", re.IGNORECASE), op, values))
    return out


_PATTERNS = _template_patterns()


def parse_instruction(text: str) -> Edit | None:
    """The edit a template sentence asks for (None for an identity sentence such as "" or "no change"); a
    DatasetError naming the sentence when no template matches it."""
    if str(text).strip().rstrip(".").lower() in IDENTITY_TEMPLATES:
        return None
    for pattern, op, values in _PATTERNS:
        m = pattern.fullmatch(str(text))
        if m:
            return Edit(op, m.group("v").lower() if values is not None else None)
    examples = "; ".join(repr(e.texts()[0]) for e in (ALL_EDITS[0], ALL_EDITS[12], ALL_EDITS[-2]))
    raise DatasetError(f"instruction {text!r} matches none of the edit templates (e.g. {examples}; colours "
                       f"{sorted(FG_COLOURS)}, corners {list(CORNERS)})")
