"""OBD loader: the committed sample, tiny hand-written CSVs, broken copies, a fake wheel.

The OPE runner on OBD is tested in ``tests/runners/test_ope_runner.py``.
"""

import zipfile

import numpy as np
import pytest

from mtrlrec.core.errors import ConfigError
from mtrlrec.data import obd

HEADER = (",timestamp,item_id,position,click,propensity_score,user_feature_0,user_feature_1,"
          "user_feature_2,user_feature_3,user-item_affinity_0,user-item_affinity_1,user-item_affinity_2\n")
ROWS = [
    "0,2019-11-24 00:00:34.5+00:00,2,1,0,0.3333,a,b,c,d,0.0,0.0,1.0\n",
    "1,2019-11-24 00:00:30+00:00,0,3,1,0.3333,a,x,c,d,0.0,2.0,0.0\n",
    "2,2019-11-24 00:01:00+00:00,1,2,0,0.3333,z,b,c,e,0.0,0.0,0.0\n",
]
ITEMS = (",item_id,item_feature_0,item_feature_1,item_feature_2,item_feature_3\n"
         "0,0,-0.5,h1,h2,h3\n1,1,0.25,h1,h4,h3\n2,2,1.0,h5,h2,h3\n")


def write(root, rows=ROWS, header=HEADER, items=ITEMS, behavior="random", campaign="all"):
    d = root / behavior / campaign
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{campaign}.csv").write_text(header + "".join(rows))
    (d / "item_context.csv").write_text(items)
    return root


def test_committed_sample_loads():
    for b in obd.POLICIES:
        for c in obd.CAMPAIGNS:
            log = obd.load(b, c)
            assert log.num_rounds == 10_000 and log.num_positions == 3
            assert log.num_actions == obd.NUM_ITEMS[c]
            assert log.affinity.shape == (10_000, obd.NUM_ITEMS[c])
            assert np.all(np.diff(log.timestamp) >= 0)
            assert np.all((log.pscore > 0) & (log.pscore <= 1))
    rnd = obd.load("random", "all")
    assert int(rnd.reward.sum()) == 38  # 0.38 % CTR in the sample
    np.testing.assert_allclose(rnd.pscore, 1 / 80)
    assert rnd.context().shape == (10_000, 20)  # obp's dim_context for this log
    alpha, beta = obd.load_bts_prior("women")
    assert alpha.shape == beta.shape == (46,)


def test_tiny_csv_by_hand(tmp_path):
    log = obd.load("random", "all", write(tmp_path))
    # sorted by time: rows 1, 0, 2
    np.testing.assert_array_equal(log.action, [0, 2, 1])
    np.testing.assert_array_equal(log.position, [2, 0, 1])
    np.testing.assert_array_equal(log.reward, [1, 0, 0])
    np.testing.assert_array_equal(log.user_features[:, 0], [0, 0, 1])  # codes of a, a, z
    np.testing.assert_allclose(log.item_features[:, 0], [-0.5, 0.25, 1.0])
    np.testing.assert_allclose(log.affinity[0], [0, 2, 0])
    assert log.timestamp[1] - log.timestamp[0] == 4_500_000  # microseconds


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda r, h: (r, h.replace("propensity_score", "pscore")), r"all.csv:1: missing column\(s\) \['propensity_score'\]"),
        (lambda r, h: ([r[0], "1,2019-11-24 00:00:30+00:00,0,3\n", r[2]], h), r"all.csv:3: malformed row"),
        (lambda r, h: ([r[0], r[1].replace(",0.3333,", ",0,"), r[2]], h), r"all.csv:3: propensity_score must be in \(0, 1\], got 0.0"),
        (lambda r, h: ([r[0], r[1], r[2].replace(",0.3333,", ",1.5,")], h), r"all.csv:4: propensity_score must be in \(0, 1\], got 1.5"),
        (lambda r, h: ([r[0].replace(",2,1,", ",7,1,"), r[1], r[2]], h), r"all.csv:2: item_id 7 outside the item range 0..2"),
        (lambda r, h: ([r[0].replace(",2,1,", ",2,4,"), r[1], r[2]], h), r"all.csv:2: position 4 outside 1..3"),
        (lambda r, h: ([r[0].replace("2019-11-24", "yesterday"), r[1], r[2]], h), r"all.csv:2: timestamp"),
        (lambda r, h: ([r[0], r[1].replace(",1,0.3333", ",one,0.3333"), r[2]], h), r"all.csv:3: column click must be numeric"),
    ],
)
def test_broken_copies_name_file_and_line(tmp_path, change, match):
    rows, header = change(list(ROWS), HEADER)
    root = write(tmp_path, rows, header)
    obd._CACHE.clear()
    with pytest.raises(ConfigError, match=match):
        obd.load("random", "all", root, on_invalid="raise")


