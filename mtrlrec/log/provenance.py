"""Which code produced a result: recorded in ``run.json`` and in every bench table.

A number in a committed table is only as trustworthy as our ability to re-run the
code that made it, so runs record the git commit (and whether the working tree
had uncommitted changes), the JAX version and the backend.
"""

from __future__ import annotations

import functools
import pathlib
import subprocess

import jax

_REPO = pathlib.Path(__file__).resolve().parents[2]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=_REPO, capture_output=True, text=True,
                             timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


@functools.lru_cache(maxsize=1)
def code_version() -> dict:
    """``{'commit', 'dirty', 'jax', 'backend', 'devices'}``; commit is None outside a git checkout.

    ``dirty`` is True when tracked files under ``mtrlrec/`` differ from the commit
    (uncommitted changes to the code that ran). Cached: a process runs one code version.
    """
    commit = _git("rev-parse", "--short=12", "HEAD")
    dirty = None
    if commit is not None:
        status = _git("status", "--porcelain", "--untracked-files=no", "--", "mtrlrec")
        dirty = bool(status) if status is not None else None
    return {"commit": commit, "dirty": dirty, "jax": jax.__version__,
            "backend": jax.default_backend(), "devices": jax.device_count()}


def describe(version: dict | None) -> str:
    """``'commit abc123 (+ uncommitted changes), jax 0.x on cpu'`` or 'not recorded'."""
    if not version:
        return "not recorded"
    commit = version.get("commit")
    text = f"commit {commit}" if commit else "outside a git checkout"
    if version.get("dirty"):
        text += " + uncommitted changes"
    return f"{text}, jax {version.get('jax')} on {version.get('backend')}"
