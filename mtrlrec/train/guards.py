"""What stops a run early and cleanly: Ctrl-C as a flag, and diverged metrics."""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Mapping

import numpy as np

from mtrlrec.core.errors import ConfigError
from mtrlrec.train.step import per_episode


class Diverged(ConfigError):
    """A metric became NaN or infinite: the run stopped (see :func:`run`)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`run`: raised after ``on_interrupt`` saw the last finished window."""


@contextlib.contextmanager
def interrupt_flag():
    """Within the block, Ctrl-C sets a flag (read by calling the yielded function)
    instead of raising inside a compiled call, whose donated carry would then be
    lost; a second Ctrl-C raises at once. Outside the main thread: no flag."""
    hit = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum, frame):
        if hit:
            raise KeyboardInterrupt
        hit.append(True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(hit)
    finally:
        signal.signal(signal.SIGINT, previous)


def check_finite(metrics: Mapping[str, np.ndarray], first_window: int, log_every: int,
                  seed_axis: int) -> None:
    """Raises :class:`Diverged` naming the seeds and step where a metric stopped being finite.

    ``episode_*`` metrics may be NaN (a window in which no episode ended), not infinite.
    """
    for name, v in metrics.items():
        bad = ~np.isfinite(v)
        if per_episode(name):
            bad = np.isinf(v)
        if not bad.any():
            continue
        seeds_bad = np.flatnonzero(bad.any(axis=-1).reshape(-1, bad.shape[seed_axis]).any(0)
                                   if seed_axis else bad.any(axis=-1))
        first = int(np.flatnonzero(bad.reshape(-1, bad.shape[-1]).any(0))[0])
        step = (first_window + first + 1) * log_every
        shown = ", ".join(str(int(i)) for i in seeds_bad[:10]) + (
            ", ..." if seeds_bad.size > 10 else "")
        raise Diverged(
            f"the metric {name!r} became {'NaN' if np.isnan(v[bad]).any() else 'infinite'} in "
            f"the window ending at step {step} for seed(s) {shown}: the run stopped there; "
            "results and checkpoints written before that window are kept.")
