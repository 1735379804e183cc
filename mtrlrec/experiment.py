"""Experiments: a Gin file, a runner, a run directory.

``mtrlrec run EXP.gin`` calls :func:`run_experiment`, which checks the output
path, parses the Gin files, builds :class:`Experiment` (and with it the runner,
the environment and the agent, so configuration errors surface before any
compilation), refuses ``--gin_param`` bindings the experiment does not use,
then creates a fresh run directory and fills it:

==================  ========================================================
``run.json``        the command (experiment, bindings, seeds, working directory)
``resume.gin``      the complete configuration at the start: ``--resume`` runs it
``config.gin``      the operative Gin config (every value actually used)
``metrics.jsonl``   one line per logged step: mean and std over seeds
``metrics.csv``     the same, one row per step
``tb/``             TensorBoard events: curves, config, summary table, plots, and
                    an HParams session (one per sweep point in ``tb/sweep/``)
``summary.md``      final metrics (mean ± SE over seeds) and the runner's tables
``plot.png``        the primary curve, mean ± SE band and 10-90 % band over seeds
``result.npz``      per-seed final values and curves (re-used by ``bench``)
``checkpoints/``    the loop state after each chunk (``--resume DIR`` continues)
==================  ========================================================

A run directory is never overwritten. A run that fails before its first
results (a checkpoint or a metrics line) removes its directory again; once
results exist, a crash or an interrupt leaves everything written so far.
``docs/reliability.md`` lists the checks and these guarantees.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import platform
import shutil
import sys
from typing import Any, Callable, Sequence

import gin
import numpy as np

from mtrlrec import config as config_lib
from mtrlrec.core.errors import ConfigError, check_int
from mtrlrec.log import plots, provenance, tables
from mtrlrec.log.writers import RunWriter
from mtrlrec.train import sharding
from mtrlrec.train.result import MetricWriter, Result, RunContext


@gin.configurable
class Experiment:
    """The top-level configurable of an experiment file.

    Args:
      runner: a runner instance, ``@OnlineRunner()`` or another runner.
      num_seeds: independent runs (``--seeds`` overrides).
      seed: base PRNG seed.
      description: one line shown by ``mtrlrec list`` and in ``summary.md``.
    """

    def __init__(self, runner: Any = gin.REQUIRED, num_seeds: int = 1, seed: int = 0,
                 description: str = ""):
        if not callable(runner):
            raise ConfigError(
                f"Experiment.runner must be a runner instance such as @OnlineRunner(), got {runner!r}."
            )
        self.runner = runner
        self.num_seeds = check_int("Experiment.num_seeds", num_seeds, min_value=1)
        self.seed = check_int("Experiment.seed", seed)
        self.description = description


def build(files: Sequence[str], bindings: Sequence[str] = ()) -> Experiment:
    """Parses the config and builds the experiment (no compilation happens here)."""
    config_lib.parse(files, bindings)
    return config_lib.call(Experiment, "Experiment")


START_FILES = ("run.json", "resume.gin", "config.gin")


def check_out_dir(path: pathlib.Path) -> None:
    """Refuses an output directory that holds anything (earlier results) or cannot be created.

    Nothing is created here: the checks run before the experiment is built, so a
    mistake leaves no trace on disk.
    """
    path = pathlib.Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output directory {path} is an existing file; choose another --out.")
    if path.exists() and any(path.iterdir()):
        raise ConfigError(
            f"output directory {path} already exists and is not empty; choose another --out, "
            f"or continue it with --resume {path}."
        )
    problem = _creatable_problem(path)
    if problem is not None:
        raise ConfigError(f"cannot create output directory {path}: {problem}.")


def _creatable_problem(path: pathlib.Path) -> str | None:
    """Why ``path`` cannot be created (the nearest existing ancestor is a file or not
    writable), or None. Creates nothing."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                return f"{parent} is a file, not a folder"
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"{parent} is not writable"
            return None
    return None


def _make_dirs(path: pathlib.Path) -> list[pathlib.Path]:
    """Creates ``path`` and its missing parents; returns those it created (outermost first).

    Raises ConfigError naming the path (nothing is left behind) if the system refuses.
    """
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    created: list[pathlib.Path] = []
    try:
        for d in reversed(missing):
            d.mkdir()
            created.append(d)
    except OSError as e:
        _remove_created(path, created)
        raise ConfigError(f"cannot create output directory {path}: "
                          f"{e.strerror or e} ({e.filename or path}).") from None
    return created


