"""Runs a table spec: every row's experiment over its seeds, then mean ± SE per cell,
the comparison with the reference values and the cross-cell checks.

Outputs in the bench directory (default ``runs/bench/<table>[-quick]-<time>/``):
``table.md`` and ``table.csv`` (cells, references, pass/deviate marks, checks),
``tb/`` (the table as TensorBoard text), ``rows/<row>/`` (a full run directory per
row: curves in TensorBoard, summary, plot, and one HParams session each, so
TensorBoard's HParams dashboard shows the table too).

Long tables survive interruptions: every finished row leaves ``rows/<row>/row.json``
(what it ran: experiment, bindings, seeds) beside its ``result.npz``, the partial
table is rewritten after every row, and ``mtrlrec bench TABLE --resume DIR`` reuses
the finished rows of DIR whose configuration is unchanged and runs the rest. A row
that crashed part-way, or whose configuration changed, is moved aside
(``rows/<row>.previous-<time>``), never deleted.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import pathlib
import shutil
from typing import Callable, Sequence

import numpy as np

from mtrlrec import experiment as experiment_lib
from mtrlrec.bench import spec as spec_lib
from mtrlrec.config import REPO_ROOT
from mtrlrec.core.errors import ConfigError
from mtrlrec.log import provenance, tables
from mtrlrec.log.tensorboard import TensorBoardWriter
from mtrlrec.log.writers import RunWriter
from mtrlrec.train import sharding
from mtrlrec.train.result import Result, RunContext

RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"


@dataclasses.dataclass
class Cell:
    mean: float
    se: float
    n: int
    se_over: str = "seeds"  # what the standard error is over (a runner's own: users, bootstrap)


@dataclasses.dataclass
class Judgement:
    row: str
    column: str
    ours: Cell | None
    reference: spec_lib.Reference
    value: float | None
    status: str  # 'pass' | 'deviate' | 'not judged (quick)' | 'no reference value' | 'not run'
    bound: float | None = None


@dataclasses.dataclass
class BenchTable:
    spec: spec_lib.TableSpec
    quick: bool
    cells: dict[tuple[str, str], Cell]
    judgements: list[Judgement]
    checks: list[tuple[str, str]]  # (name, 'pass' | 'fail' | 'not judged (quick)' | 'not run')
    codes: dict[str, dict | None] = dataclasses.field(default_factory=dict)  # row -> code version
    markdown: str = ""
    csv: str = ""

    @property
    def passed(self) -> bool:
        return all(j.status != "deviate" for j in self.judgements) and all(
            s != "fail" for _, s in self.checks)


def judge(ours: Cell | None, ref: spec_lib.Reference, quick: bool) -> Judgement:
    value = ref.quick_value if (quick and ref.quick_value is not None) else ref.value
    if value is None:
        return Judgement(ref.row, ref.column, ours, ref, None, "no reference value")
    if ours is None:
        return Judgement(ref.row, ref.column, ours, ref, value, "not run")
    if quick and not ref.quick:
        return Judgement(ref.row, ref.column, ours, ref, value, "not judged (quick)")
    if ref.tolerance_kind == "se":
        bound = ref.tolerance * math.sqrt(ours.se ** 2 + (ref.se or 0.0) ** 2)
    elif ref.tolerance_kind == "relative":
        bound = ref.tolerance * abs(value)
    else:
        bound = ref.tolerance
    ok = abs(ours.mean - value) <= bound
    return Judgement(ref.row, ref.column, ours, ref, value, "pass" if ok else "deviate", bound)


def evaluate_check(check: spec_lib.Check, cells, refs, quick: bool) -> str:
    if quick and not check.quick:
        return "not judged (quick)"

    def cell(row, col):
        if (row, col) not in cells:
            raise KeyError((row, col))
        return cells[(row, col)]

    def ref(row, col):
        for r in refs:
            if r.row == row and r.column == col:
                v = r.quick_value if (quick and r.quick_value is not None) else r.value
                if v is None:
                    raise KeyError((row, col))
                return v
        raise KeyError((row, col))

    ns = {
        "mean": lambda r, c: cell(r, c).mean,
        "se": lambda r, c: cell(r, c).se,
        "n": lambda r, c: cell(r, c).n,
        "ref": ref,
        "abs": abs, "min": min, "max": max, "all": all, "any": any, "math": math, "sum": sum,
        "len": len,
    }
    try:
        # One namespace as globals, so generator expressions in a check see mean/se too.
        return "pass" if bool(eval(check.expr, {"__builtins__": {}, **ns})) else "fail"  # noqa: S307
    except KeyError:
        return "not run"
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"check {check.name!r} ({check.expr!r}) failed to evaluate: {e}") from None


def _fmt(x: float | None, fmt: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return format(x, fmt)


def render(bt: BenchTable) -> None:
    s = bt.spec
    header = ["row"] + [c.label or c.key for c in s.columns]
    rows = []
    other_se: dict[str, str] = {}  # footnote mark -> what those SEs are over
    ran = {r for r, _ in bt.cells}
    empty = False
    for r in s.rows:
        line = [r.label or r.key]
        for c in s.columns:
            cell = bt.cells.get((r.key, c.key))
            if cell is None:
                empty |= r.key in ran
                line.append("")
                continue
            text = tables.format_mean_se(cell.mean, cell.se, c.format)
            if cell.se_over != "seeds":
                mark = other_se.setdefault(cell.se_over, "†" * (len(other_se) + 1))
                text += " " + mark
            line.append(text)
        rows.append(line)
    md = [f"# {s.title}{' (quick)' if bt.quick else ''}\n"]
    if s.paper:
        md.append(f"Reproduces: {s.paper}{', ' + s.location if s.location else ''}.\n")
    if s.description:
        md.append(s.description.strip() + "\n")
    notes = "".join(f" {mark}: standard error over {over}, not over seeds."
                    for over, mark in other_se.items())
    if empty:
        notes += " An empty cell in a row that ran: the row does not report that metric."
    md.append(f"Cells: mean ± standard error over seeds.{notes} Generated by `mtrlrec bench "
              f"{s.name}{' --quick' if bt.quick else ''}` on {datetime.date.today().isoformat()}.\n")
    md.append(tables.markdown_table(header, rows))
    csv_rows = []
    if bt.judgements:
        md.append("\n## Reference values\n")
        jrows = []
        for j in bt.judgements:
            col = s.column(j.column)
            ours = "" if j.ours is None else tables.format_mean_se(j.ours.mean, j.ours.se,
                                                                    col.format)
            refv = _fmt(j.value, col.format)
            if j.reference.se is not None and refv:
                refv += f" ± {_fmt(j.reference.se, col.format)}"
            tol = "" if j.bound is None else f"±{_fmt(j.bound, col.format)}"
            mark = {"pass": "✓ pass", "deviate": "✗ deviate"}.get(j.status, j.status)
            jrows.append([s.row(j.row).label or j.row, col.label or col.key, ours, refv, tol,
                          mark, j.reference.source])
        md.append(tables.markdown_table(
            ["row", "column", "ours", "reference", "tolerance", "status", "source"], jrows))
    if bt.checks:
        md.append("\n## Checks\n")
        crows = [[name, {"pass": "✓ pass", "fail": "✗ fail"}.get(st, st),
                  next(c.expr for c in s.checks if c.name == name)] for name, st in bt.checks]
        md.append(tables.markdown_table(["check", "status", "expression"], crows))
    refs = {(j.row, j.column): j for j in bt.judgements}
    for r in s.rows:
        for c in s.columns:
            cell = bt.cells.get((r.key, c.key))
            j = refs.get((r.key, c.key))
            csv_rows.append([
                r.key, c.key, c.metric,
                "" if cell is None else repr(cell.mean), "" if cell is None else repr(cell.se),
                "" if cell is None else cell.n,
                "" if j is None or j.value is None else j.value,
                "" if j is None or j.reference.se is None else j.reference.se,
                "" if j is None or j.bound is None else j.bound,
                "" if j is None else j.status,
                "" if j is None else j.reference.source,
            ])
    md.append(_provenance_markdown(bt))
    bt.markdown = "\n".join(md)
    bt.csv = tables.csv_text(["row", "column", "metric", "mean", "se", "n", "reference",
                              "reference_se", "tolerance", "status", "source"], csv_rows)


def _provenance_markdown(bt: BenchTable) -> str:
    """Which code computed which rows, and which rows were not run."""
    lines = ["\n## Code\n"]
    groups: dict[str, list[str]] = {}
    for key, code in bt.codes.items():
        groups.setdefault(provenance.describe(code), []).append(key)
    if len(groups) == 1:
        lines.append(f"All rows: {next(iter(groups))}.")
    for text, keys in (groups.items() if len(groups) > 1 else []):
        lines.append(f"- {', '.join(keys)}: {text}")
    missing = [r.key for r in bt.spec.rows if r.key not in bt.codes]
    if bt.codes and missing:
        lines.append(f"\nNot run in this table (empty cells): {', '.join(missing)}.")
    return "\n".join(lines) + "\n"


def _judged(spec: spec_lib.TableSpec, quick: bool, cells: dict,
            codes: dict | None = None) -> BenchTable:
    judgements = [judge(cells.get((r.row, r.column)), r, quick) for r in spec.references]
    checks = [(c.name, evaluate_check(c, cells, spec.references, quick)) for c in spec.checks]
    bt = BenchTable(spec, quick, cells, judgements, checks, codes=dict(codes or {}))
    render(bt)
    return bt


def _write_table(out_dir: pathlib.Path, bt: BenchTable) -> None:
    for name, text in (("table.md", bt.markdown), ("table.csv", bt.csv)):
        tmp = out_dir / (name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out_dir / name)  # atomic: a crash never leaves half a table


def _row_identity(spec, row, quick: bool, seeds: int | None) -> dict:
    """What a row's numbers depend on in the spec (compared on --resume)."""
    bindings = list(row.bindings)
    if quick:
        bindings += list(spec.quick_bindings) + list(row.quick_bindings)
    if seeds is None:
        seeds = row.seeds or (spec.quick_seeds if quick and spec.quick_seeds else spec.seeds)
    return {"experiment": row.experiment, "bindings": bindings, "seeds": seeds, "quick": quick}


