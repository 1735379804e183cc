"""What every runner receives (:class:`RunContext`) and returns (:class:`Result`).

A *runner* is any ``@gin.configurable`` class whose instances are callables
``runner(ctx: RunContext) -> Result``; an experiment file binds one to
``Experiment.runner``. The online loop (``OnlineRunner``), supervised training,
off-policy evaluation and episode evaluation are all runners, so ``mtrlrec run``
and ``mtrlrec bench`` treat them alike: ``Result.final`` holds one value per
seed for every metric, which the bench harness aggregates into mean ± SE.
"""

from __future__ import annotations

import dataclasses
import pathlib
import warnings
from typing import Any

import numpy as np


class MetricWriter:
    """Interface of metric sinks; this base class discards everything."""

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """Scalars at ``step`` (names may be slash-namespaced, e.g. ``Train/loss``)."""

    def text(self, tag: str, markdown: str, step: int = 0) -> None:
        """A Markdown text (config, result tables)."""

    def image(self, tag: str, png: bytes, step: int = 0) -> None:
        """A PNG image."""

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float], *,
                session: str | None = None, step: int = 0) -> None:
        """One TensorBoard HParams session: its hyperparameters and final metrics.

        ``session``: None for the run itself, or a name for a part of it (a sweep
        point, written to its own sub-run ``<logdir>/<session>``).
        """

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@dataclasses.dataclass
class RunContext:
    """How a runner should run.

    Attributes:
      num_seeds: number of independent runs (vmap them).
      seed: base PRNG seed.
      run_dir: directory for extra files, or None.
      writer: where curves go while the run is in progress.
      checkpoint_dir: where to save/restore checkpoints, or None (no checkpoints).
      resume: restore the latest checkpoint in ``checkpoint_dir`` before running.
      progress: show a progress bar.
      quick: a small version for CI (``bench --quick``); runners may shrink work.
    """

    num_seeds: int = 1
    seed: int = 0
    run_dir: pathlib.Path | None = None
    writer: MetricWriter = dataclasses.field(default_factory=MetricWriter)
    checkpoint_dir: pathlib.Path | None = None
    resume: bool = False
    progress: bool = False
    quick: bool = False


@dataclasses.dataclass
class Result:
    """What a run produced.

    Attributes:
      final: metric -> per-seed final values ``[S]`` (``[H, S]`` for a sweep).
      curves: metric -> ``[S, L]`` (``[H, S, L]``) learning curves.
      steps: ``[L]`` x-axis of ``curves``.
      primary: name of the main curve (plotted with its spread over seeds).
      stderr: metric -> explicit standard error (e.g. bootstrap), overriding
        ``std(final) / sqrt(S)``.
      hparams: sweep values, name -> ``[H]``.
      tables: title -> Markdown, added to ``summary.md`` and TensorBoard text.
      images: name -> PNG bytes, written to the run directory and TensorBoard.
      stderr_over: what the ``stderr`` values are over (e.g. ``'users (seeds x
        users)'``, ``'bootstrap resamples of the logged rounds'``), said in
        ``summary.md``; the other standard errors are over seeds.
    """

    final: dict[str, np.ndarray]
    curves: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    steps: np.ndarray | None = None
    primary: str | None = None
    stderr: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    hparams: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    tables: dict[str, str] = dataclasses.field(default_factory=dict)
    images: dict[str, bytes] = dataclasses.field(default_factory=dict)
    stderr_over: str = ""

    def mean_se(self, metric: str) -> tuple[np.ndarray, np.ndarray, int]:
        """Mean, standard error and count of ``final[metric]`` over the seed axis (last).

        NaN entries (e.g. a window in which no episode ended) are ignored.
        """
        v = np.asarray(self.final[metric], np.float64)
        n = np.sum(np.isfinite(v), axis=-1)
        # All-NaN slices (a metric this runner does not produce, a window without a
        # finished episode) give NaN quietly: NumPy's RuntimeWarnings would only be noise.
        with warnings.catch_warnings(), np.errstate(invalid="ignore", divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(v, axis=-1) if v.size else np.nan
            if metric in self.stderr:
                se = np.asarray(self.stderr[metric], np.float64)
            else:
                sd = np.nanstd(v, axis=-1, ddof=1) if v.shape[-1] > 1 else np.zeros_like(mean)
                se = sd / np.sqrt(np.maximum(n, 1))
        return mean, se, int(np.min(n)) if np.ndim(n) else int(n)
