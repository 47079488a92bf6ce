"""A mesh's shape: named dimensions, ranks in row-major order, and slicing (no IO).

A shape is ``{"host": 2, "gpu": 4}`` (or an int n, one dimension named "rank"); rank r of it has
coordinates in row-major order (the last dimension varies fastest), as numpy lays out an array.
A view is a shape plus the global ranks it covers, so slicing a view gives a view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEFAULT_DIM = "rank"


def parse_shape(shape: Any) -> tuple[tuple[str, int], ...]:
    """An int or a dict of dimension name -> size, as a tuple of (name, size); a clear error
    otherwise."""
    if isinstance(shape, bool):
        raise TypeError(f"a mesh shape is an int or a dict of named dimensions, got {shape!r}")
    if isinstance(shape, int):
        shape = {DEFAULT_DIM: shape}
    if not isinstance(shape, dict) or not shape:
        raise TypeError(
            f"a mesh shape is an int or a non-empty dict of named dimensions, got {shape!r}"
        )
    dims = []
    for name, size in shape.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"mesh dimension names must be identifiers, got {name!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"mesh dimension {name!r} needs a size >= 1, got {size!r}")
        dims.append((name, size))
    return tuple(dims)


def coords_of(dims: tuple[tuple[str, int], ...], rank: int) -> dict[str, int]:
    """The coordinates of `rank` in a full mesh of `dims` (row-major)."""
    coords: dict[str, int] = {}
    for name, size in reversed(dims):
        rank, coords[name] = divmod(rank, size)
    return dict(reversed(list(coords.items())))


def size_of(dims: tuple[tuple[str, int], ...]) -> int:
    total = 1
    for _, size in dims:
        total *= size
    return total


@dataclass(frozen=True)
class View:
    """Part of a mesh: its own dimensions (those not indexed away) and, in its row-major
    order, the global ranks of the members it covers."""

    dims: tuple[tuple[str, int], ...]
    ranks: tuple[int, ...]

    @classmethod
    def full(cls, dims: tuple[tuple[str, int], ...]) -> View:
        return cls(dims, tuple(range(size_of(dims))))

    @property
    def shape(self) -> dict[str, int]:
        return dict(self.dims)

    def __len__(self) -> int:
        return len(self.ranks)

    def select(self, picks: dict[str, int | slice]) -> View | int:
        """Index or slice some dimensions by name: an int drops the dimension, a slice keeps
        it (shortened). All dimensions indexed by ints: the one global rank left."""
        names = [name for name, _ in self.dims]
        for name in picks:
            if name not in names:
                raise KeyError(f"the mesh has no dimension {name!r}; its dimensions are {names}")
        # positions kept along each dimension
        kept: list[list[int]] = []
        for name, size in self.dims:
            pick = picks.get(name, slice(None))
            if isinstance(pick, slice):
                positions = list(range(size))[pick]
                if not positions:
                    raise IndexError(f"slice {pick} of mesh dimension {name!r} is empty")
                kept.append(positions)
            elif isinstance(pick, int) and not isinstance(pick, bool):
                index = pick + size if pick < 0 else pick
                if not 0 <= index < size:
                    raise IndexError(
                        f"index {pick} is out of range for mesh dimension {name!r} of size {size}"
                    )
                kept.append([index])
            else:
                raise TypeError(f"mesh dimension {name!r} takes an int or a slice, got {pick!r}")
        strides = []
        stride = 1
        for _, size in reversed(self.dims):
            strides.append(stride)
            stride *= size
        strides.reverse()
        offsets = [0]
        for positions, step in zip(kept, strides, strict=True):
            offsets = [o + p * step for o in offsets for p in positions]
        ranks = tuple(self.ranks[o] for o in offsets)
        new_dims = tuple(
            (name, len(positions))
            for (name, _), positions in zip(self.dims, kept, strict=True)
            if isinstance(picks.get(name, slice(None)), slice)
        )
        if not new_dims:
            return ranks[0]
        return View(new_dims, ranks)

    def index(self, key: Any) -> View | int:
        """``mesh[i]``, ``mesh[1:3]``, ``mesh[0, 2]``: positional picks over the dimensions in
        order, as numpy does."""
        keys = key if isinstance(key, tuple) else (key,)
        if len(keys) > len(self.dims):
            raise IndexError(
                f"too many indices for a mesh of {len(self.dims)} dimension(s) {self.shape}"
            )
        return self.select({name: k for (name, _), k in zip(self.dims, keys, strict=False)})
