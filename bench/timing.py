"""Timing loop in the style of Ray's ``ray_microbenchmark_helpers.timeit``.

A warm-up phase estimates how many calls fit in ~0.1 s (the inner "step"); then
``rounds`` timed rounds of ``duration`` seconds each run whole steps and record
``multiplier * calls / elapsed``.  The clock is only read between steps so the
timer costs nothing measurable for fast calls.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence


def summarize(samples: Sequence[float]) -> dict:
    """mean / population std / median of a list of samples (Ray reports np.std)."""
    xs = [float(x) for x in samples]
    if not xs:
        raise ValueError("no samples")
    return {
        "mean": statistics.fmean(xs),
        "std": statistics.pstdev(xs) if len(xs) > 1 else 0.0,
        "median": statistics.median(xs),
        "samples": xs,
    }


def measure_rate(
    fn: Callable[[], object],
    *,
    multiplier: float = 1.0,
    warmup: float = 1.0,
    rounds: int = 4,
    duration: float = 2.0,
    deadline: float = math.inf,
    min_warmup_calls: int = 1,
) -> dict:
    """Return ops/s statistics of ``fn`` (one call counts as ``multiplier`` ops).

    ``min_warmup_calls`` forces a few untimed calls for slow first-touch ops.
    ``deadline`` (a ``time.perf_counter()`` value) is a soft budget: once passed,
    no new round starts and the current one ends after its current step.  A round
    cut short still counts if at least one call completed in it.
    """
    now = time.perf_counter
    start = now()
    calls = 0
    while calls < min_warmup_calls or now() - start < warmup:
        fn()
        calls += 1
        if now() > deadline:
            break
    warm_elapsed = now() - start
    step = max(1, int(calls / warm_elapsed * 0.1)) if warm_elapsed > 0 else 1

    samples = []
    truncated = False
    for _ in range(rounds):
        if now() > deadline and samples:
            truncated = True
            break
        t0 = now()
        done = 0
        while now() - t0 < duration:
            for _ in range(step):
                fn()
            done += step
            if now() > deadline:
                truncated = True
                break
        samples.append(multiplier * done / (now() - t0))
    if not samples:  # deadline hit during warm-up: fall back on the warm-up rate
        samples.append(multiplier * calls / warm_elapsed)
        truncated = True
    out = summarize(samples)
    out["extra"] = {"step": step, "warmup_calls": calls, "multiplier": multiplier}
    if truncated:
        out["extra"]["truncated_by_budget"] = True
    return out
