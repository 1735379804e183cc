"""Train/validation/test splits of interaction logs; deterministic given a seed.

* :func:`leave_last_out_sequences` — per user, sort interactions by time (stable
  sort, so ties keep file order), hold out the last one for test and the
  second-to-last for validation; every earlier prefix is a training sample
  (next-item prediction, as in SASRec, Kang & McAuley ICDM 2018 §IV-A, and
  RecBole's ``LS`` split).
* :func:`ratio_split` — random split by ratios (e.g. 80/10/10), globally or
  within each user.
* :func:`kfold` — k-fold cross-validation folds, globally or within each user.

Histories use the item-id scheme of :mod:`mtrlrec.data.movielens`: items are
``1 .. num_items`` and **0 is padding**. With ``padding='left'`` (default) the
most recent item is in the last column ``history[:, -1]`` (SASRec layout);
with ``padding='right'`` the oldest kept item is in column 0 and the most
recent one at ``history[j, length[j] - 1]`` (RecBole/GRU4Rec layout).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from mtrlrec.core.errors import ConfigError, check_floats, check_int


@dataclasses.dataclass(frozen=True)
class SequenceSamples:
    """Next-item samples (n of them, histories of at most ``max_len`` items).

    Attributes:
      user: ``[n]`` int32 user index.
      history: ``[n, max_len]`` int32 previous items, 0-padded (see module doc).
      length: ``[n]`` int32 number of non-padding entries in ``history``
        (``min(t, max_len)`` for the t-th interaction, t counted from 0).
      target: ``[n]`` int32 the next item (``1 .. num_items``).
      timestamp: ``[n]`` int64 time of the target interaction.
    """

    user: np.ndarray
    history: np.ndarray
    length: np.ndarray
    target: np.ndarray
    timestamp: np.ndarray

    def __len__(self) -> int:
        return int(self.user.shape[0])


@dataclasses.dataclass(frozen=True)
class SequenceSplit:
    """The three parts of a leave-last-out split.

    Attributes:
      train: every prefix of each user's sequence except the last two targets.
      valid: one sample per user: history = training items, target = second-to-last.
      test: one sample per user: history = training + validation items, target = last.
      train_seen: ``[num_users, num_items + 1]`` bool, items each user interacted
        with in the training part (column 0, the padding id, is True); mask these
        when ranking for ``valid``.
      valid_seen: ``train_seen`` plus the validation item; mask for ``test``.
    """

    train: SequenceSamples
    valid: SequenceSamples
    test: SequenceSamples
    train_seen: np.ndarray
    valid_seen: np.ndarray


def _check_log(users, items, timestamps, num_users):
    users = np.asarray(users)
    items = np.asarray(items)
    timestamps = np.asarray(timestamps)
    if not (users.ndim == items.ndim == timestamps.ndim == 1) or not (
        users.shape == items.shape == timestamps.shape
    ):
        raise ConfigError(
            "users, items and timestamps must be 1-D arrays of the same length, got "
            f"shapes {users.shape}, {items.shape}, {timestamps.shape}."
        )
    if users.size and (users.min() < 0 or users.max() >= num_users):
        raise ConfigError(f"user indices must lie in 0..{num_users - 1}.")
    if items.size and items.min() < 1:
        raise ConfigError("item ids must be >= 1 (0 is the padding id).")
    return users.astype(np.int64), items.astype(np.int32), timestamps


def leave_last_out_sequences(
    users: np.ndarray,
    items: np.ndarray,
    timestamps: np.ndarray,
    *,
    num_users: int,
    num_items: int | None = None,
    max_len: int = 50,
    padding: str = "left",
) -> SequenceSplit:
    """Leave-last-out split by time into next-item samples.

    For a user with time-ordered items :math:`s_0, \\dots, s_{n-1}` (ties in
    time keep their order in the log), the samples are

    * train: :math:`(s_{\\max(0,t-L)} \\dots s_{t-1}) \\to s_t` for
      :math:`1 \\le t \\le n-3`,
    * valid: :math:`(s_{\\max(0,n-2-L)} \\dots s_{n-3}) \\to s_{n-2}`,
    * test: :math:`(s_{\\max(0,n-1-L)} \\dots s_{n-2}) \\to s_{n-1}`,

    with :math:`L` = ``max_len``. Users with fewer than 3 interactions get no
    validation/test sample; their prefixes all go to train.

    Args:
      users: ``[N]`` user indices in ``0 .. num_users-1``.
      items: ``[N]`` item ids in ``1 .. num_items``.
      timestamps: ``[N]`` times (any sortable dtype).
      num_users: U.
      num_items: I (default ``items.max()``), sizes the ``*_seen`` masks.
      max_len: L >= 1, the longest history kept (older items are dropped).
      padding: ``'left'`` or ``'right'`` (see module docstring).

    Returns:
      A :class:`SequenceSplit`.
    """
    max_len = check_int("leave_last_out_sequences.max_len", max_len, min_value=1)
    num_users = check_int("leave_last_out_sequences.num_users", num_users, min_value=1)
    if padding not in ("left", "right"):
        raise ConfigError(f"leave_last_out_sequences.padding must be 'left' or 'right', got {padding!r}.")
    users, items, timestamps = _check_log(users, items, timestamps, num_users)
    if num_items is None:
        num_items = int(items.max()) if items.size else 0
    elif items.size and items.max() > num_items:
        raise ConfigError(f"item ids must be <= num_items={num_items}, got {items.max()}.")
    n = users.shape[0]
    # Stable sort by (user, time): lexsort's last key is primary; the index key
    # makes ties in time keep their order in the log.
    order = np.lexsort((np.arange(n), timestamps, users))
    su, si, st = users[order], items[order], timestamps[order]
    counts = np.bincount(su, minlength=num_users)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(n) - starts[su]  # t, position within the user's sequence
    cnt = counts[su]
    has_eval = cnt >= 3
    is_test = has_eval & (pos == cnt - 1)
    is_valid = has_eval & (pos == cnt - 2)
    is_train = (pos >= 1) & ~is_test & ~is_valid

    def samples(mask):
        p = np.flatnonzero(mask)
        start = starts[su[p]]
        length = np.minimum(p - start, max_len)
        if padding == "left":
            idx = p[:, None] - max_len + np.arange(max_len)[None, :]
            ok = idx >= start[:, None]
        else:
            first = p - length
            idx = first[:, None] + np.arange(max_len)[None, :]
            ok = idx < p[:, None]
        hist = np.where(ok, si[np.clip(idx, 0, max(n - 1, 0))], 0).astype(np.int32)
        return SequenceSamples(
            user=su[p].astype(np.int32),
            history=hist,
            length=length.astype(np.int32),
            target=si[p].astype(np.int32),
            timestamp=np.asarray(st[p]),
        )

    train_seen = np.zeros((num_users, num_items + 1), bool)
    train_seen[:, 0] = True
    in_train = ~is_test & ~is_valid
    train_seen[su[in_train], si[in_train]] = True
    valid_seen = train_seen.copy()
    valid_seen[su[is_valid], si[is_valid]] = True
    return SequenceSplit(
        train=samples(is_train),
        valid=samples(is_valid),
        test=samples(is_test),
        train_seen=train_seen,
        valid_seen=valid_seen,
    )


def _check_seed(name, seed):
    return check_int(name, seed, min_value=0)


def ratio_split(
    num_rows: int,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    *,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, ...]:
    """Random split of ``num_rows`` rows into parts of the given ratios.

    Part sizes are ``floor(cumsum(ratios) * n)`` differences, so every row goes
    to exactly one part. With ``groups`` (e.g. the user of each interaction),
    the split is done within each group, so each user appears in every part in
    roughly the same proportion.

    Args:
      num_rows: n.
      ratios: positive numbers, normalised to sum to 1.
      seed: NumPy seed; the same seed gives the same split.
      groups: optional ``[n]`` int group labels.

    Returns:
      One sorted int64 index array per part.
    """
    num_rows = check_int("ratio_split.num_rows", num_rows, min_value=1)
    r = np.asarray(check_floats("ratio_split.ratios", ratios, low=0.0), np.float64)
    if r.size < 2 or r.sum() <= 0:
        raise ConfigError(f"ratio_split.ratios needs >= 2 non-negative entries with a positive sum, got {tuple(r)}.")
    r = r / r.sum()
    rng = np.random.default_rng(_check_seed("ratio_split.seed", seed))
    part = np.empty(num_rows, np.int64)
    if groups is None:
        perm = rng.permutation(num_rows)
        bounds = np.floor(np.cumsum(r) * num_rows + 1e-9).astype(np.int64)
        rank = np.empty(num_rows, np.int64)
        rank[perm] = np.arange(num_rows)
        part = np.searchsorted(bounds, rank, side="right")
    else:
        g = np.asarray(groups)
        if g.shape != (num_rows,):
            raise ConfigError(f"ratio_split.groups must have shape ({num_rows},), got {g.shape}.")
        keys = rng.random(num_rows)
        order = np.lexsort((keys, g))
        _, inv, counts = np.unique(g[order], return_inverse=True, return_counts=True)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.arange(num_rows) - starts[inv]
        frac_bounds = np.cumsum(r)
        # part of the j-th row (in random order) of a group of size c:
        # the first k with j < floor(cumsum(r)_k * c).
        b = np.floor(frac_bounds[None, :] * counts[inv][:, None] + 1e-9)
        part[order] = np.sum(rank[:, None] >= b, axis=1)
    part = np.minimum(part, r.size - 1)
    return tuple(np.flatnonzero(part == k) for k in range(r.size))


def kfold(
    num_rows: int,
    k: int = 5,
    *,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """K-fold cross-validation folds.

    Rows are shuffled with ``seed`` and dealt round-robin into ``k`` folds, so
    fold sizes differ by at most one (within each group when ``groups`` is
    given, so every user is spread over all folds).

    Args:
      num_rows: n >= k.
      k: number of folds, >= 2.
      seed: NumPy seed.
      groups: optional ``[n]`` group labels (stratify by user).

    Returns:
      ``k`` pairs ``(train_idx, test_idx)`` of sorted int64 arrays; the test
      parts partition ``0 .. n-1``.
    """
    num_rows = check_int("kfold.num_rows", num_rows, min_value=1)
    k = check_int("kfold.k", k, min_value=2)
    if k > num_rows:
        raise ConfigError(f"kfold.k={k} exceeds the number of rows {num_rows}.")
    rng = np.random.default_rng(_check_seed("kfold.seed", seed))
    keys = rng.random(num_rows)
    if groups is None:
        order = np.argsort(keys, kind="stable")
        fold = np.empty(num_rows, np.int64)
        fold[order] = np.arange(num_rows) % k
    else:
        g = np.asarray(groups)
        if g.shape != (num_rows,):
            raise ConfigError(f"kfold.groups must have shape ({num_rows},), got {g.shape}.")
        order = np.lexsort((keys, g))
        _, inv, counts = np.unique(g[order], return_inverse=True, return_counts=True)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        # offset each group's round-robin by a random start so small groups do
        # not all land in fold 0.
        offset = rng.integers(0, k, size=counts.size)
        fold = np.empty(num_rows, np.int64)
        fold[order] = (np.arange(num_rows) - starts[inv] + offset[inv]) % k
    return [
        (np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)
    ]


__all__ = [
    "SequenceSamples", "SequenceSplit", "kfold", "leave_last_out_sequences", "ratio_split",
]
