"""Gin parsing with clear errors.

* Every module of the package is imported before parsing, so experiment files
  need no ``import`` lines and every configurable is known.
* The search path holds the repository's ``gin/`` folder (fragments:
  ``include 'envs/bernoulli.gin'``), the repository root (``include
  'experiments/...'``), the folder of the experiment file and any folder in
  ``$MTRLREC_GIN_PATH``.
* Gin's errors are turned into :class:`~mtrlrec.core.errors.ConfigError` with
  the file and line and, for typos, the closest valid names.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import pathlib
import pkgutil
import re
import tokenize
from typing import Sequence

import gin

from mtrlrec.core.errors import ConfigError, check_int

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
GIN_DIR = REPO_ROOT / "gin"
_SKIP_MODULES = {"mtrlrec.cli", "mtrlrec.__main__"}
_imported = False


def import_all() -> None:
    """Imports every mtrlrec module so that all configurables are registered."""
    global _imported
    if _imported:
        return
    import mtrlrec

    for info in pkgutil.walk_packages(mtrlrec.__path__, prefix="mtrlrec."):
        if info.name in _SKIP_MODULES:
            continue
        importlib.import_module(info.name)
    _register_external()
    _imported = True


def _register_external() -> None:
    from mtrlrec.core import wrappers

    for cls in (wrappers.EpisodeStatistics, wrappers.TimeLimit, wrappers.ScalarizeReward):
        try:
            gin.external_configurable(cls, module="mtrlrec.core.wrappers")
        except ValueError:  # already registered (re-import in tests)
            pass


def search_path(extra: Sequence[str | os.PathLike] = ()) -> list[str]:
    paths = [str(p) for p in extra]
    paths += [p for p in os.environ.get("MTRLREC_GIN_PATH", "").split(os.pathsep) if p]
    paths += [str(GIN_DIR), str(REPO_ROOT), os.getcwd()]
    return paths


def _configurable_names() -> list[str]:
    names = []
    for selector, _ in gin.config._REGISTRY.items():  # noqa: SLF001 (no public listing API)
        names.append(selector.split(".")[-1])
    return sorted(set(names))


def _parameters_of(name: str) -> list[str]:
    try:
        configurable = gin.config._REGISTRY.get_match(name)  # noqa: SLF001
    except Exception:  # noqa: BLE001
        return []
    if configurable is None:
        return []
    fn = configurable.wrapped
    fn = fn.__init__ if inspect.isclass(fn) else fn
    try:
        return [p for p in inspect.signature(fn).parameters if p not in ("self", "args", "kwargs")]
    except (TypeError, ValueError):
        return []


def _improve(message: str) -> str:
    m = re.search(r"No configurable matching '([^']+)'\.?", message)
    if m:
        close = difflib.get_close_matches(m.group(1).split(".")[-1], _configurable_names(), n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        return message.replace(m.group(0), f"Unknown configurable '{m.group(1)}'.{hint}", 1)
    m = re.search(r"Configurable '([^']+)' doesn't have a parameter named '([^']+)'\.?", message)
    if m:
        params = _parameters_of(m.group(1))
        close = difflib.get_close_matches(m.group(2), params, n=3)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        valid = f" Valid parameters: {', '.join(params)}." if params else ""
        head = m.group(0).rstrip(".")
        return message.replace(m.group(0), head + "." + hint + valid, 1)
    return message


def _drop_package_file_reader() -> None:
    """Removes gin's reader that treats ``envs/x.gin`` as a file of a Python package ``envs``.

    Our fragments are plain files on the search path; that reader crashes on
    namespace packages of the same name (e.g. ``tests/envs``) and is not needed.
    """
    from gin import resource_reader

    gin.config._FILE_READERS[:] = [  # noqa: SLF001
        r for r in gin.config._FILE_READERS if r[0] is not resource_reader.system_path_reader
    ]


class _QuietSearch:
    """Drops gin's 'Path not found' log lines: misses are normal while it walks the search path."""

    def filter(self, record):  # logging.Filter protocol
        return "Path not found" not in record.getMessage()


