"""Timing helper shared by the benchmark scripts in this folder."""

from __future__ import annotations

import time
from typing import Callable


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    """The shortest of ``repeats`` timings of ``fn()``.

    On a shared CPU a run is only ever slowed down, and single timings of the same
    program varied by up to 2x here, so the scripts report the best of a few.
    """
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)