def _remove_created(path: pathlib.Path, created: Sequence[pathlib.Path]) -> None:
    """Removes what a failed start created: ``path``'s contents, then the folders it made."""
    if path.is_dir():
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
    for d in reversed(list(created)):
        try:
            d.rmdir()  # only if empty: another process may have written beside us
        except OSError:
            break


def _has_checkpoint(directory: pathlib.Path) -> bool:
    return directory.is_dir() and any(p.suffix == ".msgpack" for p in directory.iterdir())


def has_results(run_dir: pathlib.Path) -> bool:
    """Whether a run directory holds results of a finished chunk (checkpoints, metric lines,
    or any file beyond those written at the start), which a failure must never delete."""
    run_dir = pathlib.Path(run_dir)
    if not run_dir.is_dir():
        return False
    ckpts = run_dir / "checkpoints"
    if ckpts.is_dir() and any(ckpts.iterdir()):
        return True
    metrics = run_dir / "metrics.jsonl"
    if metrics.exists() and metrics.stat().st_size > 0:
        return True
    quiet = set(START_FILES) | {"tb", "metrics.jsonl", "metrics.csv", "checkpoints"}
    return any(p.name not in quiet for p in run_dir.iterdir())


def create_run_dir(out: str | None, name: str) -> tuple[pathlib.Path, list[pathlib.Path]]:
    """Creates a fresh run directory; returns it and the folders created for it.

    ``out`` None: ``runs/<name>-<time>`` (a suffix if that exists). A non-empty
    ``out`` is refused; an empty existing one is used.
    """
    if out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = pathlib.Path("runs") / f"{name}-{stamp}"
        i = 1
        while path.exists():
            path = pathlib.Path("runs") / f"{name}-{stamp}-{i}"
            i += 1
    else:
        path = pathlib.Path(out)
    check_out_dir(path)
    return path, _make_dirs(path)


def new_run_dir(out: str | None, name: str) -> pathlib.Path:
    """Creates a fresh run directory; refuses to reuse a non-empty one."""
    return create_run_dir(out, name)[0]


@contextlib.contextmanager
def _working_dir(path: str | None):
    """Runs the block in ``path`` (the directory a run started in) if it exists, so the
    relative file paths of its bindings mean what they meant then."""
    old = os.getcwd()
    if path and pathlib.Path(path).is_dir() and pathlib.Path(path).resolve() != pathlib.Path(
            old).resolve():
        os.chdir(path)
        try:
            yield
        finally:
            os.chdir(old)
    else:
        yield


def _unused_message(unused: Sequence[tuple[str, str]], *, final: bool) -> str:
    if final:
        return "; ".join(f"--gin_param {b!r} had no effect: the run never used {name}"
                         for b, name in unused) + "."
    return "; ".join(f"--gin_param {b!r} has no effect: this experiment does not use {name}"
                     for b, name in unused) + \
        f" (it uses {', '.join(config_lib.used_configurables())})."


