"""MovieLens-100k (GroupLens) in RecBole's atomic-file format.

F. M. Harper, J. A. Konstan. The MovieLens Datasets: History and Context. ACM
TiiS 5(4), 2015. The licence of MovieLens forbids redistribution, so mtrlrec
never ships it: ``mtrlrec data movielens`` extracts the three atomic files
``ml-100k.inter``, ``ml-100k.item`` and ``ml-100k.user`` from the ``recbole==1.2.1``
wheel (``recbole/dataset_example/ml-100k/``, downloaded with ``pip download
--no-deps``) or copies them from a user-given path (``--source``: a directory
holding them, or a local recbole wheel) into the cache
(``~/.cache/mtrlrec/movielens`` unless ``$MTRLREC_CACHE`` or ``--cache`` say
otherwise).

Id scheme (used by every split and by the models):
  * users are re-indexed densely ``0 .. num_users-1`` in increasing raw id;
  * items are re-indexed ``1 .. num_items`` in increasing raw id, and **0 is the
    padding id** (so an embedding table has ``num_items + 1`` rows and scores
    over the catalogue are ``[..., num_items + 1]`` with column 0 masked);
  * ``user_raw_ids[u]`` / ``item_raw_ids[i]`` map back (``item_raw_ids[0] = -1``).

Every interaction (any rating 1–5) counts as implicit feedback, as in RecBole's
sequential benchmarks; ``ratings`` keeps the explicit value for those who want
to threshold it.

Example:
    >>> from mtrlrec.data import movielens, splits
    >>> ml = movielens.load()                      # after `mtrlrec data movielens`
    >>> seq = splits.leave_last_out_sequences(ml.users, ml.items, ml.timestamps,
    ...                                       num_users=ml.num_users, max_len=50)
    >>> seq.train.history.shape                    # [n_train, 50], 0-padded
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import tempfile
import zipfile

import numpy as np

from mtrlrec.core.errors import ConfigError
from mtrlrec.data import dataset_dir, fetch_wheel

NAME = "movielens"
WHEEL = "recbole==1.2.1"
WHEEL_DIR = "recbole/dataset_example/ml-100k/"
FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")

_INTER_COLS = ("user_id:token", "item_id:token", "rating:float", "timestamp:float")
_ITEM_COLS = ("item_id:token", "movie_title:token_seq", "release_year:token", "class:token_seq")
_USER_COLS = ("user_id:token", "age:token", "gender:token", "occupation:token")


@dataclasses.dataclass(frozen=True)
class MovieLens:
    """MovieLens-100k as arrays (N interactions, U users, I items, G genres).

    Attributes:
      users: ``[N]`` int32 dense user index in ``0 .. U-1``.
      items: ``[N]`` int32 item index in ``1 .. I`` (0 is padding).
      ratings: ``[N]`` float32 explicit rating (1..5).
      timestamps: ``[N]`` int64 Unix seconds.
      num_users: U (943 for ml-100k).
      num_items: I (1682 for ml-100k).
      user_raw_ids: ``[U]`` int64 raw ids.
      item_raw_ids: ``[I + 1]`` int64 raw ids, ``-1`` at the padding row 0.
      item_genres: ``[I + 1, G]`` float32 multi-hot genres (row 0 zeros).
      genre_names: ``G`` genre names (sorted).
      item_year: ``[I + 1]`` int32 release year, 0 if unknown.
      item_titles: ``I + 1`` titles (``''`` at 0).
      user_age: ``[U]`` int32.
      user_gender: ``[U]`` int32, 0 = F, 1 = M.
      user_occupation: ``[U]`` int32 index into ``occupation_names``.
      occupation_names: occupation vocabulary (sorted).
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    num_users: int
    num_items: int
    user_raw_ids: np.ndarray
    item_raw_ids: np.ndarray
    item_genres: np.ndarray
    genre_names: tuple[str, ...]
    item_year: np.ndarray
    item_titles: tuple[str, ...]
    user_age: np.ndarray
    user_gender: np.ndarray
    user_occupation: np.ndarray
    occupation_names: tuple[str, ...]

    @property
    def num_interactions(self) -> int:
        return int(self.users.shape[0])


# ---------------------------------------------------------------------------
# preparation


def _find_files(root: pathlib.Path) -> pathlib.Path | None:
    """The directory under ``root`` that holds all of ``FILES``, or None."""
    if all((root / f).is_file() for f in FILES):
        return root
    for cand in sorted(root.rglob(FILES[0])):
        if all((cand.parent / f).is_file() for f in FILES):
            return cand.parent
    return None


