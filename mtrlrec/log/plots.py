"""Matplotlib figures rendered to PNG bytes (Agg backend, no display needed)."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _figure().close(fig)
    return buf.getvalue()


def curve_png(
    steps: np.ndarray,
    values: np.ndarray,
    *,
    title: str,
    ylabel: str,
    labels: Sequence[str] | None = None,
    xlabel: str = "step",
) -> bytes:
    """Mean over seeds with a ±1 standard error band and a 10-90 % percentile band.

    Args:
      steps: ``[L]``.
      values: ``[S, L]`` (one curve) or ``[H, S, L]`` (one curve per sweep point).
    """
    plt = _figure()
    values = np.asarray(values, np.float64)
    if values.ndim == 2:
        values = values[None]
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, v in enumerate(values):
        mean = np.nanmean(v, axis=0)
        n = max(v.shape[0], 1)
        se = np.nanstd(v, axis=0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(mean)
        label = labels[i] if labels is not None else None
        (line,) = ax.plot(steps, mean, label=label)
        if n > 1:
            lo, hi = np.nanpercentile(v, [10, 90], axis=0)
            ax.fill_between(steps, lo, hi, color=line.get_color(), alpha=0.12, linewidth=0)
            ax.fill_between(steps, mean - se, mean + se, color=line.get_color(), alpha=0.3,
                            linewidth=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if labels is not None:
        ax.legend(fontsize=8)
    return to_png(fig)
