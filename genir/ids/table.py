"""SemanticIdTable: item index <-> unique code tuple, both ways, vectorized.

The table holds an (N, L) matrix of codes, one unique row per item, and the size K_l of each level. Lookups:

* ``codes_of(items) -> (n, L)``: a row gather;
* ``items_of(codes (n, L)) -> (n,)`` item index or -1: each tuple is packed into one int64 key (mixed radix,
  ``key = sum_l c_l * prod_{j>l} K_j``) and found by ``searchsorted`` in the sorted keys, no Python dict.

Token ids use per-level offsets (TIGER; MMGRec's shared values are a known pitfall): code ``c`` of level ``l`` is
token ``offsets[l] + c`` with ``offsets = [0, K_0, K_0 + K_1, ...]``, so the vocabulary has ``sum(K_l)`` tokens
and a token says which level it belongs to.

The first ``semantic_levels`` columns are the scheme's codes; a last column added by collision handling
(:mod:`genir.ids.collisions`) is not semantic. :meth:`stats` reports per-level codebook utilisation and
perplexity, and the collisions of the semantic levels.

On disk (:meth:`save`): ``ids.npy`` (int32, N x L) and ``table.json`` (format version, scheme, level sizes,
semantic levels, N, L, stats), each written atomically, the JSON last.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from genir.atomic import write_json, write_npy
from genir.ids.base import IdScheme, SemanticIdError, as_codes
from genir.ids.collisions import CollisionReport, collision_report, resolve_collisions

FORMAT_VERSION = 1
IDS_FILE = "ids.npy"
TABLE_FILE = "table.json"
_INT64_MAX = 2**63 - 1
_INT32_MAX = 2**31 - 1


class SemanticIdTable:
    """Unique (N, L) IDs of N items with level sizes K_l.

    ``level_sizes`` defaults to ``max code + 1`` per level. ``semantic_levels`` (default L) says how many leading
    levels came from the scheme; the rest were added by collision handling. Rows must be unique and every code
    ``0 <= c < K_l``, else :class:`SemanticIdError`.
    """

    def __init__(self, codes, level_sizes=None, *, semantic_levels: int | None = None, scheme: str = "",
                 source: str = "codes"):
        codes = as_codes(codes, source)  # (N, L)
        n, length = codes.shape
        if n == 0:
            raise SemanticIdError(f"{source}: no items")
        if level_sizes is None:
            level_sizes = (codes.max(axis=0) + 1).tolist()
        sizes = [int(k) for k in level_sizes]
        if len(sizes) != length or min(sizes) < 1:
            raise SemanticIdError(f"{source}: level_sizes {sizes} must be {length} positive sizes (one per level)")
        if (codes >= np.asarray(sizes)).any():
            row, level = np.argwhere(codes >= np.asarray(sizes))[0]
            raise SemanticIdError(f"{source}: item {row} has code {codes[row, level]} at level {level}, whose size "
                                  f"is {sizes[level]}")
        semantic_levels = length if semantic_levels is None else int(semantic_levels)
        if not 1 <= semantic_levels <= length:
            raise SemanticIdError(f"{source}: semantic_levels {semantic_levels} must be in [1, {length}]")
        capacity = int(np.prod([int(k) for k in sizes], dtype=object))
        if capacity - 1 > _INT64_MAX:
            raise SemanticIdError(f"{source}: {' x '.join(map(str, sizes))} possible IDs do not fit int64 keys")

        self._codes = codes
        self._codes.setflags(write=False)
        self._sizes = sizes
        self.semantic_levels = semantic_levels
        self.scheme = scheme
        mult = np.ones(length, dtype=np.int64)  # mixed-radix place values: mult[l] = prod(K[l+1:])
        for level in range(length - 2, -1, -1):
            mult[level] = mult[level + 1] * sizes[level + 1]
        self._mult = mult
        keys = codes @ mult  # (N,)
        self._order = np.argsort(keys, kind="stable")  # item indices by key
        self._sorted_keys = keys[self._order]
        dup = np.flatnonzero(self._sorted_keys[1:] == self._sorted_keys[:-1])
        if len(dup):
            a, b = sorted(self._order[dup[0]:dup[0] + 2].tolist())
            raise SemanticIdError(f"{source}: IDs are not unique: {len(dup)} repeated, e.g. items {a} and {b} both "
                                  f"have {codes[a].tolist()}; resolve collisions first (genir.ids.collisions)")
        self._offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_semantic_codes(cls, codes, level_sizes, collision: str = "index", popularity=None,
                            scheme: str = "") -> SemanticIdTable:
        """Table from a scheme's (N, L_sem) codes after collision handling (see :func:`resolve_collisions`).
        The extra level, when added, has size = the largest collision group."""
        ids, report = resolve_collisions(codes, collision, popularity)
        sizes = list(level_sizes)
        if ids.shape[1] > len(sizes):
            sizes.append(report.max_group)
        return cls(ids, sizes, semantic_levels=len(level_sizes), scheme=scheme)

    @classmethod
    def build(cls, scheme: IdScheme, features, collision: str = "index", popularity=None) -> SemanticIdTable:
        """Encode ``features`` with a fitted ``scheme`` and resolve collisions."""
        return cls.from_semantic_codes(scheme.encode(features), scheme.level_sizes, collision, popularity,
                                       scheme=scheme.name)

    # -- shape ------------------------------------------------------------------------------------------------
    @property
    def codes(self) -> np.ndarray:
        """(N, L) int64, read-only."""
        return self._codes

    @property
    def level_sizes(self) -> list[int]:
        return list(self._sizes)

    @property
    def num_items(self) -> int:
        return len(self._codes)

    @property
    def id_length(self) -> int:
        return self._codes.shape[1]

    def __len__(self) -> int:
        return self.num_items

    def __repr__(self) -> str:
        return (f"SemanticIdTable({self.scheme or 'codes'}: {self.num_items} items x {self.id_length} levels, "
                f"level_sizes={self._sizes}, semantic_levels={self.semantic_levels})")

    # -- lookups ------------------------------------------------------------------------------------------------
    def codes_of(self, items) -> np.ndarray:
        """(..., L) codes of item indices of any shape; IndexError for an index outside [0, N)."""
        idx = _as_int_array(items)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_items):
            bad = idx[(idx < 0) | (idx >= self.num_items)].flat[0]
            raise IndexError(f"item index {bad} out of range for {self.num_items} items")
        return self._codes[idx]

    def items_of(self, codes) -> np.ndarray:
        """Item index of each (..., L) code tuple, -1 for a tuple that is no item's ID (or has a code outside
        its level's range); a single (L,) tuple gives a 0-d array."""
        c = _as_int_array(codes)
        if c.ndim == 0 or c.shape[-1] != self.id_length:
            raise ValueError(f"items_of: expected tuples of length {self.id_length}, got shape {c.shape}")
        valid = ((c >= 0) & (c < np.asarray(self._sizes))).all(axis=-1)  # (...,)
        keys = np.where(valid[..., None], c, 0) @ self._mult
        pos = np.searchsorted(self._sorted_keys, keys).clip(max=self.num_items - 1)
        found = valid & (self._sorted_keys[pos] == keys)
        return np.where(found, self._order[pos], -1)

    # -- tokens -------------------------------------------------------------------------------------------------
    @property
    def offsets(self) -> np.ndarray:
        """(L,) token offset of each level: [0, K_0, K_0 + K_1, ...]."""
        return self._offsets.copy()

    @property
    def vocab_size(self) -> int:
        """Number of code tokens, sum of K_l."""
        return int(sum(self._sizes))

    def to_tokens(self, codes) -> np.ndarray:
        """Codes (..., l) with l <= L (full IDs or prefixes) -> token ids ``offsets[:l] + codes``."""
        c = self._check_levels(_as_int_array(codes), "to_tokens")
        sizes = np.asarray(self._sizes[: c.shape[-1]])
        if ((c < 0) | (c >= sizes)).any():
            pos = np.argwhere((c < 0) | (c >= sizes))[0]
            raise SemanticIdError(f"to_tokens: code {c[tuple(pos)]} at level {pos[-1]} is outside "
                                  f"[0, {sizes[pos[-1]]})")
        return c + self._offsets[: c.shape[-1]]

    def from_tokens(self, tokens) -> np.ndarray:
        """Inverse of :meth:`to_tokens`; a token that is not of its position's level raises SemanticIdError."""
        t = self._check_levels(_as_int_array(tokens), "from_tokens")
        c = t - self._offsets[: t.shape[-1]]
        sizes = np.asarray(self._sizes[: t.shape[-1]])
        if ((c < 0) | (c >= sizes)).any():
            pos = np.argwhere((c < 0) | (c >= sizes))[0]
            lvl = pos[-1]
            raise SemanticIdError(f"from_tokens: token {t[tuple(pos)]} at position {lvl} is not a level-{lvl} "
                                  f"token (expected {self._offsets[lvl]}..{self._offsets[lvl] + sizes[lvl] - 1})")
        return c

    def _check_levels(self, a: np.ndarray, what: str) -> np.ndarray:
        if a.ndim == 0 or not 1 <= a.shape[-1] <= self.id_length:
            raise ValueError(f"{what}: expected (..., l) with 1 <= l <= {self.id_length}, got shape {a.shape}")
        return a

    # -- statistics ---------------------------------------------------------------------------------------------
    def collision_report(self) -> CollisionReport:
        """Collisions of the semantic levels (what collision handling had to resolve)."""
        return collision_report(self._codes[:, : self.semantic_levels])

    def stats(self) -> dict:
        """Per-level utilisation (used codes / K_l) and perplexity (exp of the entropy, in nats, of the code
        distribution over items), and the collision report of the semantic levels."""
        levels = []
        for level, size in enumerate(self._sizes):
            counts = np.bincount(self._codes[:, level], minlength=size)
            p = counts[counts > 0] / self.num_items
            levels.append({
                "level": level, "size": size, "used": int((counts > 0).sum()),
                "utilisation": float((counts > 0).sum() / size),
                "perplexity": float(np.exp(-(p * np.log(p)).sum())),
                "semantic": level < self.semantic_levels,
            })
        report = self.collision_report()
        return {
            "scheme": self.scheme, "num_items": self.num_items, "id_length": self.id_length,
            "semantic_levels": self.semantic_levels, "level_sizes": self.level_sizes,
            "vocab_size": self.vocab_size, "collision_rate": report.collision_rate,
            "colliding_fraction": report.colliding_fraction, "max_group": report.max_group,
            "num_unique_semantic": report.num_unique, "levels": levels,
        }

    # -- files --------------------------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``ids.npy`` (int32) and ``table.json`` into ``directory`` (created if needed)."""
        if max(self._sizes) > _INT32_MAX:
            raise SemanticIdError(f"{directory}: a level has more than {_INT32_MAX} codes; ids.npy is int32")
        directory = Path(directory)
        write_npy(directory / IDS_FILE, self._codes.astype(np.int32))
        write_json(directory / TABLE_FILE, {
            "format_version": FORMAT_VERSION, "scheme": self.scheme, "level_sizes": self.level_sizes,
            "semantic_levels": self.semantic_levels, "num_items": self.num_items, "id_length": self.id_length,
            "stats": self.stats(),
        })
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> SemanticIdTable:
        """Read :meth:`save`'s files, checking that they agree; SemanticIdError naming the file otherwise."""
        directory = Path(directory)
        meta_path, ids_path = directory / TABLE_FILE, directory / IDS_FILE
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            raise SemanticIdError(f"{meta_path}: not found; is {directory} a saved SemanticIdTable?") from None
        except (OSError, ValueError) as exc:
            raise SemanticIdError(f"{meta_path}: unreadable ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
            raise SemanticIdError(f"{meta_path}: not a format-{FORMAT_VERSION} table file")
        for key, typ in (("level_sizes", list), ("semantic_levels", int), ("num_items", int),
                         ("id_length", int), ("scheme", str)):
            if not isinstance(meta.get(key), typ):
                raise SemanticIdError(f"{meta_path}: field {key!r} missing or not a {typ.__name__}")
        try:
            ids = np.load(ids_path, allow_pickle=False)
        except FileNotFoundError:
            raise SemanticIdError(f"{ids_path}: not found") from None
        except (OSError, ValueError, EOFError) as exc:
            raise SemanticIdError(f"{ids_path}: unreadable ({exc})") from None
        expected = (meta["num_items"], meta["id_length"])
        if ids.dtype != np.int32 or ids.shape != expected:
            raise SemanticIdError(f"{ids_path}: {ids.dtype} array of shape {ids.shape}; {meta_path} says int32 "
                                  f"{expected}")
        return cls(ids, meta["level_sizes"], semantic_levels=meta["semantic_levels"], scheme=meta["scheme"],
                   source=str(ids_path))


def _as_int_array(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    arr = np.asarray(a)
    if arr.size == 0 and arr.dtype != np.int64:
        arr = arr.astype(np.int64)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"expected integer indices or codes, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)
