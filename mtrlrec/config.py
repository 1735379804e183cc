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

    for cls in (wrappers.EpisodeStatistics, wrappers.TimeLimit, wrappers.ScalarizeReward,
                wrappers.Trials):
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


def _one_line(message: str, binding: str | None = None) -> str:
    """Folds gin's location lines (``In file "f.gin", line 2`` / ``In bindings string line 1``
    and the offending line) into the message's one line, and shortens the searched paths."""
    m = re.search(r'\s*In file "([^"]+)", line (\d+)\n\s*(.*)$', message, flags=re.S)
    if m:
        message = message[: m.start()].rstrip() + \
            f' (in "{m.group(1)}", line {m.group(2)}: {m.group(3).strip()})'
    m = re.search(r"\s*In bindings string line \d+\n\s*(.*)$", message, flags=re.S)
    if m:
        where = f"--gin_param {binding!r}" if binding is not None else repr(m.group(1).strip())
        message = message[: m.start()].rstrip() + f" (in {where})"
    m = re.search(r"Searched config paths: \[([^\]]*)\]\.?", message)
    if m:
        paths = [p.strip(" '") for p in m.group(1).split(",") if p.strip(" '")]
        unique = list(dict.fromkeys(paths))
        message = message.replace(m.group(0), f"Searched: {', '.join(unique) or 'nothing'}.")
    return " ".join(message.split("\n"))


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
        if p.is_dir():
            raise ConfigError(f"experiment {f} is a directory; give a Gin file in it, e.g. "
                              f"{next(iter(sorted(p.glob('*.gin'))), p / 'NAME.gin')}.")
        if p.suffix == ".toml":
            raise ConfigError(f"{f} is a table spec, not an experiment; run it with "
                              f"`mtrlrec bench {f}`.")
        resolved.append(str(p))
        extra_dirs.append(p.resolve().parent)
    for d in search_path(extra_dirs):
        gin.add_config_file_search_path(d)
    current = None  # the --gin_param being parsed, named in errors
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
            current = b
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
        raise ConfigError(_one_line(_improve(msg), current)) from None


_IN_CALL = re.compile(r"\n?\s*In call to configurable '([^']+)' \([^\n]*?\)(?: in scope '[^']*')?")


def _strip_gin_context(message: str) -> tuple[str, list[str]]:
    """Removes gin's ``In call to configurable 'X' (...)`` lines; returns them innermost first."""
    names = _IN_CALL.findall(message)
    return _IN_CALL.sub("", message).strip(), names


def _non_numbers(value) -> list[tuple[str, object]]:
    """``[(index, element)]`` of the entries of a list/dict binding that are not numbers,
    when others are (a wrong element type: ``[0.5, 'x', 0.1]``)."""
    if isinstance(value, dict):
        items = [(repr(k), v) for k, v in value.items()]
    elif isinstance(value, (list, tuple)):
        items = [(str(i), v) for i, v in enumerate(value)]
    else:
        return []
    out = []
    for idx, v in items:
        if isinstance(v, (list, tuple, dict)):
            out += [(f"{idx}][{j}", x) for j, x in _non_numbers(v)]
        elif isinstance(v, bool) or not isinstance(v, (int, float)):
            out.append((idx, v))
    numbers = sum(1 for _, v in items if isinstance(v, (int, float)) and not isinstance(v, bool)
                  or isinstance(v, (list, tuple, dict)))
    return out if numbers else []


def _bad_element(configurable: str) -> str | None:
    """``'X.means[1] is 'x', not a number'`` for the first list binding of ``configurable``
    holding a non-number among numbers, or None."""
    try:
        selector = gin.config._REGISTRY.get_match(configurable).selector  # noqa: SLF001
    except Exception:  # noqa: BLE001
        return None
    for (scope, sel), params in gin.config._CONFIG.items():  # noqa: SLF001
        if sel != selector:
            continue
        for param, value in params.items():
            bad = _non_numbers(value)
            if bad:
                idx, v = bad[0]
                name = binding_name(scope, sel, param)
                return f"{name}[{idx}] is {v!r}, not a number ({name} = {_short(value)})"
    return None


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + " ...]"


