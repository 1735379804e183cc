"""Splits: hand-checked leave-last-out sequences, ratio splits and k-fold folds."""

import numpy as np
import pytest

from mtrlrec.core.errors import ConfigError
from mtrlrec.data import splits

# user 0: items by time 5(t=1) 3(t=2) 4(t=2, later in log) 9(t=3) 2(t=4); user 1: 7, 8
USERS = np.array([0, 1, 0, 0, 0, 1, 0])
ITEMS = np.array([3, 8, 5, 4, 9, 7, 2])
TIMES = np.array([2, 9, 1, 2, 3, 1, 4])


def test_leave_last_out_left_padding_by_hand():
    s = splits.leave_last_out_sequences(USERS, ITEMS, TIMES, num_users=2, num_items=9, max_len=2)
    # user 0 sequence: 5 3 4 9 2 (the time tie 3/4 keeps log order)
    # training targets: user 0's 3 and 4, then user 1's 8 (users with < 3 items only train)
    np.testing.assert_array_equal(s.train.target, [3, 4, 8])
    np.testing.assert_array_equal(s.train.history, [[0, 5], [5, 3], [0, 7]])
    np.testing.assert_array_equal(s.train.length, [1, 2, 1])
    np.testing.assert_array_equal(s.valid.user, [0])
    np.testing.assert_array_equal(s.valid.history, [[3, 4]])
    np.testing.assert_array_equal(s.valid.target, [9])
    np.testing.assert_array_equal(s.test.history, [[4, 9]])
    np.testing.assert_array_equal(s.test.target, [2])
    assert 1 not in s.test.user
    assert s.train_seen[0, [0, 5, 3, 4]].all() and not s.train_seen[0, [9, 2]].any()
    assert s.valid_seen[0, 9] and not s.valid_seen[0, 2]


def test_user_with_two_items_trains_only():
    s = splits.leave_last_out_sequences(USERS, ITEMS, TIMES, num_users=2, max_len=3)
    u1 = s.train.user == 1
    np.testing.assert_array_equal(s.train.target[u1], [8])
    np.testing.assert_array_equal(s.train.history[u1], [[0, 0, 7]])


def test_right_padding():
    s = splits.leave_last_out_sequences(
        USERS, ITEMS, TIMES, num_users=2, max_len=3, padding="right"
    )
    np.testing.assert_array_equal(s.test.history, [[3, 4, 9]])
    np.testing.assert_array_equal(s.valid.history, [[5, 3, 4]])
    np.testing.assert_array_equal(s.train.history[:2], [[5, 0, 0], [5, 3, 0]])


def test_ratio_split_partitions_and_is_deterministic():
    parts = splits.ratio_split(1000, (0.8, 0.1, 0.1), seed=3)
    assert [len(p) for p in parts] == [800, 100, 100]
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(1000))
    again = splits.ratio_split(1000, (0.8, 0.1, 0.1), seed=3)
    for a, b in zip(parts, again):
        np.testing.assert_array_equal(a, b)
    other = splits.ratio_split(1000, (0.8, 0.1, 0.1), seed=4)
    assert not np.array_equal(parts[1], other[1])
    groups = np.repeat(np.arange(10), 100)
    gparts = splits.ratio_split(1000, (0.5, 0.5), seed=0, groups=groups)
    np.testing.assert_array_equal(np.bincount(groups[gparts[0]], minlength=10), [50] * 10)


def test_kfold_partitions_within_groups():
    folds = splits.kfold(103, 5, seed=1)
    tests = [t for _, t in folds]
    np.testing.assert_array_equal(np.sort(np.concatenate(tests)), np.arange(103))
    assert {len(t) for t in tests} <= {20, 21}
    for tr, te in folds:
        assert np.intersect1d(tr, te).size == 0 and tr.size + te.size == 103
    groups = np.repeat(np.arange(4), 10)
    for _, te in splits.kfold(40, 5, seed=0, groups=groups):
        np.testing.assert_array_equal(np.bincount(groups[te], minlength=4), [2] * 4)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: splits.kfold(3, 5), "exceeds"),
        (lambda: splits.kfold(10, 1), "kfold.k must be >= 2"),
        (lambda: splits.ratio_split(10, (1.0,)), "ratio_split.ratios"),
        (lambda: splits.ratio_split(10, (0.5, -0.5)), r"ratio_split.ratios\[1\]"),
        (lambda: splits.leave_last_out_sequences(USERS, ITEMS, TIMES, num_users=2, max_len=0), "max_len"),
        (lambda: splits.leave_last_out_sequences(USERS, ITEMS - 2, TIMES, num_users=2), "item ids must be >= 1"),
        (lambda: splits.leave_last_out_sequences(USERS, ITEMS, TIMES, num_users=1), "user indices"),
        (lambda: splits.leave_last_out_sequences(USERS, ITEMS, TIMES, num_users=2, padding="up"), "padding"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ConfigError, match=match):
        call()