def _resume_dir(path: pathlib.Path, spec, quick: bool) -> pathlib.Path:
    meta = path / "bench.json"
    if not meta.exists():
        raise ConfigError(f"--resume {str(path)!r}: not a bench output directory (no bench.json).")
    info = json.loads(meta.read_text())
    if info.get("table") != spec.name or bool(info.get("quick")) != quick:
        raise ConfigError(
            f"--resume {str(path)!r} holds table {info.get('table')!r} "
            f"({'quick' if info.get('quick') else 'full'}), not {spec.name!r} "
            f"({'quick' if quick else 'full'}).")
    return path


def _finished_row(row_dir: pathlib.Path, identity: dict) -> tuple[Result, dict | None] | None:
    """The row's saved result and recorded code version if it finished with the same
    configuration, else None."""
    meta, npz = row_dir / "row.json", row_dir / "result.npz"
    if not (meta.exists() and npz.exists()):
        return None
    recorded = json.loads(meta.read_text())
    if {k: recorded.get(k) for k in identity} != identity:
        return None
    return experiment_lib.load_result(npz), recorded.get("code")


def _move_aside(row_dir: pathlib.Path, stamp: str) -> None:
    if row_dir.exists():
        row_dir.rename(row_dir.with_name(f"{row_dir.name}.previous-{stamp}"))


