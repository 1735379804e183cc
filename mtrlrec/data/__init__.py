"""Real logged data: the Open Bandit Dataset (OBD) and MovieLens-100k.

Each dataset module exposes ``prepare(cache_dir, source, force) -> Path`` (the
``mtrlrec data <name>`` command) and ``load(...)`` returning NumPy arrays.
Prepared files live under ``cache_root() / <name>``, where ``cache_root()`` is
``$MTRLREC_CACHE`` if set, else ``~/.cache/mtrlrec``.

Splits (leave-last-out, random ratio splits, k-fold folds) are in
:mod:`mtrlrec.data.splits`; they are deterministic given a seed.
"""

from __future__ import annotations

import os
import pathlib


def cache_root() -> pathlib.Path:
    """The root of all dataset caches: ``$MTRLREC_CACHE`` or ``~/.cache/mtrlrec``."""
    env = os.environ.get("MTRLREC_CACHE")
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path("~/.cache/mtrlrec").expanduser()


def dataset_dir(name: str, cache_dir: str | os.PathLike | None = None) -> pathlib.Path:
    """Where dataset ``name`` is prepared: ``cache_dir`` if given, else ``cache_root()/name``."""
    if cache_dir is not None:
        return pathlib.Path(cache_dir).expanduser()
    return cache_root() / name


__all__ = ["cache_root", "dataset_dir", "prepare"]


def prepare(name: str, cache_dir: str | os.PathLike | None = None,
            source: str | os.PathLike | None = None, force: bool = False) -> pathlib.Path:
    """``mtrlrec data NAME``: prepares data set ``name`` ('obd', 'movielens') and checks it.

    Before anything is written, ``source`` must exist and the cache folder must be
    creatable; afterwards the prepared folder must hold the data set's files, so
    a ``--source`` folder that holds no data is an error naming it, never a
    silent "ready".

    Raises:
      ConfigError: naming the path at fault.
    """
    import importlib

    from mtrlrec.core.errors import ConfigError

    if source is not None and not pathlib.Path(source).expanduser().exists():
        raise ConfigError(f"--source {source} does not exist.")
    target = dataset_dir(name, cache_dir)
    for parent in [target, *target.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise ConfigError(f"cannot use the cache folder {target}: {parent} is a file, "
                                  "not a folder.")
            break
    module = importlib.import_module(f"mtrlrec.data.{name}")
    path = module.prepare(cache_dir, source, force)
    if name == "obd":
        found = [f"{b}/{c}/{c}.csv" for b in module.POLICIES for c in module.CAMPAIGNS
                 if (pathlib.Path(path) / b / c / f"{c}.csv").is_file()]
        if not found:
            where = f"--source {source}" if source is not None else str(path)
            raise ConfigError(
                f"{where} holds no Open Bandit Dataset files: expected "
                f"<policy>/<campaign>/<campaign>.csv with policy in {list(module.POLICIES)} "
                f"and campaign in {list(module.CAMPAIGNS)} (e.g. random/all/all.csv).")
    return path


def fetch_wheel(requirement: str, dest: str | os.PathLike) -> pathlib.Path:
    """Downloads the wheel of ``requirement`` (e.g. ``'recbole==1.2.1'``) into ``dest``.

    Uses pip's ordinary client (``pip download --no-deps``); nothing is installed.

    Raises:
      ConfigError: if pip fails (e.g. no network); the message says how to pass
        a local wheel with ``--source`` instead.
    """
    import subprocess
    import sys

    from mtrlrec.core.errors import ConfigError

    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "-d", str(dest), requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    name = requirement.split("==")[0].replace("-", "_")
    wheels = sorted(dest.glob(f"{name}-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise ConfigError(
            f"could not download {requirement} with pip ({proc.stderr.strip()[-300:]}); "
            f"download it elsewhere (`pip download --no-deps {requirement}`) and pass "
            f"the .whl with --source."
        )
    return wheels[-1]
