"""Logging without TensorFlow: TensorBoard event files, JSONL/CSV, plots, tables."""

from mtrlrec.log.tensorboard import TensorBoardWriter
from mtrlrec.log.writers import JsonlWriter, MultiWriter, RunWriter

__all__ = ["JsonlWriter", "MultiWriter", "RunWriter", "TensorBoardWriter"]