def run_row(spec: spec_lib.TableSpec, row: spec_lib.Row, *, quick: bool, seeds: int | None,
            row_dir: pathlib.Path | None, progress: bool) -> Result:
    identity = _row_identity(spec, row, quick, seeds)
    exp = experiment_lib.build([spec_lib.experiment_path(row)], identity["bindings"])
    seeds = identity["seeds"]
    if not sharding.is_main():  # several processes: process 0 alone writes
        row_dir = None
    writer = RunWriter(row_dir) if row_dir is not None else None
    ctx = RunContext(num_seeds=seeds, seed=exp.seed, run_dir=row_dir,
                     progress=progress, quick=quick)
    if writer is not None:
        ctx.writer = writer
    try:
        result = exp.runner(ctx)
        if writer is not None:
            finals = {}
            for col in spec.columns:
                if col.metric not in result.final:
                    continue
                mean, _, _ = result.mean_se(col.metric)
                if np.ndim(mean) == 0 and np.isfinite(mean):
                    finals[f"table/{col.key}"] = float(mean)
            experiment_lib.write_outputs(row_dir, result, writer, title=f"{spec.name}/{row.key}",
                                         description=row.label, num_seeds=seeds,
                                         hparams={"table": spec.name, "row": row.key},
                                         metrics=finals)
    finally:
        if writer is not None:
            writer.close()
    return result


