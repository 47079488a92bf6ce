"""Resource accounting for one node: a plain state object, no I/O.

Quantities are floats (fractional CPUs and GPUs are allowed) but compared with a small tolerance
so that ten tasks of 0.1 CPU fit in one CPU.
"""

from __future__ import annotations

from collections.abc import Mapping

_EPSILON = 1e-9


def normalize(request: Mapping[str, float] | None) -> dict[str, float]:
    """Drop zero entries and check every quantity is a non-negative number."""
    result: dict[str, float] = {}
    for name, amount in (request or {}).items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"resource names must be non-empty strings, got {name!r}")
        if isinstance(amount, bool) or not isinstance(amount, (int, float)):
            raise TypeError(f"resource {name!r} must be a number, got {amount!r}")
        if amount < 0:
            raise ValueError(f"resource {name!r} must be >= 0, got {amount}")
        if amount > 0:
            result[name] = float(amount)
    return result


def describe(resources: Mapping[str, float]) -> str:
    if not resources:
        return "{}"
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(resources.items())) + "}"


class NodeResources:
    def __init__(self, total: Mapping[str, float]) -> None:
        self.total = normalize(total)
        self.available = dict(self.total)
        # What is left of each GPU (by index): tasks see the ones they hold in
        # CUDA_VISIBLE_DEVICES, so GPUs are handed out as instances, not only counted.
        self.gpu_free = [1.0] * int(self.total.get("GPU", 0.0))

    def gpus_for(self, amount: float) -> list[int] | None:
        """The GPU indexes a request for this many GPUs would get now (None: none fit)."""
        if amount <= 0:
            return []
        if amount < 1:  # a fraction shares one GPU
            for index, free in enumerate(self.gpu_free):
                if free + _EPSILON >= amount:
                    return [index]
            return None
        whole = [i for i, free in enumerate(self.gpu_free) if free + _EPSILON >= 1.0]
        return whole[: int(amount)] if len(whole) >= int(amount) else None

    def take_gpus(self, amount: float) -> list[int]:
        chosen = self.gpus_for(amount) or []
        for index in chosen:
            self.gpu_free[index] -= min(amount, 1.0)
        return chosen

    def give_gpus(self, indexes: list[int], amount: float) -> None:
        for index in indexes:
            if 0 <= index < len(self.gpu_free):
                self.gpu_free[index] = min(1.0, self.gpu_free[index] + min(amount, 1.0))

    def feasible(self, request: Mapping[str, float]) -> bool:
        """Could this node ever run the request, were it idle?"""
        return all(self.total.get(k, 0.0) + _EPSILON >= v for k, v in request.items())

    def fits(self, request: Mapping[str, float]) -> bool:
        if not all(self.available.get(k, 0.0) + _EPSILON >= v for k, v in request.items()):
            return False
        gpus = request.get("GPU", 0.0)
        return gpus <= 0 or self.gpus_for(gpus) is not None

    def snapshot(self) -> NodeResources:
        copy = NodeResources(self.total)
        copy.available = dict(self.available)
        copy.gpu_free = list(self.gpu_free)
        return copy

    def acquire(self, request: Mapping[str, float]) -> None:
        for k, v in request.items():
            self.available[k] = self.available.get(k, 0.0) - v

    def release(self, request: Mapping[str, float]) -> None:
        for k, v in request.items():
            self.available[k] = min(self.total.get(k, 0.0), self.available.get(k, 0.0) + v)

    def used(self) -> dict[str, float]:
        return {k: self.total[k] - self.available.get(k, 0.0) for k in self.total}
