"""Experiments: a Gin file, a runner, a run directory.

``mtrlrec run EXP.gin`` calls :func:`run_experiment`, which parses the Gin
files, builds :class:`Experiment` (and with it the runner, the environment and
the agent, so configuration errors surface before any compilation), creates a
fresh run directory and fills it:

==================  ========================================================
``run.json``        the command (experiment, bindings, seeds) for ``--resume``
``config.gin``      the operative Gin config (every value actually used)
``metrics.jsonl``   one line per logged step: mean and std over seeds
``metrics.csv``     the same, one row per step
``tb/``             TensorBoard events: curves, config, summary table, hparams, plots
``summary.md``      final metrics (mean ± SE over seeds) and the runner's tables
``plot.png``        the primary curve, mean ± SE band and 10-90 % band over seeds
``result.npz``      per-seed final values and curves (re-used by ``bench``)
``checkpoints/``    the loop state after each chunk (``--resume DIR`` continues)
==================  ========================================================

A run directory is never overwritten; a crash leaves what was written so far.
"""

from __future__ import annotations

import datetime
import json
import pathlib
import platform
from typing import Any, Sequence

import gin
import numpy as np

from mtrlrec import config as config_lib
from mtrlrec.core.errors import ConfigError, check_int
from mtrlrec.log import plots, provenance, tables
from mtrlrec.log.writers import RunWriter
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


def check_out_dir(path: pathlib.Path) -> None:
    """Refuses an output directory that exists and holds anything (earlier results)."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ConfigError(
            f"output directory {path} already exists and is not empty; choose another --out, "
            f"or continue it with --resume {path}."
        )


def new_run_dir(out: str | None, name: str) -> pathlib.Path:
    """Creates a fresh run directory; refuses to reuse a non-empty one."""
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
    path.mkdir(parents=True, exist_ok=True)
    return path


def run_experiment(
    experiment: str | None = None,
    bindings: Sequence[str] = (),
    *,
    out: str | None = None,
    seeds: int | None = None,
    resume: str | None = None,
    progress: bool = True,
) -> tuple[pathlib.Path, Result]:
    """Runs an experiment file into a new (or resumed) run directory.

    Args:
      experiment: path of the Gin file (ignored with ``resume``).
      bindings: extra ``--gin_param`` bindings.
      out: run directory (must not exist or be empty); default ``runs/<name>-<time>``.
      seeds: overrides ``Experiment.num_seeds``.
      resume: a run directory to continue from its latest checkpoint.
      progress: show progress bars.

    Returns:
      The run directory and the :class:`Result`.
    """
    if seeds is not None:
        check_int("--seeds", seeds, min_value=1)
    if resume is not None:
        run_dir = pathlib.Path(resume)
        meta_path = run_dir / "run.json"
        if not meta_path.exists():
            raise ConfigError(f"cannot resume {run_dir}: no run.json there (not a run directory).")
        meta = json.loads(meta_path.read_text())
        experiment, bindings, seeds = meta["experiment"], meta["bindings"], meta["seeds"]
        exp = build([experiment], bindings)
    else:
        if experiment is None:
            raise ConfigError("no experiment file given.")
        if out is not None:
            check_out_dir(pathlib.Path(out))
        exp = build([experiment], bindings)
        run_dir = new_run_dir(out, pathlib.Path(experiment).stem)
    num_seeds = seeds if seeds is not None else exp.num_seeds
    meta = {
        "experiment": str(experiment),
        "bindings": list(bindings),
        "seeds": num_seeds,
        "seed": exp.seed,
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "host": platform.node(),
        "code": provenance.code_version(),
    }
    if resume is None:
        (run_dir / "run.json").write_text(json.dumps(meta, indent=1))
        (run_dir / "config.gin").write_text(gin.config_str())
    writer = RunWriter(run_dir)
    ctx = RunContext(
        num_seeds=num_seeds, seed=exp.seed, run_dir=run_dir, writer=writer,
        checkpoint_dir=run_dir / "checkpoints", resume=resume is not None, progress=progress,
    )
    try:
        result = exp.runner(ctx)
        write_outputs(run_dir, result, writer, title=str(experiment), description=exp.description,
                      num_seeds=num_seeds)
    finally:
        writer.close()
    return run_dir, result


def summary_markdown(result: Result, *, title: str, description: str, num_seeds: int) -> str:
    labels = None
    if result.hparams:
        from mtrlrec.train.online import sweep_labels

        labels = sweep_labels(result.hparams)
    header = ["metric", "mean ± SE" if labels is None else "sweep point", "n"]
    rows = []
    for name in sorted(result.final):
        mean, se, n = result.mean_se(name)
        if labels is None:
            rows.append([name, tables.format_mean_se(float(mean), float(se)), n])
        else:
            for i, lab in enumerate(labels):
                rows.append([name, f"{lab}: {tables.format_mean_se(float(mean[i]), float(se[i]))}",
                             n])
    md = f"# {title}\n\n{description}\n\nSeeds: {num_seeds}. Values are mean ± standard " \
         f"error over seeds.\n\n" + tables.markdown_table(header, rows)
    for t, table in result.tables.items():
        md += f"\n## {t}\n\n{table}\n"
    return md


def write_outputs(run_dir: pathlib.Path, result: Result, writer: MetricWriter, *, title: str,
                  description: str, num_seeds: int) -> None:
    """Writes summary, plots, result arrays, operative config and TB text/hparams."""
    md = summary_markdown(result, title=title, description=description, num_seeds=num_seeds)
    (run_dir / "summary.md").write_text(md)
    operative = config_lib.operative_config()
    (run_dir / "config.gin").write_text(operative)
    writer.text("config", "```\n" + operative + "\n```")
    writer.text("summary", md)
    for t, table in result.tables.items():
        writer.text(f"tables/{t}", table)
    if result.primary and result.primary in result.curves and result.steps is not None:
        labels = None
        if result.hparams:
            from mtrlrec.train.online import sweep_labels

            labels = sweep_labels(result.hparams)
        png = plots.curve_png(result.steps, result.curves[result.primary],
                              title=f"{title} ({num_seeds} seeds)", ylabel=result.primary,
                              labels=labels)
        (run_dir / "plot.png").write_bytes(png)
        writer.image("plot", png)
    for name, png in result.images.items():
        (run_dir / f"{name}.png").write_bytes(png)
        writer.image(name, png)
    finals = {}
    if not result.hparams:
        for k in result.final:
            mean, _, _ = result.mean_se(k)
            if np.ndim(mean) == 0 and np.isfinite(mean):
                finals[f"final/{k}"] = float(mean)
    writer.hparams({"experiment": title, "seeds": num_seeds}, finals)
    save_result(run_dir / "result.npz", result)


def save_result(path: pathlib.Path, result: Result) -> None:
    arrays = {}
    for group in ("final", "curves", "stderr", "hparams"):
        for k, v in getattr(result, group).items():
            arrays[f"{group}::{k}"] = np.asarray(v)
    if result.steps is not None:
        arrays["steps"] = np.asarray(result.steps)
    np.savez_compressed(path, **arrays)
    (path.with_suffix(".json")).write_text(json.dumps({"primary": result.primary}))


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
    return Result(steps=steps, primary=meta.get("primary"), **groups)


