"""Checkpoints: pytrees serialised with ``flax.serialization`` (msgpack), written atomically.

A checkpoint is a dict ``{'carry': ..., 'metrics': ..., 'meta': ...}``
converted to a state dict of NumPy arrays, so it restores without pickling
device arrays, on any number of devices or processes: it holds the real seeds
only, gathered from every process (:func:`mtrlrec.train.sharding.to_host`) and
written by process 0, and a restore places them on the run's own devices
(:func:`mtrlrec.train.carry.restore_carry`). orbax-checkpoint (per-process
shards, written in parallel) would pay only for states much larger than an
online run's learners; one msgpack file keeps one format for every runner. Writes go to a temporary file that is renamed into place, so a
crash mid-write never corrupts the previous checkpoint.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from typing import Any

import jax
import numpy as np
from flax import serialization

from mtrlrec.train import sharding

_NAME = re.compile(r"ckpt_(\d+)\.msgpack$")


def save(directory: str | pathlib.Path, index: int, tree: Any, meta: dict | None = None,
         keep: int = 2) -> pathlib.Path:
    """Saves ``tree`` as ``ckpt_<index>.msgpack`` (+ ``.json`` meta); keeps the newest ``keep``."""
    directory = pathlib.Path(directory)
    path = directory / f"ckpt_{index:06d}.msgpack"
    # On several processes every one calls this (the carry's shards are gathered, a
    # collective) and process 0 alone writes.
    host = sharding.to_host(tree)
    if not sharding.is_main():
        return path
    directory.mkdir(parents=True, exist_ok=True)
    state = serialization.to_state_dict(host)
    data = serialization.msgpack_serialize(jax.tree.map(np.asarray, state))
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    if meta is not None:
        mtmp = path.with_suffix(".json.tmp")
        mtmp.write_text(json.dumps(meta, indent=1))
        os.replace(mtmp, path.with_suffix(".json"))
    for old in sorted(all_checkpoints(directory))[:-keep]:
        old.unlink(missing_ok=True)
        old.with_suffix(".json").unlink(missing_ok=True)
    return path


def all_checkpoints(directory: str | pathlib.Path) -> list[pathlib.Path]:
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _NAME.search(p.name)]
    return sorted(found, key=lambda p: int(_NAME.search(p.name).group(1)))


def latest(directory: str | pathlib.Path) -> pathlib.Path | None:
    ckpts = all_checkpoints(directory)
    return ckpts[-1] if ckpts else None


def load_state_dict(path: str | pathlib.Path) -> dict:
    """The raw state dict; combine with a template via ``serialization.from_state_dict``."""
    return serialization.msgpack_restore(pathlib.Path(path).read_bytes())


def load_meta(path: str | pathlib.Path) -> dict:
    p = pathlib.Path(path).with_suffix(".json")
    return json.loads(p.read_text()) if p.exists() else {}
