"""A TensorBoard writer built on the ``tensorboard`` package alone (no TensorFlow).

Events are written with ``tensorboard.summary.writer.event_file_writer`` and the
summary protos; text and hparams use the plugins' own metadata so TensorBoard's
Text and HParams dashboards show them. Read back with
``tensorboard.backend.event_processing.event_accumulator.EventAccumulator``.
"""

from __future__ import annotations

import io
import pathlib
import time
from typing import Any

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import summary_v2 as hparams_summary
from tensorboard.plugins.text import metadata as text_metadata
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util

from mtrlrec.train.result import MetricWriter


class TensorBoardWriter(MetricWriter):
    """Writes scalars, text, images and hparams to an event file in ``logdir``."""

    def __init__(self, logdir: str | pathlib.Path):
        self.logdir = pathlib.Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self._writer = EventFileWriter(str(self.logdir))

    def _add(self, summary: summary_pb2.Summary, step: int) -> None:
        event = event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary)
        self._writer.add_event(event)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        vals = [
            summary_pb2.Summary.Value(tag=k, simple_value=float(v))
            for k, v in values.items()
            if v is not None and np.isfinite(v)
        ]
        if vals:
            self._add(summary_pb2.Summary(value=vals), step)

    def text(self, tag: str, markdown: str, step: int = 0) -> None:
        meta = text_metadata.create_summary_metadata(display_name=tag, description="")
        tensor = tensor_util.make_tensor_proto(np.array(markdown.encode("utf-8"), dtype=object))
        value = summary_pb2.Summary.Value(tag=tag, metadata=meta, tensor=tensor)
        self._add(summary_pb2.Summary(value=[value]), step)

    def image(self, tag: str, png: bytes, step: int = 0) -> None:
        width, height = _png_size(png)
        img = summary_pb2.Summary.Image(
            height=height, width=width, colorspace=4, encoded_image_string=png
        )
        self._add(summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, image=img)]), step)

    def hparams(self, hparams: dict[str, Any], metrics: dict[str, float], *,
                session: str | None = None, step: int = 0) -> None:
        """An HParams session: ``hparams`` and the final ``metrics`` (scalars at ``step``).

        Each session is its own group (its trial id is its log directory), so
        TensorBoard never merges and averages two runs, or two sweep points,
        that happen to share their hyperparameter values. ``session`` names a
        sub-run (``<logdir>/<session>``, e.g. one per sweep point) that holds
        only that session; None makes this log directory the session.
        """
        if session is not None:
            sub = TensorBoardWriter(self.logdir / session_dirname(session))
            try:
                sub.hparams(hparams, metrics, step=step)
            finally:
                sub.close()
            return
        clean = {k: (v if isinstance(v, (bool, int, float, str)) else str(v))
                 for k, v in hparams.items()}
        trial = str(self.logdir.resolve())
        self._add(hparams_summary.hparams_pb(clean, trial_id=trial), step)
        self.scalars(step, metrics)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def session_dirname(name: str) -> str:
    """A session name as a relative folder: ``'sweep/epsilon=0.1'`` stays, other characters
    than letters, digits and ``=,.+-_#[]`` become ``_`` in each part."""
    parts = ["".join(c if c.isalnum() or c in "=,.+-_#[]" else "_" for c in part)
             for part in name.split("/") if part not in ("", ".", "..")]
    return "/".join(parts) or "_"


def _png_size(png: bytes) -> tuple[int, int]:
    if png[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("image must be PNG bytes")
    buf = io.BytesIO(png[16:24])
    w = int.from_bytes(buf.read(4), "big")
    h = int.from_bytes(buf.read(4), "big")
    return w, h