def run_table(name: str, *, quick: bool = False, out: str | None = None,
              seeds: int | None = None, rows: Sequence[str] | None = None,
              save_results: bool = False, progress: bool = True,
              resume: str | None = None,
              announce: Callable[[pathlib.Path], None] | None = None,
              ) -> tuple[pathlib.Path, BenchTable]:
    """Runs the table ``name`` and writes it; returns the output directory and the table.

    ``resume``: an earlier output directory of the same table; its finished rows
    with unchanged configuration are reused, the others run (see the module doc).
    ``announce``: called with the output directory before the first row runs.

    Every selected row is built (configuration checked) before the output
    directory is created; if the table then fails before its first row
    finished, the directory is removed again.
    """
    if str(name).endswith(".gin"):
        raise ConfigError(f"{name} is an experiment, not a table; run it with `mtrlrec run {name}`.")
    spec = spec_lib.load(name)
    if rows is not None:
        unknown = set(rows) - {r.key for r in spec.rows}
        if unknown:
            raise ConfigError(f"unknown row(s) {sorted(unknown)} in table {spec.name}; rows are "
                              f"{[r.key for r in spec.rows]}.")
    if quick and rows is None:  # rows marked quick = false are left out of --quick
        rows = [r.key for r in spec.rows if r.quick]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    if resume is not None:
        if out is not None:
            raise ConfigError("--resume DIR writes into DIR; do not pass --out as well.")
        out_dir = _resume_dir(pathlib.Path(resume), spec, quick)
        created: list[pathlib.Path] = []
    else:
        out_dir = pathlib.Path(
            out or pathlib.Path("runs") / "bench" / f"{spec.name}{'-quick' if quick else ''}-{stamp}")
        if not sharding.multi_process():
            experiment_lib.check_out_dir(out_dir)
    # Every row's configuration is built (no compilation) before anything is created or
    # run, so a mistake in the last row costs seconds, not the table's first rows.
    for row in spec.rows:
        if rows is None or row.key in rows:
            experiment_lib.build([spec_lib.experiment_path(row)],
                                 _row_identity(spec, row, quick, seeds)["bindings"])
    main = sharding.is_main()
    if resume is None and main:
        def make():
            made, made_created = experiment_lib.create_run_dir(str(out_dir), spec.name)
            try:
                (made / "bench.json").write_text(json.dumps({"table": spec.name,
                                                             "quick": quick}))
            except OSError as e:
                experiment_lib._remove_created(made, made_created)  # noqa: SLF001
                raise ConfigError(f"cannot write to {made}: {e.strerror or e}.") from None
            return made, made_created

        out_dir, created = experiment_lib._shared(make)  # noqa: SLF001
    elif resume is None:
        out_dir, created = experiment_lib._shared(None), []  # noqa: SLF001
    if announce is not None and main:
        announce(out_dir)
    try:
        return _run_rows(spec, out_dir, quick=quick, seeds=seeds, rows=rows, resume=resume,
                         stamp=stamp, progress=progress, save_results=save_results)
    except BaseException:
        # A failed start leaves nothing; once a row has finished, everything stays.
        if main and resume is None and not any((out_dir / "rows").glob("*/row.json")):
            experiment_lib._remove_created(out_dir, created)  # noqa: SLF001
        raise


def _run_rows(spec, out_dir: pathlib.Path, *, quick, seeds, rows, resume, stamp, progress,
              save_results) -> tuple[pathlib.Path, BenchTable]:
    main = sharding.is_main()  # several processes compute every row; process 0 writes
    cells: dict[tuple[str, str], Cell] = {}
    produced: dict[str, list[str]] = {}
    codes: dict[str, dict | None] = {}
    for row in spec.rows:
        if rows is not None and row.key not in rows:
            continue
        row_dir = out_dir / "rows" / row.key
        identity = _row_identity(spec, row, quick, seeds)
        finished = _finished_row(row_dir, identity) if resume is not None else None
        if finished is not None:
            result, codes[row.key] = finished
        else:
            if main:
                _move_aside(row_dir, stamp)
            result = run_row(spec, row, quick=quick, seeds=seeds, row_dir=row_dir,
                             progress=progress)
            codes[row.key] = provenance.code_version()
            if main:
                (row_dir / "row.json").write_text(
                    json.dumps({**identity, "code": codes[row.key]}, indent=2))
        produced[row.key] = sorted(result.final)
        for col in spec.columns:
            if col.metric not in result.final:
                continue  # a row may not have every column (e.g. pricing rows in an ads table)
            mean, se, n = result.mean_se(col.metric)
            if n == 0 and np.ndim(mean) == 0:
                continue  # reported as NaN for every seed: not this row's metric (empty cell)
            if np.ndim(mean) != 0:
                raise ConfigError(f"{spec.path}: row {row.key!r} is a sweep; a table cell needs "
                                  "one value per seed.")
            over = "seeds"
            if col.metric in result.stderr:
                over = result.stderr_over or "the runner's own estimate (see its documentation)"
            cells[(row.key, col.key)] = Cell(float(mean), float(se), n, over)
        # The table so far, so an interrupted run still leaves its finished rows readable.
        if main:
            _write_table(out_dir, _judged(spec, quick, cells, codes))
    for col in spec.columns:
        if produced and not any((r, col.key) in cells for r in produced):
            raise ConfigError(
                f"{spec.path}: column {col.key!r} needs metric {col.metric!r}, which no row "
                f"produces; the rows produce {sorted(set().union(*produced.values()))}."
            )
    bt = _judged(spec, quick, cells, codes)
    if not main:
        return out_dir, bt
    _write_table(out_dir, bt)
    tb = TensorBoardWriter(out_dir / "tb")
    tb.text(f"tables/{spec.name}", bt.markdown)
    tb.close()
    if save_results:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        stem = spec.name + ("-quick" if quick else "")
        shutil.copyfile(out_dir / "table.md", RESULTS_DIR / f"{stem}.md")
        shutil.copyfile(out_dir / "table.csv", RESULTS_DIR / f"{stem}.csv")
    return out_dir, bt
