"""Text-guided image editing tasks: what an editor trains on and is evaluated with.

One interface for every source of (reference image, instruction, target) data, so one editor and one recipe
serve them all:

* ``vocabulary``: every instruction text, indexed (the editor embeds each once);
* ``identity_text``: the index of the identity instruction (L_recon: it must return its input);
* ``train_batch(rng, n_single, n_recon, n_chains) -> EditBatch``: one-round examples, identity examples and
  two-round chains (input, first instruction, second instruction, exact target of the chain in either order);
* ``eval_examples(stage) -> EditExamples``: a fixed held-out set of chains with the one-round targets of each edit
  and the two-round target.

:class:`ClipartEditTask` builds them from real clip art with the exact edits of :mod:`genir.data.image_edits`,
split by source image. :class:`TripletEditTask` (in :mod:`genir.data.composed_retrieval`) adapts FashionIQ-style
triplets, whose two captions play the two rounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from genir.data.catalogue import Catalogue
from genir.data.clipart import catalogue_images
from genir.data.image_edits import (
    ALL_EDITS,
    BG_COLOURS,
    BORDER_COLOURS,
    CORNERS,
    FAMILIES,
    FG_COLOURS,
    Drawing,
    Edit,
    SceneState,
    apply_chain,
    commutes,
    instruction_vocabulary,
    render,
)
from genir.errors import ConfigError, DatasetError

STAGES = ("train", "valid", "test")


@dataclass
class EditBatch:
    """Arrays of one training batch; images (n, S, S, 3) uint8, texts (n,) indices into the vocabulary."""

    single_x: np.ndarray
    single_text: np.ndarray
    single_y: np.ndarray
    recon_x: np.ndarray
    recon_text: np.ndarray
    chain_x: np.ndarray
    chain_a: np.ndarray
    chain_b: np.ndarray
    chain_y: np.ndarray


@dataclass
class EditExamples:
    """A fixed evaluation set of M two-edit chains: ``inputs``; instructions ``text_a``/``text_b``; exact targets
    of ``a`` alone, ``b`` alone (None where a source has no one-round target per caption) and of the chain;
    ``family_a``/``family_b`` (the attribute each edit changes); ``source`` (catalogue internal ids)."""

    inputs: np.ndarray
    text_a: np.ndarray
    text_b: np.ndarray
    target_a: np.ndarray | None
    target_b: np.ndarray | None
    target_ab: np.ndarray
    family_a: np.ndarray
    family_b: np.ndarray
    source: np.ndarray
    text_ab: np.ndarray | None = None  # one instruction asking for both edits (triplets: the captions joined)

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class ClipartEditTask:
    """Exact edits of clip art at ``size`` x ``size`` (area-downsampled), split by source image.

    Images whose foreground covers less than ``min_foreground`` or more than ``max_foreground`` of the picture
    are left out (a blank image shows no recolouring; one without background shows no background edit).
    ``eval_sources``: held-out source images per evaluation stage (one chain each).
    """

    catalogue: Catalogue
    size: int = 32
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    min_foreground: float = 0.03
    max_foreground: float = 0.9
    eval_sources: int = 300
    drawings: list = field(init=False, repr=False)
    stage_items: dict = field(init=False)
    filter_counts: dict = field(init=False)

    def __post_init__(self):
        if len(self.split) != 3 or abs(sum(self.split) - 1.0) > 1e-6 or min(self.split) < 0:
            raise ConfigError(f"split: expected three non-negative shares summing to 1, got {self.split}")
        images = catalogue_images(self.catalogue)
        where = self.catalogue.source or self.catalogue.name
        self.drawings = [Drawing.from_image(im, self.size, f"{where}: image {self.catalogue.ids[i]}")
                         for i, im in enumerate(images)]
        share = np.array([d.foreground_share for d in self.drawings])
        eligible = np.flatnonzero((share >= self.min_foreground) & (share <= self.max_foreground))
        if len(eligible) < 3:
            raise DatasetError(f"{where}: only {len(eligible)} image(s) with a foreground share in "
                               f"[{self.min_foreground}, {self.max_foreground}]")
        order = np.random.default_rng(self.seed).permutation(eligible)
        n_train = round(self.split[0] * len(order))
        n_valid = round(self.split[1] * len(order))
        self.stage_items = {"train": np.sort(order[:n_train]), "valid": np.sort(order[n_train:n_train + n_valid]),
                            "test": np.sort(order[n_train + n_valid:])}
        self.left_out = len(self.drawings) - len(eligible)
        self.vocabulary = instruction_vocabulary()
        index = {t: i for i, t in enumerate(self.vocabulary)}
        self.edit_texts = {e: np.array([index[t] for t in e.texts()]) for e in ALL_EDITS}
        self.identity_texts = np.arange(4)
        self.identity_text = 0
        self.by_family = {f: [e for e in ALL_EDITS if e.attribute == f] for f in FAMILIES}
        self.filter_counts = {"proposed": 0, "dropped": 0}

    # -- sampling ------------------------------------------------------------------------------------------------
    def random_state(self, rng: np.random.Generator) -> SceneState:
        """A starting picture: often the drawing as it is, else some attributes already changed."""
        def pick(options):
            return options[rng.integers(len(options))]

        return SceneState(
            fg=pick(list(FG_COLOURS)) if rng.random() < 0.4 else None,
            bg=pick(list(BG_COLOURS)) if rng.random() < 0.4 else "white",
            flip=bool(rng.random() < 0.25), turns=int(rng.integers(4)) if rng.random() < 0.25 else 0,
            small=bool(rng.random() < 0.25),
            border=pick(list(BORDER_COLOURS)) if rng.random() < 0.3 else None,
            badge=pick(list(CORNERS)) if rng.random() < 0.3 else None)

    def random_edit(self, rng: np.random.Generator, state: SceneState) -> Edit:
        """An edit that applies to ``state``: a family drawn uniformly, then one of its applicable edits."""
        while True:
            options = [e for e in self.by_family[FAMILIES[rng.integers(len(FAMILIES))]] if e.applies(state)]
            if options:
                return options[rng.integers(len(options))]

    def random_chain(self, rng: np.random.Generator, drawing: Drawing, state: SceneState) -> tuple[Edit, Edit]:
        """Two edits drawn independently (so sometimes of the same attribute), kept only when they commute on
        this drawing (:func:`commutes`); the drops are counted in ``filter_counts``."""
        while True:
            a, b = self.random_edit(rng, state), self.random_edit(rng, state)
            self.filter_counts["proposed"] += 1
            if a != b and commutes(drawing, state, a, b):
                return a, b
            self.filter_counts["dropped"] += 1

    def _text(self, rng: np.random.Generator, edit: Edit) -> int:
        options = self.edit_texts[edit]
        return int(options[rng.integers(len(options))])

    def train_batch(self, rng: np.random.Generator, n_single: int, n_recon: int, n_chains: int) -> EditBatch:
        items = self.stage_items["train"]
        single_x, single_t, single_y, recon_x, chain_x, chain_a, chain_b, chain_y = ([] for _ in range(8))
        for _ in range(n_single):
            d = self.drawings[items[rng.integers(len(items))]]
            s = self.random_state(rng)
            e = self.random_edit(rng, s)
            single_x.append(render(d, s))
            single_t.append(self._text(rng, e))
            single_y.append(render(d, e.apply(s)))
        for _ in range(n_recon):
            d = self.drawings[items[rng.integers(len(items))]]
            recon_x.append(render(d, self.random_state(rng)))
        for _ in range(n_chains):
            d = self.drawings[items[rng.integers(len(items))]]
            s = self.random_state(rng)
            a, b = self.random_chain(rng, d, s)
            chain_x.append(render(d, s))
            chain_a.append(self._text(rng, a))
            chain_b.append(self._text(rng, b))
            chain_y.append(render(d, apply_chain(s, (a, b))))
        empty = np.zeros((0, self.size, self.size, 3), np.uint8)

        def images(rows):
            return np.stack(rows) if rows else empty

        return EditBatch(images(single_x), np.array(single_t, np.int64), images(single_y), images(recon_x),
                         self.identity_texts[rng.integers(len(self.identity_texts), size=n_recon)],
                         images(chain_x), np.array(chain_a, np.int64), np.array(chain_b, np.int64), images(chain_y))

    def eval_examples(self, stage: str = "test", n_sources: int | None = None) -> EditExamples:
        """One chain per held-out source image (the first ``n_sources`` of the stage, default ``eval_sources``),
        drawn with a generator seeded by the task's seed and the stage, so every model sees the same set."""
        if stage not in ("valid", "test"):
            raise ConfigError(f"stage must be 'valid' or 'test', got {stage!r}")
        items = self.stage_items[stage][:n_sources or self.eval_sources]
        rng = np.random.default_rng([self.seed, STAGES.index(stage)])
        rows = {k: [] for k in ("x", "ta", "tb", "ya", "yb", "yab", "fa", "fb")}
        for i in items:
            d = self.drawings[i]
            s = self.random_state(rng)
            a, b = self.random_chain(rng, d, s)
            for k, v in (("x", render(d, s)), ("ta", self._text(rng, a)), ("tb", self._text(rng, b)),
                         ("ya", render(d, a.apply(s))), ("yb", render(d, b.apply(s))),
                         ("yab", render(d, apply_chain(s, (a, b)))), ("fa", a.attribute), ("fb", b.attribute)):
                rows[k].append(v)
        return EditExamples(np.stack(rows["x"]), np.array(rows["ta"]), np.array(rows["tb"]), np.stack(rows["ya"]),
                            np.stack(rows["yb"]), np.stack(rows["yab"]), np.array(rows["fa"]),
                            np.array(rows["fb"]), np.asarray(items))

    def describe(self) -> dict:
        return {"catalogue": self.catalogue.name, "images": len(self.drawings), "size": self.size,
                "left_out_by_foreground_share": int(self.left_out),
                "stage_sources": {k: len(v) for k, v in self.stage_items.items()},
                "instructions": len(self.vocabulary), "edits": len(ALL_EDITS), "families": list(FAMILIES)}