def run_experiment(
    experiment: str | None = None,
    bindings: Sequence[str] = (),
    *,
    out: str | None = None,
    seeds: int | None = None,
    resume: str | None = None,
    progress: bool = True,
    announce: Callable[[pathlib.Path], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> tuple[pathlib.Path, Result]:
    """Runs an experiment file into a new (or resumed) run directory.

    Everything that can be checked is checked before anything is created: the
    output directory, the Gin files and bindings (the experiment is built), and
    ``--gin_param`` bindings that the experiment does not use. If the run then
    fails before any result was written (a chunk's checkpoint or metrics), the
    run directory is removed again; once results exist, nothing is ever deleted.

    Args:
      experiment: path of the Gin file. With ``resume``: optional; if given with
        ``bindings``, they must configure exactly what the run was configured
        with (the run's own ``resume.gin`` is what runs).
      bindings: extra ``--gin_param`` bindings (with ``resume``: see above).
      out: run directory (must not exist or be empty); default ``runs/<name>-<time>``.
      seeds: overrides ``Experiment.num_seeds`` (with ``resume``: must match the run).
      resume: a run directory to continue from its latest checkpoint, with the
        configuration saved in it when it started, from any working directory.
      progress: show progress bars.
      announce: called with the run directory once it exists, before the run starts.
      warn: called with each warning line (default: printed to stderr).

    Returns:
      The run directory and the :class:`Result`.

    Raises:
      ConfigError: any mistake in the arguments, files or bindings (one line).
    """
    if seeds is not None:
        check_int("--seeds", seeds, min_value=1)
    if resume is not None:
        return _resume(resume, experiment, bindings, out=out, seeds=seeds, progress=progress,
                       announce=announce, warn=warn)
    if experiment is None:
        raise ConfigError("no experiment file given.")
    main = sharding.is_main()  # several processes: process 0 alone writes
    if out is not None and not sharding.multi_process():
        check_out_dir(pathlib.Path(out))
    exp = build([experiment], bindings)
    unused = config_lib.unused_bindings(bindings, final=False)
    if unused:
        raise ConfigError(_unused_message(unused, final=False))
    saved = gin.config_str()
    num_seeds = seeds if seeds is not None else exp.num_seeds
    run_dir, created = None, []
    if main:
        def make():
            if out is None:
                _check_default_runs_dir()
            return create_run_dir(out, pathlib.Path(experiment).stem)

        run_dir, created = _shared(make)
    else:
        run_dir = _shared(None)
    meta = {
        "experiment": str(pathlib.Path(experiment).absolute()),
        "title": str(experiment),  # as typed: summary.md and HParams, also after --resume
        "bindings": list(bindings),
        "seeds": num_seeds,
        "seed": exp.seed,
        "cwd": os.getcwd(),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "code": provenance.code_version(),
    }
    try:
        if main:
            (run_dir / "run.json").write_text(json.dumps(meta, indent=1))
            (run_dir / "resume.gin").write_text(_RESUME_HEADER + saved)
            (run_dir / "config.gin").write_text(config_lib.operative_config())
    except OSError as e:
        _remove_created(run_dir, created)
        raise ConfigError(f"cannot write to {run_dir}: {e.strerror or e}.") from None
    return _execute(exp, run_dir, num_seeds=num_seeds, title=str(experiment), bindings=bindings,
                    resumed=False, created=created, progress=progress, announce=announce,
                    warn=warn)


def _shared(make):
    """The run directory process 0 made (``make()`` there), on every process; a mistake
    found by process 0 (an unusable --out) is raised on every process alike."""
    if not sharding.multi_process():
        return make()
    if make is not None:
        try:
            run_dir, created = make()
            text = "ok:" + str(run_dir)
        except ConfigError as e:
            sharding.broadcast_text("error:" + str(e))
            raise
        sharding.broadcast_text(text)
        return run_dir, created
    text = sharding.broadcast_text("")
    if text.startswith("error:"):
        raise ConfigError(text[len("error:"):])
    return pathlib.Path(text[len("ok:"):])


_RESUME_HEADER = (
    "# The complete configuration this run started with (every binding of the experiment\n"
    "# file, its includes and --gin_param). `mtrlrec run --resume DIR` runs this, never the\n"
    "# experiment file again. Do not edit.\n\n"
)


def _check_default_runs_dir() -> None:
    problem = _creatable_problem(pathlib.Path("runs") / "x")
    if problem is not None:
        raise ConfigError(f"cannot create the run directory under {pathlib.Path('runs').absolute()}: "
                          f"{problem}; choose a place with --out.")


def _resume(resume: str, experiment: str | None, bindings: Sequence[str], *, out, seeds,
            progress, announce, warn) -> tuple[pathlib.Path, Result]:
    if out is not None:
        raise ConfigError(f"--out cannot be used with --resume: a resumed run continues in its "
                          f"own directory ({resume}).")
    run_dir = pathlib.Path(resume).absolute()
    meta_path = run_dir / "run.json"
    if not meta_path.exists():
        raise ConfigError(f"cannot resume {resume}: no run.json there (not a run directory).")
    meta = json.loads(meta_path.read_text())
    saved_path = run_dir / "resume.gin"
    if not saved_path.exists():  # made before resume.gin existed: config.gin held the same
        saved_path = run_dir / "config.gin"
    if not saved_path.exists():
        raise ConfigError(f"cannot resume {resume}: its saved configuration (resume.gin) is "
                          "missing.")
    saved = saved_path.read_text()
    num_seeds = int(meta["seeds"])
    if seeds is not None and seeds != num_seeds:
        raise ConfigError(f"--resume {resume} continues a run of {num_seeds} seeds; --seeds {seeds} "
                          "would change it. Drop --seeds, or start a new run.")
    if experiment is not None or bindings:
        config_lib.parse_text(saved)
        ours = config_lib.bindings()
        if experiment is not None:
            config_lib.parse([experiment], bindings)
        else:
            config_lib.parse_text(saved, bindings)
        diff = config_lib.diff_bindings(ours, config_lib.bindings())
        if diff:
            raise ConfigError(
                f"--resume {resume} continues the run with the configuration it started with; "
                f"what you gave differs from it in: {diff}. Start a new run (without --resume) "
                "for a changed configuration.")
    with _working_dir(meta.get("cwd")):
        config_lib.parse_text(saved)
        exp = config_lib.call(Experiment, "Experiment")
        return _execute(exp, run_dir, num_seeds=num_seeds,
                        title=str(meta.get("title", meta["experiment"])),
                        bindings=(), resumed=True, created=(), progress=progress,
                        announce=announce, warn=warn)


def _execute(exp: Experiment, run_dir: pathlib.Path, *, num_seeds: int, title: str,
             bindings: Sequence[str], resumed: bool, created: Sequence[pathlib.Path],
             progress: bool, announce, warn) -> tuple[pathlib.Path, Result]:
    """Runs ``exp`` into ``run_dir``; on a failure before any result, removes what it made."""
    if warn is None:
        def warn(line: str) -> None:
            print(f"mtrlrec: warning: {line}", file=sys.stderr)

    writer = None
    main = sharding.is_main()
    try:
        if not main:  # another process of a multi-process run: computes, writes nothing
            ctx = RunContext(num_seeds=num_seeds, seed=exp.seed, run_dir=None,
                             checkpoint_dir=run_dir / "checkpoints", resume=resumed)
            return run_dir, exp.runner(ctx)
        try:
            writer = RunWriter(run_dir)
        except OSError as e:
            raise ConfigError(f"cannot write to {run_dir}: {e.strerror or e}.") from None
        if announce is not None:
            announce(run_dir)
        if resumed and not _has_checkpoint(run_dir / "checkpoints"):
            # Nothing to continue from (a runner of seconds that keeps no checkpoint, or
            # one interrupted before its first): the run is recomputed from the start,
            # deterministically, so the lines it logged before are dropped, not doubled.
            writer.jsonl.truncate_after(-2**62)
        ctx = RunContext(
            num_seeds=num_seeds, seed=exp.seed, run_dir=run_dir, writer=writer,
            checkpoint_dir=run_dir / "checkpoints", resume=resumed, progress=progress,
        )
        result = exp.runner(ctx)
        notes = []
        unused = config_lib.unused_bindings(bindings, final=True)
        if unused:
            notes.append(_unused_message(unused, final=True))
            warn(notes[-1])
        write_outputs(run_dir, result, writer, title=title, description=exp.description,
                      num_seeds=num_seeds, notes=notes)
    except BaseException:
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        if main and not resumed and not has_results(run_dir):
            _remove_created(run_dir, created)
        raise
    writer.close()
    return run_dir, result


def _sweep_labels(result: Result) -> list[str] | None:
    if not result.hparams:
        return None
    from mtrlrec.runners.online import sweep_labels

    return sweep_labels(result.hparams)


def summary_markdown(result: Result, *, title: str, description: str, num_seeds: int,
                     notes: Sequence[str] = ()) -> str:
    """``summary.md``: final metrics, mean ± SE, saying what each SE is over.

    Metrics without a finite value in any seed (another domain's metric that a
    runner reports as NaN, a window in which no episode ended) are listed below
    the table instead of as rows of ``n/a``.
    """
    labels = _sweep_labels(result)
    header = ["metric", "mean ± SE" if labels is None else "sweep point", "n"]
    rows, empty, dagger, point_na = [], [], False, False
    for name in sorted(result.final):
        mean, se, n = result.mean_se(name)
        if not np.any(np.isfinite(mean)):
            empty.append(name)
            continue
        shown = name
        if name in result.stderr:
            shown, dagger = name + " †", True
        if labels is None:
            rows.append([shown, tables.format_mean_se(float(mean), float(se)), n])
        else:
            for i, lab in enumerate(labels):
                point_na |= not np.isfinite(mean[i])
                rows.append([shown, f"{lab}: {tables.format_mean_se(float(mean[i]), float(se[i]))}",
                             n])
    md = f"# {title}\n\n{description}\n\n"
    md += (f"Seeds: {num_seeds}. Values: mean over seeds ± standard error over seeds "
           f"(standard deviation across seeds / √n; n: seeds with a finite value).")
    if dagger:
        over = result.stderr_over or "computed by the runner (see its documentation)"
        md += f" †: standard error over {over}, not over seeds."
    md += "\n\n" + tables.markdown_table(header, rows)
    if point_na:
        md += "\nn/a: no seed gave a finite value at that sweep point.\n"
    if empty:
        md += (f"\nNot reported (no finite value in any seed: not produced by this runner, or "
               f"no episode ended): {', '.join(empty)}.\n")
    for note in notes:
        md += f"\nWarning: {note}\n"
    for t, table in result.tables.items():
        md += f"\n## {t}\n\n{table}\n"
    return md


def _hparam_value(v):
    return v if isinstance(v, (bool, int, float, str)) else config_lib.format_value(v)


def write_outputs(run_dir: pathlib.Path, result: Result, writer: MetricWriter, *, title: str,
                  description: str, num_seeds: int, notes: Sequence[str] = (),
                  hparams: dict[str, Any] | None = None,
                  metrics: dict[str, float] | None = None) -> None:
    """Writes summary, plots, result arrays, operative config and TB text/hparams.

    HParams: the run is one session (a sweep: one session per sweep point, in
    ``tb/sweep/<point>/``) carrying every binding whose value differs from the
    code's default, the seeds, ``hparams`` (e.g. the table and row of a bench
    cell), the sweep point's values (``sweep/<name>``) and the final metrics
    (``final/<metric>``: mean over seeds; plus ``metrics``).
    """
    md = summary_markdown(result, title=title, description=description, num_seeds=num_seeds,
                          notes=notes)
    (run_dir / "summary.md").write_text(md)
    operative = config_lib.operative_config()
    (run_dir / "config.gin").write_text(operative)
    writer.text("config", "```\n" + operative + "\n```")
    writer.text("summary", md)
    for t, table in result.tables.items():
        writer.text(f"tables/{t}", table)
    labels = _sweep_labels(result)
    if result.primary and result.primary in result.curves and result.steps is not None:
        png = plots.curve_png(result.steps, result.curves[result.primary],
                              title=f"{title} ({num_seeds} seeds)", ylabel=result.primary,
                              labels=labels)
        (run_dir / "plot.png").write_bytes(png)
        writer.image("plot", png)
    for name, png in result.images.items():
        (run_dir / f"{name}.png").write_bytes(png)
        writer.image(name, png)
    base = {"experiment": title, "seeds": num_seeds, **(hparams or {})}
    base.update({k: _hparam_value(v) for k, v in config_lib.non_default_bindings(
        exclude=("Experiment.description", "Experiment.num_seeds")).items()})  # 'seeds' is used
    step = int(result.steps[-1]) if result.steps is not None and np.size(result.steps) else 0
    means = {k: result.mean_se(k)[0] for k in result.final}
    if labels is None:
        finals = {f"final/{k}": float(m) for k, m in means.items()
                  if np.ndim(m) == 0 and np.isfinite(m)}
        writer.hparams(base, {**finals, **(metrics or {})}, step=step)
    else:
        for i, label in enumerate(labels):
            point = dict(base)
            for k, v in result.hparams.items():
                v = np.asarray(v)
                # str() first: float32 0.05 is 0.05 in TensorBoard, not 0.050000000745.
                point[f"sweep/{k}"] = float(str(v[i])) if v.ndim == 1 else str(v[i].tolist())
            finals = {f"final/{k}": float(m[i]) for k, m in means.items()
                      if np.ndim(m) == 1 and np.isfinite(m[i])}
            writer.hparams(point, finals, session=f"sweep/{label}", step=step)
    save_result(run_dir / "result.npz", result)


def save_result(path: pathlib.Path, result: Result) -> None:
    arrays = {}
    for group in ("final", "curves", "stderr", "hparams"):
        for k, v in getattr(result, group).items():
            arrays[f"{group}::{k}"] = np.asarray(v)
    if result.steps is not None:
        arrays["steps"] = np.asarray(result.steps)
    np.savez_compressed(path, **arrays)
    (path.with_suffix(".json")).write_text(json.dumps({"primary": result.primary,
                                                       "stderr_over": result.stderr_over}))


def load_result(path: str | pathlib.Path) -> Result:
    path = pathlib.Path(path)
    data = np.load(path)
    groups: dict[str, dict[str, np.ndarray]] = {"final": {}, "curves": {}, "stderr": {},
                                                "hparams": {}}
    steps = None
    for key in data.files:
        if key == "steps":
            steps = data[key]
            continue
        g, k = key.split("::", 1)
        groups[g][k] = data[key]
    meta = json.loads(path.with_suffix(".json").read_text()) if path.with_suffix(".json").exists() \
        else {}
    return Result(steps=steps, primary=meta.get("primary"),
                  stderr_over=meta.get("stderr_over") or "", **groups)