def parse(files: Sequence[str | os.PathLike], bindings: Sequence[str] = ()) -> None:
    """Clears Gin and parses ``files`` then ``bindings``; raises ``ConfigError``.

    Args:
      files: experiment files (paths; relative ones are also looked up in the
        search path).
      bindings: ``'Configurable.param = value'`` strings (``--gin_param``).
    """
    import logging

    import_all()
    _drop_package_file_reader()
    root = logging.getLogger()
    if not any(isinstance(f, _QuietSearch) for f in root.filters):
        root.addFilter(_QuietSearch())
    gin.clear_config()
    resolved = []
    extra_dirs = []
    for f in files:
        p = pathlib.Path(f)
        if not p.exists():
            found = [pathlib.Path(d) / f for d in search_path() if (pathlib.Path(d) / f).exists()]
            if not found:
                raise ConfigError(f"experiment file not found: {f}")
            p = found[0]
        resolved.append(str(p))
        extra_dirs.append(p.resolve().parent)
    for d in search_path(extra_dirs):
        gin.add_config_file_search_path(d)
    try:
        for f in resolved:
            try:
                gin.parse_config_file(f, skip_unknown=False)
            except tokenize.TokenError as e:
                raise ConfigError(f'syntax error in file "{f}": {e.args[0]} (unbalanced brackets '
                                  "or quotes?)") from None
            except SyntaxError as e:
                raise ConfigError(f'syntax error in file "{e.filename or f}", line {e.lineno}: '
                                  f"{e.msg}") from None
        for b in bindings:
            try:
                gin.parse_config(b, skip_unknown=False)
            except (tokenize.TokenError, SyntaxError) as e:
                raise ConfigError(f"cannot parse --gin_param {b!r}: {e}") from None
    except (ValueError, OSError, KeyError) as e:
        if isinstance(e, ConfigError):
            raise
        msg = str(e)
        if isinstance(e, OSError) and "Unable to open file" in msg:
            msg = msg.replace("Unable to open file", "Missing include: cannot open")
        raise ConfigError(_improve(msg)) from None


def call(fn, what: str):
    """Calls a configurable factory, turning configuration errors into ``ConfigError``."""
    try:
        return fn()
    except ConfigError as e:
        raise ConfigError(str(e)) from None
    except (ValueError, TypeError, RuntimeError) as e:
        msg = str(e)
        if "Required bindings" in msg:
            raise ConfigError(f"while building {what}: {msg} (bind them in the experiment file "
                              "or with --gin_param)") from None
        if "In call to configurable" in msg or "Required" in msg or "REQUIRED" in msg:
            raise ConfigError(f"while building {what}: {_improve(msg)}") from None
        raise


def operative_config() -> str:
    return gin.operative_config_str()


def cache_root() -> pathlib.Path:
    """``$MTRLREC_CACHE`` or ``~/.cache/mtrlrec``: data sets and compiled programs."""
    root = os.environ.get("MTRLREC_CACHE")
    return pathlib.Path(root) if root else pathlib.Path.home() / ".cache" / "mtrlrec"


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def use_cpu_cores(devices: int | None = None) -> int:
    """Makes JAX's CPU backend one device per core, so a run's seeds spread over the cores.

    XLA runs the online loop's many small per-step kernels on one thread; with
    one CPU device per core, :func:`mtrlrec.train.loop.run` shards the seed
    axis over them (:mod:`mtrlrec.train.sharding`) and every core advances its
    share of the seeds. Every seed computes the same numbers, bit for bit, as
    on one device (``tests/train/test_sharding.py``). Programs that are not
    sharded run on the first device as before; GPUs and TPUs are unaffected.

    Must run before JAX executes anything (it configures the backend). Does
    nothing when the user already chose a CPU device count
    (``JAX_NUM_CPU_DEVICES`` or ``--xla_force_host_platform_device_count`` in
    ``XLA_FLAGS``).

    Args:
      devices: CPU devices to create; default :func:`cpu_cores`.

    Returns:
      The number of CPU devices requested (0 if the user's setting was kept).

    Raises:
      ConfigError: ``devices`` < 1, or JAX's backend is already running.
    """
    import jax

    if os.environ.get("JAX_NUM_CPU_DEVICES") or \
            "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return 0
    n = cpu_cores() if devices is None else check_int("--cpu-devices", devices, min_value=1)
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:
        raise ConfigError(
            "use_cpu_cores() must be called before JAX runs anything: its CPU backend is "
            "already initialised."
        ) from None
    return n


def enable_compilation_cache(path: str | os.PathLike | None = None) -> None:
    """Turns on JAX's persistent compilation cache (XLA programs reused across processes)."""
    import jax

    path = pathlib.Path(path) if path else cache_root() / "jax"
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