def call(fn, what: str):
    """Calls a configurable factory, turning configuration errors into ``ConfigError``.

    The message is one line: gin's ``In call to configurable ...`` context is
    dropped when the message already names the binding (every ``ConfigError``
    does), and replaced by the binding at fault for a wrong element type in a
    list (``BernoulliBandit.means[1] is 'x', not a number``).
    """
    try:
        return fn()
    except ConfigError as e:
        raise ConfigError(_strip_gin_context(str(e))[0]) from None
    except (ValueError, TypeError, RuntimeError) as e:
        msg, where = _strip_gin_context(str(e))
        if "Required bindings" in msg:
            raise ConfigError(f"while building {what}: {msg} (bind them in the experiment file "
                              "or with --gin_param)") from None
        if where and isinstance(e, (ValueError, TypeError)):
            bad = _bad_element(where[0])
            if bad is not None:
                raise ConfigError(f"{bad}: {msg}.") from None
            raise ConfigError(f"while building {where[0]}: {_improve(msg)} (check the bindings "
                              f"of {where[0]})") from None
        if "Required" in msg or "REQUIRED" in msg:
            raise ConfigError(f"while building {what}: {_improve(msg)}") from None
        raise


def operative_config() -> str:
    return gin.operative_config_str()


# ---------------------------------------------------------------------------
# Bindings as data: what a run was configured with, what it used, what differs.


def _macro_names() -> set[str]:
    return {scope for scope, sel in gin.config._CONFIG if sel == "gin.macro"}  # noqa: SLF001


def binding_name(scope: str, selector: str, param: str) -> str:
    """``'EpsilonGreedy.epsilon'``, ``'eval/UCB1.c'`` or ``'MEANS'`` (a macro).

    A macro's value is built in a scope named after the macro (``ENV =
    @BernoulliBandit()`` calls BernoulliBandit in scope ``ENV``); that scope is
    left out, so the name is the one the user binds (``BernoulliBandit.num_arms``).
    """
    if selector == "gin.macro":
        return scope
    macros = _macro_names()
    scope = "/".join(s for s in scope.split("/") if s and s not in macros)
    try:
        short = gin.config._REGISTRY.minimal_selector(selector)  # noqa: SLF001
    except (KeyError, ValueError):
        short = selector
    return f"{scope + '/' if scope else ''}{short}.{param}"


def format_value(value) -> str:
    """A binding's value as Gin writes it (``@EpsilonGreedy()``, ``[0.1, 0.2]``)."""
    return gin.config._format_value(value) or repr(value)  # noqa: SLF001


def bindings() -> dict[str, str]:
    """Every parsed binding: ``{'EpsilonGreedy.epsilon': '0.1', ...}``."""
    return {binding_name(scope, sel, p): format_value(v)
            for (scope, sel), params in gin.config._CONFIG.items()  # noqa: SLF001
            for p, v in params.items()}


def diff_bindings(ours: dict[str, str], theirs: dict[str, str], *, ours_label: str = "run",
                  theirs_label: str = "given", limit: int = 6) -> str:
    """``'EpsilonGreedy.epsilon (run: 0.1, given: 0.2)'`` for every differing binding ('' if none)."""
    keys = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    parts = [f"{k} ({ours_label}: {ours.get(k, 'unset')}, {theirs_label}: {theirs.get(k, 'unset')})"
             for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f"and {len(keys) - limit} more")
    return "; ".join(parts)


def parse_text(text: str, bindings: Sequence[str] = ()) -> None:
    """Clears Gin and parses a complete config (e.g. a run's ``resume.gin``), then ``bindings``."""
    import_all()
    gin.clear_config()
    try:
        gin.parse_config(text, skip_unknown=False)
        for b in bindings:
            gin.parse_config(b, skip_unknown=False)
    except (ValueError, OSError, KeyError, SyntaxError, tokenize.TokenError) as e:
        raise ConfigError(_one_line(_improve(str(e)))) from None