def _extract_from_wheel(wheel: pathlib.Path, out: pathlib.Path) -> None:
    try:
        zf = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as e:
        raise ConfigError(f"{wheel} is not a readable wheel/zip file: {e}.") from None
    with zf:
        names = set(zf.namelist())
        missing = [f for f in FILES if WHEEL_DIR + f not in names]
        if missing:
            raise ConfigError(
                f"{wheel} does not contain {', '.join(WHEEL_DIR + f for f in missing)}; "
                f"expected the {WHEEL} wheel."
            )
        out.mkdir(parents=True, exist_ok=True)
        for f in FILES:
            with zf.open(WHEEL_DIR + f) as src, open(out / f, "wb") as dst:
                shutil.copyfileobj(src, dst)


def prepare(
    cache_dir: str | os.PathLike | None = None,
    source: str | os.PathLike | None = None,
    force: bool = False,
) -> pathlib.Path:
    """Puts ``ml-100k.{inter,item,user}`` into the cache and returns its directory.

    Args:
      cache_dir: target directory (default ``cache_root()/movielens``).
      source: a directory containing the three atomic files (searched
        recursively), or a local ``recbole`` wheel; default: download the
        ``recbole==1.2.1`` wheel with pip and extract from it.
      force: redo the work even if the files are already there.

    Returns:
      The directory holding the files (never inside the repository unless asked).

    Raises:
      ConfigError: when ``source`` does not exist or lacks the files.
    """
    out = dataset_dir(NAME, cache_dir)
    if not force and _find_files(out) == out:
        return out
    if source is not None:
        src = pathlib.Path(source).expanduser()
        if not src.exists():
            raise ConfigError(f"MovieLens source {src} does not exist.")
        if src.is_dir():
            found = _find_files(src)
            if found is None:
                raise ConfigError(
                    f"MovieLens source {src} does not contain {', '.join(FILES)}."
                )
            out.mkdir(parents=True, exist_ok=True)
            if found.resolve() != out.resolve():
                for f in FILES:
                    shutil.copyfile(found / f, out / f)
        else:
            _extract_from_wheel(src, out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            _extract_from_wheel(fetch_wheel(WHEEL, tmp), out)
    _ = load(out)  # validate now, so a broken copy fails at preparation time
    return out


# ---------------------------------------------------------------------------
# parsing


def _read_table(path: pathlib.Path, expected: tuple[str, ...]) -> list[list[str]]:
    """Rows of a tab-separated atomic file, checked against ``expected`` columns.

    The columns named in ``expected`` must appear in the header (in any order);
    each returned row holds those columns in the order of ``expected``.
    """
    if not path.is_file():
        raise ConfigError(
            f"{path} not found; run `mtrlrec data movielens` (or pass its directory)."
        )
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = fh.read().splitlines()
    if not lines:
        raise ConfigError(f"{path}:1: empty file, expected header {expected}.")
    header = lines[0].split("\t")
    missing = [c for c in expected if c not in header]
    if missing:
        raise ConfigError(f"{path}:1: missing column(s) {missing}; header is {header}.")
    idx = [header.index(c) for c in expected]
    rows = []
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise ConfigError(
                f"{path}:{lineno}: malformed row, expected {len(header)} tab-separated "
                f"fields, got {len(fields)}: {line[:80]!r}."
            )
        rows.append([fields[i] for i in idx])
    if not rows:
        raise ConfigError(f"{path}: no data rows.")
    return rows


def _to_numbers(path, rows, col, name, dtype, first_line=2):
    out = np.empty(len(rows), dtype)
    for r, row in enumerate(rows):
        try:
            out[r] = dtype(float(row[col])) if dtype is not np.int64 else int(row[col])
        except ValueError:
            raise ConfigError(
                f"{path}:{r + first_line}: column {name} must be numeric, got {row[col]!r}."
            ) from None
    return out


def load(path: str | os.PathLike | None = None) -> MovieLens:
    """Loads MovieLens-100k from ``path`` (default: the prepared cache).

    Raises:
      ConfigError: missing files or columns, malformed rows (naming the file and
        line), non-numeric ids, ratings outside 1..5, or interactions whose user
        or item is absent from the ``.user``/``.item`` file.
    """
    root = dataset_dir(NAME, path)
    if not root.exists():
        raise ConfigError(
            f"MovieLens not found at {root}; run `mtrlrec data movielens` first "
            "(it extracts it from the recbole==1.2.1 wheel)."
        )
    inter_p, item_p, user_p = (root / f for f in FILES)
    inter = _read_table(inter_p, _INTER_COLS)
    items = _read_table(item_p, _ITEM_COLS)
    users = _read_table(user_p, _USER_COLS)

    raw_u = _to_numbers(inter_p, inter, 0, "user_id", np.int64)
    raw_i = _to_numbers(inter_p, inter, 1, "item_id", np.int64)
    rating = _to_numbers(inter_p, inter, 2, "rating", np.float32)
    ts = _to_numbers(inter_p, inter, 3, "timestamp", np.float64).astype(np.int64)
    bad = np.flatnonzero((rating < 1) | (rating > 5))
    if bad.size:
        raise ConfigError(
            f"{inter_p}:{bad[0] + 2}: rating must be in 1..5, got {rating[bad[0]]}."
        )

    item_ids = _to_numbers(item_p, items, 0, "item_id", np.int64)
    user_ids = _to_numbers(user_p, users, 0, "user_id", np.int64)
    for ids, p in ((item_ids, item_p), (user_ids, user_p)):
        u, c = np.unique(ids, return_counts=True)
        if np.any(c > 1):
            raise ConfigError(f"{p}: duplicate id {u[c > 1][0]}.")
    item_order = np.argsort(item_ids, kind="stable")
    user_order = np.argsort(user_ids, kind="stable")
    item_sorted = item_ids[item_order]
    user_sorted = user_ids[user_order]

    def _index(raw, sorted_ids, what, p_rows):
        pos = np.searchsorted(sorted_ids, raw)
        pos_c = np.minimum(pos, len(sorted_ids) - 1)
        bad = np.flatnonzero(sorted_ids[pos_c] != raw)
        if bad.size:
            raise ConfigError(
                f"{inter_p}:{bad[0] + 2}: {what} {raw[bad[0]]} is not in {p_rows}."
            )
        return pos_c

    u_idx = _index(raw_u, user_sorted, "user_id", user_p).astype(np.int32)
    i_idx = (_index(raw_i, item_sorted, "item_id", item_p) + 1).astype(np.int32)

    n_items = len(item_ids)
    genres = sorted({g for row in items for g in row[3].split(" ") if g})
    g_index = {g: k for k, g in enumerate(genres)}
    item_genres = np.zeros((n_items + 1, len(genres)), np.float32)
    item_year = np.zeros(n_items + 1, np.int32)
    titles = [""] * (n_items + 1)
    for r in item_order.tolist():
        row = items[r]
        j = int(np.searchsorted(item_sorted, item_ids[r])) + 1
        for g in row[3].split(" "):
            if g:
                item_genres[j, g_index[g]] = 1.0
        item_year[j] = int(row[2]) if row[2].isdigit() else 0
        titles[j] = row[1]

    occupations = sorted({row[3] for row in users})
    o_index = {o: k for k, o in enumerate(occupations)}
    n_users = len(user_ids)
    age = np.zeros(n_users, np.int32)
    gender = np.zeros(n_users, np.int32)
    occ = np.zeros(n_users, np.int32)
    for j, r in enumerate(user_order.tolist()):
        row = users[r]
        if not row[1].isdigit():
            raise ConfigError(f"{user_p}:{r + 2}: age must be an integer, got {row[1]!r}.")
        if row[2] not in ("F", "M"):
            raise ConfigError(f"{user_p}:{r + 2}: gender must be F or M, got {row[2]!r}.")
        age[j] = int(row[1])
        gender[j] = int(row[2] == "M")
        occ[j] = o_index[row[3]]

    return MovieLens(
        users=u_idx,
        items=i_idx,
        ratings=rating,
        timestamps=ts,
        num_users=n_users,
        num_items=n_items,
        user_raw_ids=user_sorted,
        item_raw_ids=np.concatenate([[-1], item_sorted]).astype(np.int64),
        item_genres=item_genres,
        genre_names=tuple(genres),
        item_year=item_year,
        item_titles=tuple(titles),
        user_age=age,
        user_gender=gender,
        user_occupation=occ,
        occupation_names=tuple(occupations),
    )


__all__ = ["FILES", "MovieLens", "load", "prepare"]
