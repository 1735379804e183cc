"""Metric sinks of a run directory: TensorBoard, ``metrics.jsonl`` and ``metrics.csv``."""

from __future__ import annotations

import csv
import json
import math
import pathlib
from typing import Any, Sequence

from mtrlrec.log.tensorboard import TensorBoardWriter
from mtrlrec.train.result import MetricWriter


class MultiWriter(MetricWriter):
    """Forwards every call to several writers."""

    def __init__(self, writers: Sequence[MetricWriter]):
        self.writers = list(writers)

    def scalars(self, step, values):
        for w in self.writers:
            w.scalars(step, values)

    def text(self, tag, markdown, step=0):
        for w in self.writers:
            w.text(tag, markdown, step)

    def image(self, tag, png, step=0):
        for w in self.writers:
            w.image(tag, png, step)

    def hparams(self, hparams, metrics, *, session=None, step=0):
        for w in self.writers:
            w.hparams(hparams, metrics, session=session, step=step)

    def flush(self):
        for w in self.writers:
            w.flush()

    def close(self):
        for w in self.writers:
            w.close()


class JsonlWriter(MetricWriter):
    """Appends ``{"step": s, name: value, ...}`` lines to ``metrics.jsonl``.

    On resume, ``truncate_after(step)`` drops lines past the checkpoint so the
    file matches an uninterrupted run.
    """

    def __init__(self, path: str | pathlib.Path):
        self.path = pathlib.Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")

    def truncate_after(self, step: int) -> None:
        self._f.close()
        lines = []
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line).get("step", 0) <= step:
                        lines.append(line)
                except json.JSONDecodeError:
                    break  # a torn last line from a crash
        self.path.write_text("".join(l + "\n" for l in lines), encoding="utf-8")
        self._f = open(self.path, "a", encoding="utf-8")

    def scalars(self, step, values):
        row = {"step": int(step)}
        row.update({k: (None if v is None or not math.isfinite(float(v)) else float(v))
                    for k, v in values.items()})
        self._f.write(json.dumps(row) + "\n")

    def flush(self):
        self._f.flush()

    def close(self):
        self._f.close()


def jsonl_to_csv(jsonl: str | pathlib.Path, csv_path: str | pathlib.Path) -> None:
    """Merges the lines of ``metrics.jsonl`` by step into a wide ``metrics.csv``."""
    rows: dict[int, dict[str, Any]] = {}
    columns: list[str] = ["step"]
    for line in pathlib.Path(jsonl).read_text(encoding="utf-8").splitlines():
        try:
            d = json.loads(line)
        except json.JSONDecodeError:  # blank or torn line from a crash
            continue
        row = rows.setdefault(int(d["step"]), {"step": int(d["step"])})
        for k, v in d.items():
            if k not in columns:
                columns.append(k)
            if k != "step":
                row[k] = v
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for step in sorted(rows):
            w.writerow(rows[step])


class RunWriter(MultiWriter):
    """The writer of a run directory: ``tb/`` events + ``metrics.jsonl``."""

    def __init__(self, run_dir: str | pathlib.Path):
        self.run_dir = pathlib.Path(run_dir)
        self.tb = TensorBoardWriter(self.run_dir / "tb")
        self.jsonl = JsonlWriter(self.run_dir / "metrics.jsonl")
        super().__init__([self.tb, self.jsonl])

    def close(self):
        super().close()
        jsonl_to_csv(self.run_dir / "metrics.jsonl", self.run_dir / "metrics.csv")
