"""Prefix index over a catalogue of fixed-length semantic IDs, stored only as flat arrays.

A catalogue is an int array ``codes`` (N, L) of unique rows; level ``l`` codes lie in ``[0, K_l)``. The index is
the trie of those rows with its states enumerated level by level: the states of depth ``d`` are the distinct
prefixes of length ``d`` in lexicographic order (depth 0: the root; depth L: the N full IDs, the leaves). The
transitions out of depth ``l`` are stored in one of two array forms, chosen per level:

* **dense** (the first ``dense_levels`` levels): ``valid[l]`` (S_l, K_l) bool and ``next[l]`` (S_l, K_l) int32,
  indexed by (state, code). Level 0 has one state, so its table is the start mask. One gather gives a beam's mask.
* **CSR** (deeper levels): ``indptr[l]`` (S_l + 1) and the packed child codes ``child_codes[l]`` (S_{l+1}). The
  children of state ``s`` are the slots ``indptr[s] .. indptr[s+1]-1``. Because states are numbered in
  lexicographic order, the child state of slot ``j`` is ``j`` itself, so no separate child-state array is needed.
  A beam reads at most ``max_branch[l]`` slots, so its cost grows with the branching factor, not with N.

The leaf state ``t`` is the ``t``-th ID in lexicographic order; ``leaf_item[t]`` maps it back to its row in
``codes``. The layout follows the idea of STATIC (Su et al., "Vectorizing the Trie", arXiv 2602.22647): dense
tables for the shallow, wide levels and a CSR matrix below, read with gathers on the accelerator instead of a
Python walk per hypothesis as in GENRE's dict trie. Unlike STATIC the dense tables are indexed by the parent
state, not by the parent token, so they work at any depth, and the CSR stores no next-state column.

Everything is built with numpy in O(N log N) (one sort) and used as torch tensors on the device of the caller's
``states``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from genir.errors import IndexFormatError

FORMAT_NAME = "genir.prefix_index"
FORMAT_VERSION = 1
META_FILE = "meta.json"
DEFAULT_DENSE_BUDGET_BYTES = 16 * 2**20
_DENSE_BYTES_PER_ENTRY = 5  # bool validity + int32 next state


class PrefixIndex:
    """Trie of the valid semantic IDs as arrays; see the module docstring for the layout.

    Build with :meth:`from_codes`, persist with :meth:`save` / :meth:`load`. States are int64 tensors; ``-1``
    marks a dead state (an invalid prefix): it has no allowed continuation and advances to ``-1`` again.
    """

    def __init__(
        self,
        level_sizes: Sequence[int],
        num_states: Sequence[int],
        max_branch: Sequence[int],
        dense_valid: Sequence[torch.Tensor],
        dense_next: Sequence[torch.Tensor],
        csr_indptr: Sequence[torch.Tensor],
        csr_codes: Sequence[torch.Tensor],
        leaf_item: torch.Tensor,
    ):
        self.level_sizes = tuple(int(k) for k in level_sizes)
        self.num_states = tuple(int(s) for s in num_states)  # S_0 = 1 ... S_L = N
        self.max_branch = tuple(int(b) for b in max_branch)
        self.dense_levels = len(dense_valid)
        # dense tables carry one extra all-invalid row for the dead state -1 (not saved to disk)
        self._valid = list(dense_valid)
        self._next = list(dense_next)
        for level, table in enumerate(self._valid):
            if table.shape != (self.num_states[level] + 1, self.level_sizes[level]):
                raise ValueError(f"dense table of level {level} has shape {tuple(table.shape)}")
        self._indptr = list(csr_indptr)
        self._codes = list(csr_codes)
        self._leaf_item = leaf_item
        self._moved: dict[torch.device, PrefixIndex] = {}
        self._tree_cache: tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor] | None = None

    # ------------------------------------------------------------------ build
    @classmethod
    def from_codes(
        cls,
        codes,
        level_sizes: Sequence[int],
        *,
        dense_levels: int | None = None,
        dense_budget_bytes: int = DEFAULT_DENSE_BUDGET_BYTES,
    ) -> PrefixIndex:
        """Build the index of a catalogue.

        Args:
            codes: (N, L) integer array (numpy or torch) of unique semantic IDs; row ``i`` is item ``i``.
            level_sizes: codebook size ``K_l`` of each of the L levels.
            dense_levels: how many leading levels use dense tables. Default: level 0, then every further level
                while the dense tables together stay within ``dense_budget_bytes`` (5 bytes per state x code).
            dense_budget_bytes: memory budget of the automatic choice.

        Raises:
            IndexFormatError: wrong dimensions, a non-integer array, a code outside ``[0, K_l)``, or duplicate
                rows; the message names the offending rows.
        """
        sizes = _check_level_sizes(level_sizes)
        codes = _check_codes(codes, sizes)
        n, num_levels = codes.shape
        order = _sort_rows(codes, sizes)
        ordered = codes[order]

        # first_diff[i]: first level where sorted rows i and i+1 differ (rows are unique, so always < L)
        differs = ordered[1:] != ordered[:-1]  # (N-1, L)
        is_dup = ~differs.any(axis=1)
        if is_dup.any():
            i = int(np.flatnonzero(is_dup)[0])
            a, b = sorted((int(order[i]), int(order[i + 1])))
            total = int(is_dup.sum())
            raise IndexFormatError(
                f"codes: rows {a} and {b} are the same ID {ordered[i].tolist()} ({total} duplicate row(s) in all); "
                "semantic IDs must be unique (resolve collisions before indexing)"
            )
        first_diff = differs.argmax(axis=1)

        # state of every sorted row at depth d = number of new prefixes of length d up to that row, minus one
        num_states = [1]
        state_of_row = [np.zeros(n, dtype=np.int64)]
        starts_of_depth = [np.zeros(1, dtype=np.int64)]  # first sorted row of every state, per depth
        for depth in range(1, num_levels + 1):
            is_new = np.empty(n, dtype=bool)
            is_new[0] = True
            np.less(first_diff, depth, out=is_new[1:])
            state_of_row.append(np.cumsum(is_new, dtype=np.int64) - 1)
            starts_of_depth.append(np.flatnonzero(is_new))
            num_states.append(int(starts_of_depth[-1].size))

        if dense_levels is None:
            dense_levels, used = 1, num_states[0] * sizes[0] * _DENSE_BYTES_PER_ENTRY
            while dense_levels < num_levels:
                cost = num_states[dense_levels] * sizes[dense_levels] * _DENSE_BYTES_PER_ENTRY
                if used + cost > dense_budget_bytes:
                    break
                used += cost
                dense_levels += 1
        elif not 0 <= int(dense_levels) <= num_levels:
            raise IndexFormatError(f"dense_levels must be in [0, {num_levels}], got {dense_levels}")
        dense_levels = int(dense_levels)

        max_branch, dense_valid, dense_next, csr_indptr, csr_codes = [], [], [], [], []
        for level in range(num_levels):
            child_rows = starts_of_depth[level + 1]  # first row of each child state, in state order
            parent = state_of_row[level][child_rows]  # non-decreasing
            child_code = ordered[child_rows, level]
            counts = np.bincount(parent, minlength=num_states[level])
            max_branch.append(int(counts.max()))
            if level < dense_levels:
                valid = np.zeros((num_states[level] + 1, sizes[level]), dtype=bool)
                valid[parent, child_code] = True
                nxt = np.full((num_states[level] + 1, sizes[level]), -1, dtype=np.int32)
                nxt[parent, child_code] = np.arange(num_states[level + 1], dtype=np.int32)
                dense_valid.append(torch.from_numpy(valid))
                dense_next.append(torch.from_numpy(nxt))
            else:
                indptr = np.zeros(num_states[level] + 1, dtype=_index_dtype(num_states[level + 1]))
                np.cumsum(counts, out=indptr[1:])
                csr_indptr.append(torch.from_numpy(indptr))
                csr_codes.append(torch.from_numpy(child_code.astype(np.int32)))
        leaf_item = torch.from_numpy(order.astype(_index_dtype(n)))
        return cls(sizes, num_states, max_branch, dense_valid, dense_next, csr_indptr, csr_codes, leaf_item)

    # ------------------------------------------------------------------ properties
    @property
    def num_levels(self) -> int:
        return len(self.level_sizes)

    @property
    def num_items(self) -> int:
        return self.num_states[-1]

    def __len__(self) -> int:
        return self.num_items

    @property
    def device(self) -> torch.device:
        return self._leaf_item.device

    @property
    def nbytes(self) -> int:
        """Bytes held by the index arrays."""
        return sum(t.numel() * t.element_size() for t in self._tensors())

    def is_dense(self, level: int) -> bool:
        return level < self.dense_levels

    def __repr__(self) -> str:
        return (
            f"PrefixIndex(items={self.num_items}, level_sizes={list(self.level_sizes)}, "
            f"dense_levels={self.dense_levels}, max_branch={list(self.max_branch)}, "
            f"nbytes={self.nbytes}, device={self.device})"
        )

    def _tensors(self) -> list[torch.Tensor]:
        return [*self._valid, *self._next, *self._indptr, *self._codes, self._leaf_item]

    # ------------------------------------------------------------------ devices
    def to(self, device) -> PrefixIndex:
        """The same index with its arrays on ``device`` (``self`` when already there)."""
        device = torch.device(device)
        if _same_device(device, self.device):
            return self
        for moved in self._moved.values():  # copies made earlier, e.g. for "cuda" when asked for "cuda:0"
            if _same_device(device, moved.device):
                return moved
        moved = PrefixIndex(
            self.level_sizes,
            self.num_states,
            self.max_branch,
            [t.to(device) for t in self._valid],
            [t.to(device) for t in self._next],
            [t.to(device) for t in self._indptr],
            [t.to(device) for t in self._codes],
            self._leaf_item.to(device),
        )
        self._moved[moved.device] = moved
        return moved

    def _on(self, tensor: torch.Tensor) -> PrefixIndex:
        return self.to(tensor.device)

    # ------------------------------------------------------------------ lookups
    def root_states(self, n: int, device=None) -> torch.Tensor:
        """``n`` copies of the root state (the empty prefix)."""
        return torch.zeros(n, dtype=torch.long, device=device if device is not None else self.device)

    def allowed(self, states: torch.Tensor, level: int) -> torch.Tensor:
        """Which codes of level ``level`` may follow each prefix: ``(R,) -> (R, K_level)`` bool.

        ``states`` are depth-``level`` states (prefixes of length ``level``); dead states (-1) allow nothing.
        """
        idx = self._on(states)
        if idx.is_dense(level):
            return idx._valid[level].index_select(0, states.masked_fill(states < 0, self.num_states[level]))
        codes, valid = idx.children(states, level)
        mask = torch.zeros(
            states.shape[0], self.level_sizes[level] + 1, dtype=torch.bool, device=states.device
        )
        # padded slots write False into the spare last column
        mask.scatter_(1, codes.masked_fill(~valid, self.level_sizes[level]), valid)
        return mask[:, :-1]

    def children(self, states: torch.Tensor, level: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The child codes of each depth-``level`` state, padded to a fixed width.

        Returns ``codes`` (R, C) int64 and ``valid`` (R, C) bool, where C is ``max_branch[level]`` at a CSR
        level and ``K_level`` at a dense level (codes ``0..K-1``). Invalid slots hold code 0. At a CSR level the
        child state of slot ``j`` is :meth:`child_state` ``(states, j)``.
        """
        idx = self._on(states)
        if idx.is_dense(level):
            k = self.level_sizes[level]
            codes = torch.arange(k, device=states.device).expand(states.shape[0], k)
            return codes, idx.allowed(states, level)
        alive = states >= 0
        safe = states.clamp_min(0)
        indptr = idx._indptr[level - self.dense_levels]
        packed = idx._codes[level - self.dense_levels]
        start = indptr.index_select(0, safe).long()
        count = (indptr.index_select(0, safe + 1).long() - start).masked_fill_(~alive, 0)
        slot = torch.arange(max(self.max_branch[level], 1), device=states.device)
        valid = slot < count[:, None]  # (R, C)
        pos = (start[:, None] + slot).clamp_max_(packed.shape[0] - 1)
        codes = packed.take(pos).long().masked_fill_(~valid, 0)
        return codes, valid

    def child_state(self, states: torch.Tensor, slots: torch.Tensor, level: int) -> torch.Tensor:
        """Depth-``level+1`` state reached from ``states`` through child slot ``slots`` of a CSR level."""
        idx = self._on(states)
        indptr = idx._indptr[level - self.dense_levels]
        nxt = indptr.index_select(0, states.clamp_min(0)).long() + slots
        return nxt.masked_fill_(states < 0, -1)

    def advance(self, states: torch.Tensor, codes: torch.Tensor, level: int) -> torch.Tensor:
        """Follow code ``codes`` of level ``level`` from each state: ``(R,), (R,) -> (R,)`` depth-``level+1``
        states, ``-1`` where the prefix extended by that code is not in the catalogue (or the code is out of
        range, or the state was already dead)."""
        idx = self._on(states)
        codes = codes.to(states.device).long()
        k = self.level_sizes[level]
        ok = (states >= 0) & (codes >= 0) & (codes < k)
        safe_state = states.masked_fill(~ok, 0)
        safe_code = codes.masked_fill(~ok, 0)
        if idx.is_dense(level):
            nxt = idx._next[level].take(safe_state * k + safe_code).long()
        else:
            child_codes, valid = idx.children(safe_state, level)
            hit = valid & (child_codes == safe_code[:, None])
            slot = hit.to(torch.int8).argmax(dim=1)
            nxt = idx.child_state(safe_state, slot, level).masked_fill_(~hit.any(dim=1), -1)
        return nxt.masked_fill_(~ok, -1)

    def item_of(self, leaf_states: torch.Tensor) -> torch.Tensor:
        """Catalogue row of each leaf state (depth L); ``-1`` for dead states."""
        idx = self._on(leaf_states)
        alive = leaf_states >= 0
        return idx._leaf_item.index_select(0, leaf_states.clamp_min(0)).long().masked_fill_(~alive, -1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Catalogue row of each full ID ``(R, L) -> (R,)``; ``-1`` where the ID is not in the catalogue."""
        if codes.ndim != 2 or codes.shape[1] != self.num_levels:
            raise ValueError(
                f"lookup expects codes of shape (R, {self.num_levels}), got {tuple(codes.shape)}"
            )
        states = self.root_states(codes.shape[0], device=codes.device)
        for level in range(self.num_levels):
            states = self.advance(states, codes[:, level], level)
        return self.item_of(states)

    def walk(self, codes: torch.Tensor) -> torch.Tensor:
        """State reached by each prefix ``(R, l) -> (R,)`` (depth ``l``), ``-1`` for prefixes not in the index."""
        states = self.root_states(codes.shape[0], device=codes.device)
        for level in range(codes.shape[1]):
            states = self.advance(states, codes[:, level], level)
        return states

    def child_states(self, states: torch.Tensor, level: int) -> torch.Tensor:
        """Depth-``level+1`` state of every child of each depth-``level`` state, aligned with :meth:`children`
        (dense level: one column per code; CSR level: one per slot); ``-1`` where there is no child."""
        idx = self._on(states)
        if idx.is_dense(level):
            return idx._next[level].index_select(0, states.masked_fill(states < 0, self.num_states[level])).long()
        _, valid = idx.children(states, level)
        slot = torch.arange(valid.shape[1], device=states.device)
        start = idx._indptr[level - self.dense_levels].index_select(0, states.clamp_min(0)).long()
        return (start[:, None] + slot).masked_fill_(~valid, -1)

    def _tree(self) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
        """Computed once per device, from the arrays: ``parents[d]`` (the depth-``d-1`` parent of every depth-``d``
        state, d >= 1), ``leaves[d]`` (how many IDs lie under every depth-``d`` state) and the leaf state of every
        catalogue row. Needed only to exclude items from a search, so not stored on disk."""
        if self._tree_cache is None:
            device = self.device
            parents: list[torch.Tensor] = [torch.empty(0, dtype=torch.long, device=device)]
            for level in range(self.num_levels):
                if self.is_dense(level):
                    nxt = self._next[level][:-1].long()  # drop the dead state's row
                    rows, cols = (nxt >= 0).nonzero(as_tuple=True)
                    parent = torch.empty(self.num_states[level + 1], dtype=torch.long, device=device)
                    parent[nxt[rows, cols]] = rows
                else:
                    counts = self._indptr[level - self.dense_levels].long().diff()
                    parent = torch.repeat_interleave(torch.arange(self.num_states[level], device=device), counts)
                parents.append(parent)
            leaves = [torch.ones(self.num_states[-1], dtype=torch.long, device=device)]
            for depth in range(self.num_levels, 0, -1):
                above = torch.zeros(self.num_states[depth - 1], dtype=torch.long, device=device)
                leaves.insert(0, above.index_add_(0, parents[depth], leaves[0]))
            leaf_of_item = torch.empty(self.num_items, dtype=torch.long, device=device)
            leaf_of_item[self._leaf_item.long()] = torch.arange(self.num_items, device=device)
            self._tree_cache = (parents, leaves, leaf_of_item)
        return self._tree_cache

    def leaf_counts(self, depth: int) -> torch.Tensor:
        """Number of IDs under every depth-``depth`` state (S_depth,) int64; all ones at depth L."""
        return self._tree()[1][depth]

    def ancestors(self, items: torch.Tensor) -> torch.Tensor:
        """States of the prefixes of the given catalogue rows ``(n,) -> (n, L)``: column ``d-1`` is the depth-``d``
        state (the last column is the leaf)."""
        idx = self._on(items)
        parents, _, leaf_of_item = idx._tree()
        states = [leaf_of_item.index_select(0, items.long())]
        for depth in range(self.num_levels, 1, -1):
            states.insert(0, parents[depth].index_select(0, states[0]))
        return torch.stack(states, dim=1)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | os.PathLike) -> Path:
        """Write the arrays as ``.npy`` files plus ``meta.json`` into ``directory``.

        The files are written into a temporary sibling directory that is renamed into place, so a crash never
        leaves a half-written index; an existing directory at that path is replaced.
        """
        target = Path(directory)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            files = {}
            for name, tensor in self._named_arrays():
                array = tensor.detach().cpu().numpy()
                np.save(tmp / f"{name}.npy", array, allow_pickle=False)
                files[name] = {"shape": list(array.shape), "dtype": str(array.dtype)}
            meta = {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "level_sizes": list(self.level_sizes),
                "num_states": list(self.num_states),
                "max_branch": list(self.max_branch),
                "dense_levels": self.dense_levels,
                "arrays": files,
            }
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
            _replace_dir(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return target

    @classmethod
    def load(cls, directory: str | os.PathLike, device=None) -> PrefixIndex:
        """Read an index written by :meth:`save`; checks every array against ``meta.json``.

        Raises:
            IndexFormatError: a missing or unreadable file, an unknown format version, or arrays whose shape,
                dtype or content do not match; the message names the file.
        """
        directory = Path(directory)
        meta_path = directory / META_FILE
        if not meta_path.is_file():
            raise IndexFormatError(f"{meta_path}: missing; not a prefix index directory")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise IndexFormatError(f"{meta_path}: unreadable JSON ({exc})") from exc
        if meta.get("format") != FORMAT_NAME or meta.get("format_version") != FORMAT_VERSION:
            raise IndexFormatError(
                f"{meta_path}: format {meta.get('format')!r} version {meta.get('format_version')!r}, "
                f"expected {FORMAT_NAME!r} version {FORMAT_VERSION}"
            )
        try:
            sizes = _check_level_sizes(meta["level_sizes"])
            num_states = [int(s) for s in meta["num_states"]]
            max_branch = [int(b) for b in meta["max_branch"]]
            dense_levels = int(meta["dense_levels"])
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexFormatError(f"{meta_path}: missing or malformed field ({exc!r})") from exc
        num_levels = len(sizes)
        if len(num_states) != num_levels + 1 or len(max_branch) != num_levels or num_states[0] != 1:
            raise IndexFormatError(f"{meta_path}: num_states/max_branch do not match {num_levels} levels")
        if not 0 <= dense_levels <= num_levels:
            raise IndexFormatError(f"{meta_path}: dense_levels={dense_levels} outside [0, {num_levels}]")

        def read(name: str, shape: tuple[int, ...], kinds: str) -> np.ndarray:
            path = directory / f"{name}.npy"
            if not path.is_file():
                raise IndexFormatError(f"{path}: missing")
            try:
                array = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise IndexFormatError(f"{path}: unreadable ({exc})") from exc
            if array.shape != shape or array.dtype.kind not in kinds:
                raise IndexFormatError(
                    f"{path}: shape {array.shape} dtype {array.dtype}, expected shape {shape} of kind {kinds!r}"
                )
            return array

        dense_valid, dense_next, csr_indptr, csr_codes = [], [], [], []
        for level in range(num_levels):
            s, k, s_next = num_states[level], sizes[level], num_states[level + 1]
            if level < dense_levels:
                valid = read(f"dense_valid_{level}", (s, k), "b")
                nxt = read(f"dense_next_{level}", (s, k), "i")
                ok = np.sort(nxt[valid]) if valid.any() else nxt[valid]
                if (nxt[~valid] != -1).any() or not np.array_equal(ok, np.arange(s_next)):
                    raise IndexFormatError(
                        f"{directory / f'dense_next_{level}.npy'}: next states do not enumerate the {s_next} "
                        f"states of depth {level + 1} exactly once"
                    )
                dense_valid.append(torch.from_numpy(np.concatenate([valid, np.zeros((1, k), dtype=bool)])))
                dead = np.full((1, k), -1, dtype=np.int32)
                dense_next.append(torch.from_numpy(np.concatenate([nxt.astype(np.int32, copy=False), dead])))
            else:
                indptr = read(f"csr_indptr_{level}", (s + 1,), "iu")
                codes = read(f"csr_codes_{level}", (s_next,), "iu")
                counts = np.diff(indptr)
                if (
                    indptr[0] != 0
                    or indptr[-1] != s_next
                    or (counts < 1).any()
                    or counts.max() != max_branch[level]
                ):
                    raise IndexFormatError(
                        f"{directory / f'csr_indptr_{level}.npy'}: not a CSR row pointer over {s_next} children "
                        f"with every state having 1..{max_branch[level]} children"
                    )
                if codes.size and (codes.min() < 0 or codes.max() >= k):
                    raise IndexFormatError(f"{directory / f'csr_codes_{level}.npy'}: codes outside [0, {k})")
                csr_indptr.append(torch.from_numpy(indptr.astype(_index_dtype(s_next), copy=False)))
                csr_codes.append(torch.from_numpy(codes.astype(np.int32, copy=False)))
        leaf = read("leaf_item", (num_states[-1],), "iu")
        if not np.array_equal(np.sort(leaf), np.arange(num_states[-1])):
            raise IndexFormatError(
                f"{directory / 'leaf_item.npy'}: not a permutation of 0..{num_states[-1] - 1}"
            )
        index = cls(
            sizes,
            num_states,
            max_branch,
            dense_valid,
            dense_next,
            csr_indptr,
            csr_codes,
            torch.from_numpy(leaf.astype(_index_dtype(num_states[-1]), copy=False)),
        )
        return index.to(device) if device is not None else index

    def _named_arrays(self) -> list[tuple[str, torch.Tensor]]:
        named = []
        for level in range(self.num_levels):
            if self.is_dense(level):
                named.append((f"dense_valid_{level}", self._valid[level][:-1]))
                named.append((f"dense_next_{level}", self._next[level][:-1]))
            else:
                named.append((f"csr_indptr_{level}", self._indptr[level - self.dense_levels]))
                named.append((f"csr_codes_{level}", self._codes[level - self.dense_levels]))
        named.append(("leaf_item", self._leaf_item))
        return named


# ---------------------------------------------------------------------- helpers
def _check_level_sizes(level_sizes) -> tuple[int, ...]:
    try:
        sizes = tuple(int(k) for k in level_sizes)
    except (TypeError, ValueError) as exc:
        raise IndexFormatError(f"level_sizes must be a list of positive ints, got {level_sizes!r}") from exc
    if not sizes or min(sizes) < 1:
        raise IndexFormatError(f"level_sizes must be a non-empty list of positive ints, got {list(sizes)}")
    return sizes


def _check_codes(codes, sizes: tuple[int, ...]) -> np.ndarray:
    if isinstance(codes, torch.Tensor):
        codes = codes.detach().cpu().numpy()
    codes = np.asarray(codes)
    if codes.ndim != 2:
        raise IndexFormatError(f"codes must be a 2-D array (N items, L levels), got shape {codes.shape}")
    if codes.shape[1] != len(sizes):
        raise IndexFormatError(
            f"codes has {codes.shape[1]} levels (columns) but level_sizes lists {len(sizes)}: {list(sizes)}"
        )
    if codes.shape[0] == 0:
        raise IndexFormatError("codes is empty: a prefix index needs at least one ID")
    if codes.dtype.kind not in "iu":
        raise IndexFormatError(f"codes must be an integer array, got dtype {codes.dtype}")
    codes = codes.astype(np.int64, copy=False)
    bad = (codes < 0) | (codes >= np.asarray(sizes))
    if bad.any():
        row, level = (int(x) for x in np.argwhere(bad)[0])
        raise IndexFormatError(
            f"codes[{row}, {level}] = {int(codes[row, level])} is outside [0, {sizes[level]}) of level {level} "
            f"({int(bad.sum())} code(s) out of range in all)"
        )
    return codes


def _sort_rows(codes: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """Permutation that sorts the rows lexicographically (level 0 most significant)."""
    if float(np.prod([float(k) for k in sizes])) < 2.0**62:
        key = np.zeros(codes.shape[0], dtype=np.int64)
        for level, k in enumerate(sizes):
            key *= k
            key += codes[:, level]
        return np.argsort(key, kind="stable")
    return np.lexsort(codes.T[::-1])


def _index_dtype(max_value: int):
    return np.int32 if max_value < 2**31 - 1 else np.int64


def _same_device(a: torch.device, b: torch.device) -> bool:
    """``cuda`` and ``cuda:<current>`` are the same device; so are all CPU devices."""
    if a.type != b.type:
        return False
    if a.type == "cpu":
        return True

    def number(d: torch.device) -> int:
        if d.index is not None:
            return d.index
        return torch.cuda.current_device() if d.type == "cuda" else 0

    return number(a) == number(b)


def _replace_dir(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target``, replacing a previous ``target`` with two renames."""
    if target.exists() or target.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rmdir(old)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)