def _targets(binding: str) -> list[tuple[str, str]]:
    """``[(scope, full selector)]`` of the configurables a ``--gin_param`` string binds."""
    from gin import config_parser

    out = []
    try:
        statements = list(config_parser.ConfigParser(
            binding, gin.config.ParserDelegate(skip_unknown=True)))
    except (SyntaxError, ValueError, tokenize.TokenError):
        return out
    for st in statements:
        if not isinstance(st, config_parser.BindingStatement) or not st.arg_name:
            continue  # macros, imports, includes
        match = gin.config._REGISTRY.get_match(st.selector)  # noqa: SLF001
        if match is not None:
            out.append((st.scope, match.selector))
    return out


def _called(scope: str, selector: str) -> bool:
    for s, sel in gin.config._OPERATIVE_CONFIG:  # noqa: SLF001
        if sel == selector and (not scope or scope in s.split("/")):
            return True
    return False


def _referenced() -> set[str]:
    """Selectors that some binding refers to (``@X`` or ``@X()``): they may be called later."""
    out: set[str] = set()

    def walk(v):
        if isinstance(v, gin.config.ConfigurableReference):
            out.add(v.configurable.selector)
        elif isinstance(v, (list, tuple, set)):
            for x in v:
                walk(x)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)

    for params in gin.config._CONFIG.values():  # noqa: SLF001
        for v in params.values():
            walk(v)
    return out


def _only_built_by_gin(selector: str) -> bool:
    """Environments, agents and runners are only ever built from Gin references, so one
    that no binding refers to and that was not built with the experiment is never used.
    (Factory functions may be called by a runner's own code during the run.)"""
    from mtrlrec.core.agent import Agent
    from mtrlrec.core.env import Environment

    cls = gin.config._REGISTRY[selector].wrapped  # noqa: SLF001
    if not inspect.isclass(cls):
        return False
    if issubclass(cls, (Agent, Environment)):
        return True
    call_ = getattr(cls, "__call__", None)
    try:
        return call_ is not None and "ctx" in inspect.signature(call_).parameters
    except (TypeError, ValueError):
        return False


def unused_bindings(bindings: Sequence[str], *, final: bool) -> list[tuple[str, str]]:
    """``--gin_param`` strings whose configurable the experiment does not use.

    Args:
      bindings: the ``--gin_param`` strings.
      final: False right after the experiment is built: only bindings that
        certainly have no effect (an environment, agent or runner that nothing
        refers to and that was not built). True after the run: every binding
        whose configurable was never called.

    Returns:
      ``[(binding, configurable name)]``.
    """
    referenced = set() if final else _referenced()
    out = []
    for b in bindings:
        for scope, selector in _targets(b):
            if _called(scope, selector):
                continue
            if final or (selector not in referenced and _only_built_by_gin(selector)):
                out.append((b, binding_name(scope, selector, "x")[:-2]))
    return out


def used_configurables() -> list[str]:
    """Short names of the configurables called so far (the operative config's sections)."""
    return sorted({binding_name(s, sel, "x")[:-2]
                   for s, sel in gin.config._OPERATIVE_CONFIG if sel != "gin.macro"})  # noqa: SLF001


def non_default_bindings(exclude: Sequence[str] = ("Experiment.description",)) -> dict[str, str]:
    """Every value the run used that differs from the code's default (operative config).

    Returns ``{'EpsilonGreedy.epsilon': 0.2, 'OnlineRunner.agent': '@EpsilonGreedy()', ...}``
    (numbers, booleans and strings as they are; anything else as Gin writes it): what
    tells two runs of one experiment apart (TensorBoard HParams).
    """
    out = {}
    for (scope, selector), params in gin.config._OPERATIVE_CONFIG.items():  # noqa: SLF001
        defaults = {}
        configurable = gin.config._REGISTRY.get(selector)  # noqa: SLF001
        if configurable is not None:
            fn = configurable.wrapped
            try:
                sig = inspect.signature(fn)
                defaults = {k: p.default for k, p in sig.parameters.items()
                            if p.default is not inspect.Parameter.empty}
            except (TypeError, ValueError):
                pass
        for param, value in params.items():
            name = binding_name(scope, selector, param)
            if name in exclude:
                continue
            if param in defaults and _same(defaults[param], value):
                continue
            plain = isinstance(value, (bool, int, float, str))
            out[name] = value if plain else format_value(value)
    return dict(sorted(out.items()))


