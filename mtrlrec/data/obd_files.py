"""Reading OBD's files: the log CSVs with their ``item_context.csv``, and obp's ``prior_bts.yaml``.

Used by :mod:`mtrlrec.data.obd` (which re-exports both readers); every malformed
file fails with one :class:`ConfigError` naming the file and line.
"""

from __future__ import annotations

import csv
import datetime
import os
import pathlib

import numpy as np

from mtrlrec.core.errors import ConfigError

_LOG_COLS = ("timestamp", "item_id", "position", "click", "propensity_score")
_ITEM_COLS = ("item_id", "item_feature_0", "item_feature_1", "item_feature_2", "item_feature_3")
_NUM_USER_FEATURES = 4


def _parse_time(s: str, path, lineno) -> int:
    try:
        t = datetime.datetime.fromisoformat(s.strip())
    except ValueError:
        raise ConfigError(f"{path}:{lineno}: timestamp {s!r} is not an ISO date.") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return int(round(t.timestamp() * 1e6))


def _codes(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    vocab, codes = np.unique(np.asarray(values, dtype=str), return_inverse=True)
    return codes.astype(np.int32), vocab


def read_csv_log(log_path: str | os.PathLike, item_path: str | os.PathLike | None = None) -> dict:
    """Reads one OBD log CSV (and its ``item_context.csv``) into raw column arrays.

    Raises:
      ConfigError: missing file or column, malformed row (names the file and
        line), non-numeric values.
    """
    log_path = pathlib.Path(log_path)
    item_path = pathlib.Path(item_path) if item_path else log_path.parent / "item_context.csv"
    for p in (log_path, item_path):
        if not p.is_file():
            raise ConfigError(f"{p} not found; run `mtrlrec data obd` or check the path.")

    def rows_of(path, required, prefix_cols=()):
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            try:
                header = next(reader)
            except StopIteration:
                raise ConfigError(f"{path}:1: empty file.") from None
            missing = [c for c in required if c not in header]
            if missing:
                raise ConfigError(f"{path}:1: missing column(s) {missing}; header is {header[:8]}...")
            rows = []
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != len(header):
                    raise ConfigError(
                        f"{path}:{lineno}: malformed row, expected {len(header)} comma-separated "
                        f"fields, got {len(row)}."
                    )
                rows.append(row)
        if not rows:
            raise ConfigError(f"{path}: no data rows.")
        return header, rows

    header, rows = rows_of(log_path, _LOG_COLS)
    idx = {c: header.index(c) for c in _LOG_COLS}
    user_cols = [i for i, c in enumerate(header) if c.startswith("user_feature")]
    aff_cols = [i for i, c in enumerate(header) if c.startswith("user-item_affinity")]
    if len(user_cols) != _NUM_USER_FEATURES:
        raise ConfigError(
            f"{log_path}:1: expected {_NUM_USER_FEATURES} user_feature_* columns, got {len(user_cols)}."
        )
    n = len(rows)
    out = {
        "timestamp": np.empty(n, np.int64),
        "item_id": np.empty(n, np.int64),
        "position": np.empty(n, np.int64),
        "click": np.empty(n, np.float64),
        "propensity_score": np.empty(n, np.float64),
        "affinity": np.empty((n, len(aff_cols)), np.float32),
    }
    for r, row in enumerate(rows):
        lineno = r + 2
        out["timestamp"][r] = _parse_time(row[idx["timestamp"]], log_path, lineno)
        for c, conv in (("item_id", int), ("position", int), ("click", float),
                        ("propensity_score", float)):
            try:
                out[c][r] = conv(row[idx[c]])
            except ValueError:
                raise ConfigError(
                    f"{log_path}:{lineno}: column {c} must be numeric, got {row[idx[c]]!r}."
                ) from None
        try:
            out["affinity"][r] = [float(row[i]) for i in aff_cols]
        except ValueError:
            raise ConfigError(f"{log_path}:{lineno}: user-item affinities must be numeric.") from None
    for j, i in enumerate(user_cols):
        out[f"user_feature_{j}"], out[f"user_feature_{j}_vocab"] = _codes([row[i] for row in rows])

    iheader, irows = rows_of(item_path, _ITEM_COLS)
    iidx = {c: iheader.index(c) for c in _ITEM_COLS}
    try:
        out["item_item_id"] = np.array([int(row[iidx["item_id"]]) for row in irows], np.int64)
        out["item_feature_0"] = np.array(
            [float(row[iidx["item_feature_0"]]) for row in irows], np.float32
        )
    except ValueError:
        raise ConfigError(f"{item_path}: item_id and item_feature_0 must be numeric.") from None
    for c in _ITEM_COLS[2:]:
        out[c], out[c + "_vocab"] = _codes([row[iidx[c]] for row in irows])
    return out


def parse_prior_yaml(path: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Reads obp's ``prior_bts.yaml`` (``campaign: {alpha: [...], beta: [...]}``) without PyYAML."""
    out: dict[str, dict[str, list[float]]] = {}
    camp = key = None
    path = pathlib.Path(path)
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" ") and line.rstrip().endswith(":"):
            camp = line.strip()[:-1]
            out[camp] = {}
        elif line.strip() in ("alpha:", "beta:") and camp is not None:
            key = line.strip()[:-1]
            out[camp][key] = []
        elif line.strip().startswith("- ") and camp is not None and key is not None:
            try:
                out[camp][key].append(float(line.strip()[2:]))
            except ValueError:
                raise ConfigError(f"{path}:{lineno}: expected a number, got {line.strip()!r}.") from None
        else:
            raise ConfigError(f"{path}:{lineno}: unexpected line {line!r}.")
    res = {}
    for c, d in out.items():
        if set(d) != {"alpha", "beta"} or len(d["alpha"]) != len(d["beta"]):
            raise ConfigError(f"{path}: campaign {c} needs alpha and beta lists of equal length.")
        res[c] = (np.asarray(d["alpha"], np.float64), np.asarray(d["beta"], np.float64))
    return res


__all__ = ["parse_prior_yaml", "read_csv_log"]