def test_invalid_rows_are_rejected_and_reported(tmp_path):
    """By default bad rows are dropped, never silently: counted per reason, with one warning."""
    rows = [ROWS[0].replace(",2,1,", ",7,1,"), ROWS[1].replace(",0.3333,", ",0,"), ROWS[2]]
    root = write(tmp_path, rows, HEADER)
    obd._CACHE.clear()
    with pytest.warns(obd.OBDRejectionWarning, match=r"rejected 2 of 3 rows \(66.67 %\): "
                      r"item_id outside the catalogue 0..2: 1; propensity_score not in \(0, 1\]: 1"):
        log = obd.load("random", "all", root)
    assert log.num_rounds == 1 and log.num_raw_rows == 3
    assert log.rejected == {"item_id outside the catalogue 0..2": 1, "propensity_score not in (0, 1]": 1}
    assert log.rejected_share == pytest.approx(2 / 3)
    bad_all = [r.replace(",0.3333,", ",0,") for r in ROWS]
    obd._CACHE.clear()
    with pytest.raises(ConfigError, match="every row was rejected"):
        obd.load("random", "all", write(tmp_path / "b", bad_all, HEADER))
    with pytest.raises(ConfigError, match="on_invalid must be"):
        obd.load("random", "all", root, on_invalid="drop")


def test_clean_sample_reports_nothing_rejected_and_obp_item_layout():
    log = obd.load("random", "men")
    assert log.rejected == {} and log.rejected_share == 0.0
    assert "all 10,000 rows kept" in log.rejection_report()
    ac = log.action_context()
    assert ac.shape == (34, 5)
    np.testing.assert_array_equal(ac[:, 0], np.arange(34))  # obp keeps the label-encoded id
    np.testing.assert_allclose(ac[:, 4], log.item_features[:, 0])  # item_feature_0 last


def test_missing_files_and_names(tmp_path):
    with pytest.raises(ConfigError, match="men.csv not found"):
        obd.load("random", "men", tmp_path)
    with pytest.raises(ConfigError, match="campaign must be one of"):
        obd.load("random", "kids")
    with pytest.raises(ConfigError, match="behaviour policy must be one of"):
        obd.load("greedy", "all")


def test_prepare_from_a_local_wheel(tmp_path):
    wheel = tmp_path / "obp-0.4.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        for b in obd.POLICIES:
            for c in obd.CAMPAIGNS:
                z.writestr(f"obp/dataset/obd/{b}/{c}/{c}.csv", HEADER + "".join(ROWS))
                z.writestr(f"obp/dataset/obd/{b}/{c}/item_context.csv", ITEMS)
        z.writestr("obp/policy/conf/prior_bts.yaml", "all:\n  alpha:\n    - 1.0\n    - 2.0\n  beta:\n    - 3.0\n    - 4.0\n")
    out = obd.prepare(tmp_path / "cache", source=wheel)
    assert obd.load("bts", "women", out).num_rounds == 3
    alpha, beta = obd.load_bts_prior("all", out)
    np.testing.assert_array_equal(alpha, [1, 2])
    np.testing.assert_array_equal(beta, [3, 4])
    bad = tmp_path / "bad.yaml"
    bad.write_text("all:\n  alpha:\n    - x\n")
    with pytest.raises(ConfigError, match="bad.yaml:3: expected a number"):
        obd.parse_prior_yaml(bad)
    empty = tmp_path / "empty.whl"
    with zipfile.ZipFile(empty, "w") as z:
        z.writestr("nothing", "")
    with pytest.raises(ConfigError, match="lacks obp/dataset/obd/random/all/all.csv"):
        obd.prepare(tmp_path / "cache2", source=empty)
