"""Table specs: a TOML file in ``benchmarks/tables/`` that names a paper's table,
the experiment behind each row, the metrics of each column and the published
(or analytic) reference values with their source and tolerance.

Format (every key is checked; unknown keys are errors, to catch typos)::

    title = "..."; paper = "..."; location = "Section 3, Table 1"
    description = "..."; seeds = 100
    [quick]            seeds = 10, bindings = [...]        # what --quick changes
    [[columns]]        key, metric, label, format
    [[rows]]           key, label, experiment, bindings, quick_bindings, seeds, quick
    [[references]]     row, column, value, quick_value, se, tolerance,
                       tolerance_kind ('se' | 'relative' | 'absolute'), source, quick
    [[checks]]         name, expr, quick

A reference with ``tolerance_kind = 'se'`` passes when
``|ours - ref| <= tolerance * sqrt(se_ours² + se_ref²)``.
"""

from __future__ import annotations

import dataclasses
import pathlib
import tomllib


from mtrlrec.config import REPO_ROOT
from mtrlrec.core.errors import ConfigError

TABLES_DIR = REPO_ROOT / "benchmarks" / "tables"
TOLERANCE_KINDS = ("se", "relative", "absolute")


@dataclasses.dataclass(frozen=True)
class Column:
    key: str
    metric: str
    label: str = ""
    format: str = ".4g"


@dataclasses.dataclass(frozen=True)
class Row:
    key: str
    experiment: str
    label: str = ""
    bindings: tuple[str, ...] = ()
    quick_bindings: tuple[str, ...] = ()
    seeds: int | None = None
    quick: bool = True  # False: the --quick (CI) version skips this row


@dataclasses.dataclass(frozen=True)
class Reference:
    row: str
    column: str
    source: str
    value: float | None = None
    quick_value: float | None = None
    se: float | None = None
    tolerance: float | None = None
    tolerance_kind: str = "se"
    quick: bool = False


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    expr: str
    quick: bool = False


@dataclasses.dataclass(frozen=True)
class TableSpec:
    name: str
    path: pathlib.Path
    title: str
    paper: str
    location: str
    description: str
    seeds: int
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    references: tuple[Reference, ...] = ()
    checks: tuple[Check, ...] = ()
    quick_seeds: int | None = None
    quick_bindings: tuple[str, ...] = ()

    def row(self, key: str) -> Row:
        for r in self.rows:
            if r.key == key:
                return r
        raise KeyError(key)

    def column(self, key: str) -> Column:
        for c in self.columns:
            if c.key == key:
                return c
        raise KeyError(key)


def _build(cls, d: dict, where: str):
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - fields
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; expected some of "
                          f"{sorted(fields)}.")
    try:
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)
    except TypeError as e:
        raise ConfigError(f"{where}: {e}") from None


def resolve(name: str) -> pathlib.Path:
    """A table name (file stem in benchmarks/tables) or a path to a .toml file."""
    p = pathlib.Path(name)
    if p.suffix == ".toml" and p.exists():
        return p
    candidate = TABLES_DIR / f"{name}.toml"
    if candidate.exists():
        return candidate
    known = sorted(q.stem for q in TABLES_DIR.glob("*.toml"))
    raise ConfigError(f"unknown table {name!r}; known tables: {', '.join(known) or 'none'}.")


def load(name: str) -> TableSpec:
    path = resolve(name)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    where = str(path)
    top = {"title", "paper", "location", "description", "seeds", "quick", "columns", "rows",
           "references", "checks"}
    unknown = set(data) - top
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; expected {sorted(top)}.")
    for req in ("title", "columns", "rows"):
        if req not in data:
            raise ConfigError(f"{where}: missing required key {req!r}.")
    columns = tuple(_build(Column, c, f"{where} [[columns]] #{i + 1}")
                    for i, c in enumerate(data["columns"]))
    rows = tuple(_build(Row, r, f"{where} [[rows]] #{i + 1}") for i, r in enumerate(data["rows"]))
    refs = tuple(_build(Reference, r, f"{where} [[references]] #{i + 1}")
                 for i, r in enumerate(data.get("references", [])))
    checks = tuple(_build(Check, c, f"{where} [[checks]] #{i + 1}")
                   for i, c in enumerate(data.get("checks", [])))
    quick = data.get("quick", {})
    bad_quick = set(quick) - {"seeds", "bindings"}
    if bad_quick:
        raise ConfigError(f"{where} [quick]: unknown key(s) {sorted(bad_quick)}.")
    seeds = data.get("seeds", 10)
    if not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"{where}: seeds must be a positive integer, got {seeds!r}.")
    row_keys = [r.key for r in rows]
    col_keys = [c.key for c in columns]
    for keys, what in ((row_keys, "row"), (col_keys, "column")):
        dup = {k for k in keys if keys.count(k) > 1}
        if dup:
            raise ConfigError(f"{where}: duplicate {what} key(s) {sorted(dup)}.")
    for ref in refs:
        if ref.row not in row_keys:
            raise ConfigError(f"{where}: reference names unknown row {ref.row!r}.")
        if ref.column not in col_keys:
            raise ConfigError(f"{where}: reference names unknown column {ref.column!r}.")
        if ref.tolerance_kind not in TOLERANCE_KINDS:
            raise ConfigError(f"{where}: tolerance_kind must be one of {TOLERANCE_KINDS}, got "
                              f"{ref.tolerance_kind!r}.")
        if ref.value is not None and ref.tolerance is None:
            raise ConfigError(f"{where}: reference ({ref.row}, {ref.column}) has a value but no "
                              "tolerance.")
        if not ref.source:
            raise ConfigError(f"{where}: reference ({ref.row}, {ref.column}) needs a source.")
    for r in rows:
        exp = REPO_ROOT / r.experiment
        if not exp.exists() and not pathlib.Path(r.experiment).exists():
            raise ConfigError(f"{where}: row {r.key!r} names a missing experiment file "
                              f"{r.experiment!r}.")
    return TableSpec(
        name=path.stem, path=path, title=data["title"], paper=data.get("paper", ""),
        location=data.get("location", ""), description=data.get("description", ""),
        seeds=seeds, columns=columns, rows=rows, references=refs, checks=checks,
        quick_seeds=quick.get("seeds"), quick_bindings=tuple(quick.get("bindings", ())),
    )


def experiment_path(row: Row) -> str:
    p = REPO_ROOT / row.experiment
    return str(p if p.exists() else row.experiment)