def _same(a, b) -> bool:
    try:
        return bool(a == b) and type(a) is type(b) or format_value(a) == format_value(b)
    except Exception:  # noqa: BLE001 (arrays, objects without ==)
        return False


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

    if devices is not None:
        check_int("--cpu-devices", devices, min_value=1)
    m = re.search(r"xla_force_host_platform_device_count=(\d+)", os.environ.get("XLA_FLAGS", ""))
    chosen = os.environ.get("JAX_NUM_CPU_DEVICES") or (m.group(1) if m else None)
    if chosen is not None:
        origin = "JAX_NUM_CPU_DEVICES" if os.environ.get("JAX_NUM_CPU_DEVICES") else "XLA_FLAGS"
        if devices is not None and str(devices) != str(chosen).strip():
            raise ConfigError(f"--cpu-devices {devices} conflicts with {origin} (which asks for "
                              f"{chosen} CPU devices); give only one of them.")
        return 0
    n = cpu_cores() if devices is None else devices
    flags = os.environ.get("XLA_FLAGS", "")
    if n > 1 and "collective_call_terminate_timeout" not in flags:
        # XLA aborts the process when a device thread misses a collective's rendezvous
        # for 40 s; on an oversubscribed CPU one device's thread can be starved that
        # long, and a table run of hours died of it. Wait instead.
        os.environ["XLA_FLAGS"] = (
            flags + " --xla_cpu_collective_call_terminate_timeout_seconds=86400").strip()
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:
        raise ConfigError(
            "use_cpu_cores() must be called before JAX runs anything: its CPU backend is "
            "already initialised."
        ) from None
    return n


def enable_compilation_cache(path: str | os.PathLike | None = None) -> pathlib.Path | None:
    """Turns on JAX's persistent compilation cache (XLA programs reused across processes).

    The folder is ``path``, else ``$JAX_COMPILATION_CACHE_DIR``, else
    ``cache_root() / 'jax'`` (``$MTRLREC_CACHE/jax`` or ``~/.cache/mtrlrec/jax``).
    It is created and probed with a test file first.

    Returns:
      The cache folder, or None when the default folder is unusable (a read-only
      home): then a one-line warning is printed and runs compile without a cache.

    Raises:
      ConfigError: a folder the user chose (``path`` or either variable) cannot be
        created or written; the message names it and the variable.
    """
    import sys

    import jax

    if path:
        path, origin = pathlib.Path(path), None
    elif os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        path, origin = pathlib.Path(os.environ["JAX_COMPILATION_CACHE_DIR"]), \
            "JAX_COMPILATION_CACHE_DIR"
    else:
        path = cache_root() / "jax"
        origin = "MTRLREC_CACHE" if os.environ.get("MTRLREC_CACHE") else ""
    problem = writable_dir_problem(path)
    if problem is not None:
        where = f" (from ${origin})" if origin else ""
        if origin == "":  # the default location: not the user's mistake, keep going
            print(f"mtrlrec: warning: compilation cache disabled: {problem}; set MTRLREC_CACHE "
                  "to a writable folder to reuse compiled programs.", file=sys.stderr)
            return None
        raise ConfigError(f"compilation cache folder {path}{where} is not usable: {problem}.")
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def writable_dir_problem(path: str | os.PathLike) -> str | None:
    """Creates ``path`` (and parents) and writes a probe file; returns what went wrong, or None.

    The message names the path at fault: ``'runs/x is a file, not a folder'``,
    ``'cannot create /proc/x: No such file or directory'``.
    """
    import tempfile

    path = pathlib.Path(path)
    for parent in [path, *path.parents]:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is a file, not a folder"
            break
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".mtrlrec-probe-"):
            pass
    except OSError as e:
        return f"cannot write to {e.filename or path}: {e.strerror or e}"
    return None
