"""The table harness: aggregation, judging against references, checks, outputs."""

import pytest
from tensorboard.backend.event_processing import event_accumulator

from mtrlrec.bench import spec as spec_lib
from mtrlrec.bench.runner import run_table
from mtrlrec.core.errors import ConfigError


@pytest.fixture(scope="module")
def quick_table(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "analytic"
    return run_table("bandit_analytic", quick=True, out=str(out), progress=False)


def test_quick_analytic_table_passes(quick_table):
    out, table = quick_table
    statuses = {(j.row, j.column): j.status for j in table.judgements}
    assert statuses == {("uniform", "regret"): "pass", ("uniform", "optimal"): "pass",
                        ("oracle", "regret"): "pass", ("oracle", "optimal"): "pass"}
    assert all(s == "pass" for _, s in table.checks)
    assert table.passed
    cell = table.cells[("uniform", "regret")]
    assert cell.n == 20 and abs(cell.mean - 400.0) < 4 * cell.se


def test_outputs_written(quick_table):
    out, table = quick_table
    md = (out / "table.md").read_text()
    assert "Uniform (ε = 1)" in md and "✓ pass" in md
    csv = (out / "table.csv").read_text().splitlines()
    assert csv[0].startswith("row,column,metric,mean,se,n,reference")
    assert len(csv) == 1 + 3 * 2
    acc = event_accumulator.EventAccumulator(str(out / "tb"),
                                             size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    assert "tables/bandit_analytic" in acc.Tags()["tensors"]
    for row in ("uniform", "oracle", "eps"):
        assert (out / "rows" / row / "summary.md").exists()


def _write_spec(tmp_path, value, expr="mean('u', 'regret') > 1e9"):
    p = tmp_path / "wrong.toml"
    p.write_text(f"""
title = "wrong on purpose"
seeds = 5
[quick]
seeds = 5
bindings = ["OnlineRunner.num_steps = 1_000", "OnlineRunner.log_every = 100"]
[[columns]]
key = "regret"
metric = "cumulative_regret"
[[rows]]
key = "u"
experiment = "experiments/analytic/uniform.gin"
[[references]]
row = "u"
column = "regret"
value = {value}
tolerance = 3.0
source = "deliberately wrong"
quick = true
[[checks]]
name = "impossible"
expr = "{expr}"
quick = true
""")
    return p


def test_wrong_reference_deviates_and_check_fails(tmp_path):
    _, table = run_table(str(_write_spec(tmp_path, 450.0)), quick=True, out=str(tmp_path / "o"),
                         progress=False)
    assert table.judgements[0].status == "deviate"
    assert table.checks == [("impossible", "fail")]
    assert not table.passed
    assert "✗ deviate" in table.markdown


@pytest.mark.parametrize("patch, message", [
    (("title =", "titel ="), r"unknown key\(s\) \['titel'\]"),
    (('row = "u"', 'row = "v"'), "reference names unknown row 'v'"),
    (("uniform.gin", "nope.gin"), "missing experiment file"),
    (("tolerance = 3.0", 'tolerance = 3.0\ntolerance_kind = "sigma"'), "tolerance_kind must be one of"),
])
def test_spec_validation(tmp_path, patch, message):
    p = _write_spec(tmp_path, 400.0)
    p.write_text(p.read_text().replace(*patch, 1))
    with pytest.raises(ConfigError, match=message):
        spec_lib.load(str(p))


def test_all_committed_specs_load():
    for p in sorted(spec_lib.TABLES_DIR.glob("*.toml")):
        spec = spec_lib.load(str(p))
        assert spec.rows and spec.columns, p


def test_column_no_row_produces_is_an_error(tmp_path):
    p = _write_spec(tmp_path, 400.0)
    p.write_text(p.read_text().replace('metric = "cumulative_regret"', 'metric = "cumulative_regert"'))
    with pytest.raises(ConfigError, match=r"column 'regret' needs metric 'cumulative_regert', "
                                          r"which no row produces; the rows produce \[.*'cumulative_regret'"):
        run_table(str(p), quick=True, out=str(tmp_path / "o"), progress=False)


def test_resume_reuses_finished_rows_and_reruns_the_crashed_one(quick_table, tmp_path):
    import shutil

    out, table = quick_table
    copy = tmp_path / "resumed"
    shutil.copytree(out, copy)
    # A crash during row "eps": its directory exists but it never wrote row.json.
    (copy / "rows" / "eps" / "row.json").unlink()
    (copy / "table.md").unlink()
    kept = (copy / "rows" / "uniform" / "result.npz").stat().st_mtime_ns
    out2, resumed = run_table("bandit_analytic", quick=True, resume=str(copy), progress=False)
    assert out2 == copy
    assert (copy / "rows" / "uniform" / "result.npz").stat().st_mtime_ns == kept
    assert resumed.cells == table.cells  # same seeds, same programs: identical numbers
    assert (copy / "rows" / "eps" / "row.json").exists()
    assert len(list((copy / "rows").glob("eps.previous-*"))) == 1  # moved aside, not deleted
    assert (copy / "table.md").read_text() == table.markdown


def test_resume_refuses_another_table_or_a_plain_directory(quick_table, tmp_path):
    out, _ = quick_table
    with pytest.raises(ConfigError, match="holds table 'bandit_analytic' \\(quick\\)"):
        run_table("bandit_analytic", quick=False, resume=str(out), progress=False)
    with pytest.raises(ConfigError, match="no bench.json"):
        run_table("bandit_analytic", quick=True, resume=str(tmp_path), progress=False)
    with pytest.raises(ConfigError, match="--out"):
        run_table("bandit_analytic", quick=True, resume=str(out), out=str(tmp_path / "x"),
                  progress=False)


def test_table_and_run_record_the_code_that_ran(quick_table):
    import json

    from mtrlrec.log import provenance

    out, table = quick_table
    version = provenance.code_version()
    assert f"All rows: {provenance.describe(version)}." in table.markdown
    row = json.loads((out / "rows" / "uniform" / "row.json").read_text())
    assert row["code"] == version and row["seeds"] == 20
