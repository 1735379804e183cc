"""Open Bandit Dataset (OBD, ZOZO; CC BY 4.0).

Y. Saito, S. Aihara, M. Matsutani, Y. Narita. *Open Bandit Dataset and
Pipeline: Towards Realistic and Reproducible Off-Policy Evaluation.* NeurIPS
Datasets and Benchmarks 2021 (arXiv:2008.07146).

Fashion items were recommended on ZOZOTOWN in three *campaigns* (``all``: 80
items, ``men``: 34, ``women``: 46) by two *behaviour policies* (``random``:
uniform; ``bts``: Bernoulli Thompson sampling), three items per impression, one
row per (impression, position). Each row holds the item (action), its position,
the click (reward), the behaviour policy's propensity of showing that item at
that position, four hashed user features and user-item affinities.

Sources, in order of preference of :func:`load`:
  * ``path=None``: the small sample (10,000 rows per policy and campaign) as
    shipped by ``obp==0.4.1``, committed in compact form in
    ``mtrlrec/data/obd_sample/obd_sample.npz`` (with its licence and
    attribution), so tests and the quick table need no network.
  * ``path=DIR``: a directory laid out like OBD,
    ``DIR/{random,bts}/{all,men,women}/{campaign}.csv`` with
    ``item_context.csv`` beside each — the CSVs extracted from the obp wheel by
    ``mtrlrec data obd``, or the full dataset from https://research.zozo.com/data.html.

Conventions (as in obp's ``OpenBanditDataset``): rows are sorted by time
(stable); positions are dense 0-based ranks of the raw 1..3; the context is the
one-hot encoding of the user features (first category dropped); optionally the
affinities are appended.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import tempfile
import warnings
import zipfile

import numpy as np

from mtrlrec.core.errors import ConfigError
from mtrlrec.data import dataset_dir, fetch_wheel
from mtrlrec.data.obd_files import _ITEM_COLS, _NUM_USER_FEATURES, parse_prior_yaml, read_csv_log

NAME = "obd"
WHEEL = "obp==0.4.1"
WHEEL_DIR = "obp/dataset/obd/"
POLICIES = ("random", "bts")
CAMPAIGNS = ("all", "men", "women")
NUM_ITEMS = {"all": 80, "men": 34, "women": 46}
SAMPLE_FILE = pathlib.Path(__file__).parent / "obd_sample" / "obd_sample.npz"

NUM_POSITIONS = 3
"""Raw OBD positions are 1..3 (three items per impression)."""


class OBDRejectionWarning(UserWarning):
    """The loader rejected rows of an OBD log (the message gives the share and the reasons)."""


@dataclasses.dataclass(frozen=True)
class OBDLog:
    """One logged dataset (behaviour policy × campaign) as arrays (n rows, A items, P positions).

    Attributes:
      behavior: ``'random'`` or ``'bts'``.
      campaign: ``'all'``, ``'men'`` or ``'women'``.
      action: ``[n]`` int32 item shown, in ``0 .. A-1``.
      position: ``[n]`` int32 position in ``0 .. P-1``.
      reward: ``[n]`` float32 click (0/1).
      pscore: ``[n]`` float32 behaviour propensity of (action, position), in (0, 1].
      timestamp: ``[n]`` int64 microseconds since the Unix epoch.
      user_features: ``[n, 4]`` int32 category codes of the hashed user features.
      affinity: ``[n, A]`` float32 user-item affinities.
      item_features: ``[A, 4]`` float32: ``item_feature_0`` (numeric) then the
        codes of the three hashed categorical item features.
      num_actions: A.
      num_positions: P (3).
      num_raw_rows: rows in the source before rejection.
      rejected: reason -> number of rows rejected for it (a row is counted once,
        under the first failing check: item_id, position, propensity_score, click).
    """

    behavior: str
    campaign: str
    action: np.ndarray
    position: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    timestamp: np.ndarray
    user_features: np.ndarray
    affinity: np.ndarray
    item_features: np.ndarray
    num_actions: int
    num_positions: int
    num_raw_rows: int = 0
    rejected: dict = dataclasses.field(default_factory=dict)

    @property
    def num_rounds(self) -> int:
        return int(self.action.shape[0])

    @property
    def rejected_share(self) -> float:
        """Share of the source rows rejected by the loader (0 for a clean log)."""
        return sum(self.rejected.values()) / max(self.num_raw_rows, 1)

    def rejection_report(self) -> str:
        """One line: how many rows were rejected, their share and why."""
        n_bad = sum(self.rejected.values())
        if not n_bad:
            return f"OBD {self.behavior}/{self.campaign}: all {self.num_raw_rows:,} rows kept."
        why = "; ".join(f"{k}: {v:,}" for k, v in self.rejected.items())
        return (f"OBD {self.behavior}/{self.campaign}: rejected {n_bad:,} of {self.num_raw_rows:,} rows "
                f"({100 * self.rejected_share:.2f} %): {why}.")

    def action_context(self) -> np.ndarray:
        """``[A, 5]`` float32 item features in obp 0.4.1's layout (``OpenBanditDataset.action_context``).

        obp label-encodes every item_context column but ``item_feature_0`` and
        appends ``item_feature_0`` last: ``[item_id, item_feature_1..3 codes,
        item_feature_0]`` (the item id stays in as a number, as in obp).
        """
        a = np.arange(self.num_actions, dtype=np.float32)[:, None]
        return np.concatenate([a, self.item_features[:, 1:4], self.item_features[:, :1]], axis=1)

    def context(self, *, affinity: bool = False) -> np.ndarray:
        """``[n, d]`` float32 one-hot user features (first category of each dropped), as in obp.

        Args:
          affinity: append the ``[n, A]`` user-item affinities.
        """
        cols = []
        for j in range(self.user_features.shape[1]):
            codes = self.user_features[:, j]
            k = int(codes.max()) + 1
            cols.append(np.eye(k, dtype=np.float32)[codes][:, 1:])
        if affinity:
            cols.append(self.affinity)
        return np.concatenate(cols, axis=1)

    def on_policy_value(self) -> float:
        """The mean click of the log: the behaviour policy's value (Saito et al. §5)."""
        return float(self.reward.mean())


def _check_name(behavior: str, campaign: str) -> None:
    if behavior not in POLICIES:
        raise ConfigError(f"OBD behaviour policy must be one of {POLICIES}, got {behavior!r}.")
    if campaign not in CAMPAIGNS:
        raise ConfigError(f"OBD campaign must be one of {CAMPAIGNS}, got {campaign!r}.")


def _from_raw(raw: dict, behavior: str, campaign: str, where: str, on_invalid: str = "reject") -> OBDLog:
    """Validates raw columns and builds an :class:`OBDLog` (sorted by time).

    Rows whose item is outside the catalogue, whose position is outside
    1..3, whose propensity is not in (0, 1] or whose click is not finite are
    rejected (``on_invalid='reject'``: dropped, counted per reason in
    ``OBDLog.rejected`` and reported by one :class:`OBDRejectionWarning`) or
    stop the load (``'raise'``: a :class:`ConfigError` naming the field and row).
    """
    if on_invalid not in ("reject", "raise"):
        raise ConfigError(f"OBD on_invalid must be 'reject' or 'raise', got {on_invalid!r}.")
    num_items = int(raw["item_item_id"].shape[0])
    item_ids = raw["item_item_id"]
    if not np.array_equal(np.sort(item_ids), np.arange(num_items)):
        raise ConfigError(f"{where}: item_context item_id must be 0..{num_items - 1}.")
    a = raw["item_id"]
    ps = raw["propensity_score"]
    y = raw["click"]
    pos = raw["position"]
    checks = (
        (f"item_id outside the catalogue 0..{num_items - 1}", (a < 0) | (a >= num_items),
         lambda i: f"item_id {a[i]} outside the item range 0..{num_items - 1}"),
        (f"position outside 1..{NUM_POSITIONS}", (pos < 1) | (pos > NUM_POSITIONS),
         lambda i: f"position {pos[i]} outside 1..{NUM_POSITIONS}"),
        ("propensity_score not in (0, 1]", ~(ps > 0) | ~(ps <= 1),
         lambda i: f"propensity_score must be in (0, 1], got {ps[i]}"),
        ("click not finite", ~np.isfinite(y), lambda i: f"click must be finite, got {y[i]}"),
    )
    n_raw = int(a.shape[0])
    keep = np.ones(n_raw, bool)
    rejected: dict[str, int] = {}
    for reason, bad, describe in checks:
        new = bad & keep
        if new.any():
            if on_invalid == "raise":
                i = int(np.flatnonzero(new)[0])
                raise ConfigError(f"{where}:{i + 2}: {describe(i)}.")
            rejected[reason] = int(new.sum())
            keep &= ~bad
    if not keep.any():
        raise ConfigError(f"{where}: every row was rejected ({'; '.join(rejected)}).")
    if rejected:
        per_item = {"item_item_id"} | set(_ITEM_COLS[1:])
        raw = {k: (v[keep] if k not in per_item and not k.endswith("_vocab") else v)
               for k, v in raw.items()}
        a, ps, y = raw["item_id"], raw["propensity_score"], raw["click"]
    position = raw["position"].astype(np.int64) - 1  # raw 1..3 -> 0..2 (obp's dense rank of 1..3)
    order = np.argsort(raw["timestamp"], kind="stable")
    item_feats = np.zeros((num_items, 4), np.float32)
    item_feats[item_ids, 0] = raw["item_feature_0"]
    for j, c in enumerate(_ITEM_COLS[2:], start=1):
        item_feats[item_ids, j] = raw[c]
    user = np.stack([raw[f"user_feature_{j}"] for j in range(_NUM_USER_FEATURES)], axis=1)
    return OBDLog(
        behavior=behavior,
        campaign=campaign,
        action=a[order].astype(np.int32),
        position=position[order].astype(np.int32),
        reward=y[order].astype(np.float32),
        pscore=ps[order].astype(np.float32),
        timestamp=raw["timestamp"][order],
        user_features=user[order].astype(np.int32),
        affinity=raw["affinity"][order].astype(np.float32),
        item_features=item_feats,
        num_actions=num_items,
        num_positions=NUM_POSITIONS,
        num_raw_rows=n_raw,
        rejected=rejected,
    )


_CACHE: dict = {}


def load(
    behavior: str = "random", campaign: str = "all", path: str | os.PathLike | None = None,
    on_invalid: str = "reject",
) -> OBDLog:
    """Loads one OBD log.

    Args:
      behavior: ``'random'`` or ``'bts'``.
      campaign: ``'all'``, ``'men'`` or ``'women'``.
      path: ``None`` for the committed small sample; else an OBD directory
        (``path/behavior/campaign/campaign.csv``), e.g. the output of
        ``mtrlrec data obd`` or the full dataset.
      on_invalid: ``'reject'`` drops invalid rows (item outside the catalogue,
        position outside 1..3, propensity not in (0, 1], non-finite click), counts
        them per reason in ``log.rejected`` and warns once with the share
        (:class:`OBDRejectionWarning`, :meth:`OBDLog.rejection_report`); ``'raise'``
        stops at the first one with a :class:`ConfigError` naming the field.

    Returns:
      An :class:`OBDLog` (cached per process; treat it as read-only).

    Raises:
      ConfigError: unknown names, missing files/columns, malformed rows (file
        and line named), items outside the catalogue, propensities outside (0, 1].
    """
    _check_name(behavior, campaign)
    key = (behavior, campaign, None if path is None else str(pathlib.Path(path).resolve()), on_invalid)
    if key in _CACHE:
        return _CACHE[key]
    if path is None:
        if not SAMPLE_FILE.is_file():
            raise ConfigError(f"the committed OBD sample {SAMPLE_FILE} is missing.")
        with np.load(SAMPLE_FILE, allow_pickle=False) as z:
            prefix = f"{behavior}/{campaign}/"
            raw = {k[len(prefix):]: z[k] for k in z.files if k.startswith(prefix)}
        log = _from_raw(raw, behavior, campaign, f"{SAMPLE_FILE}[{behavior}/{campaign}]", on_invalid)
    else:
        root = pathlib.Path(path).expanduser()
        log_path = root / behavior / campaign / f"{campaign}.csv"
        raw = read_csv_log(log_path)
        log = _from_raw(raw, behavior, campaign, str(log_path), on_invalid)
    if log.rejected:
        warnings.warn(log.rejection_report(), OBDRejectionWarning, stacklevel=2)
    _CACHE[key] = log
    return log


# ---------------------------------------------------------------------------
# preparation


def _extract_csvs(wheel: pathlib.Path, out: pathlib.Path) -> None:
    try:
        zf = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as e:
        raise ConfigError(f"{wheel} is not a readable wheel/zip file: {e}.") from None
    with zf:
        names = set(zf.namelist())
        for b in POLICIES:
            for c in CAMPAIGNS:
                for f in (f"{c}.csv", "item_context.csv"):
                    member = f"{WHEEL_DIR}{b}/{c}/{f}"
                    if member not in names:
                        raise ConfigError(f"{wheel} lacks {member}; expected the {WHEEL} wheel.")
                    dst = out / b / c / f
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    with zf.open(member) as s, open(dst, "wb") as d:
                        shutil.copyfileobj(s, d)
        prior = "obp/policy/conf/prior_bts.yaml"
        if prior in names:
            with zf.open(prior) as s, open(out / "prior_bts.yaml", "wb") as d:
                shutil.copyfileobj(s, d)


def prepare(
    cache_dir: str | os.PathLike | None = None,
    source: str | os.PathLike | None = None,
    force: bool = False,
) -> pathlib.Path:
    """Makes the OBD CSVs available and returns their directory.

    Args:
      cache_dir: where to extract (default ``cache_root()/obd``).
      source: ``None`` to download the ``obp==0.4.1`` wheel with pip and extract
        the small sample from it; a local obp wheel; or a directory holding an
        OBD copy (e.g. the full dataset), which is validated in place and
        returned (nothing is copied).
      force: re-extract even if the files exist.

    Returns:
      A directory to pass as ``path`` to :func:`load` (and ``OBDOPERunner.data_path``).
    """
    if source is not None and pathlib.Path(source).expanduser().is_dir():
        root = pathlib.Path(source).expanduser()
        for b in POLICIES:
            for c in CAMPAIGNS:
                if (root / b / c / f"{c}.csv").is_file():
                    load(b, c, root)
        return root
    out = dataset_dir(NAME, cache_dir)
    done = all((out / b / c / f"{c}.csv").is_file() for b in POLICIES for c in CAMPAIGNS)
    if done and not force:
        return out
    if source is not None:
        src = pathlib.Path(source).expanduser()
        if not src.exists():
            raise ConfigError(f"OBD source {src} does not exist.")
        _extract_csvs(src, out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            _extract_csvs(fetch_wheel(WHEEL, tmp), out)
    for b in POLICIES:
        for c in CAMPAIGNS:
            load(b, c, out)
    return out


def load_bts_prior(campaign: str = "all", path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The production Beta prior ``(alpha [A], beta [A])`` of the Bernoulli TS policy.

    This is ``obp/policy/conf/prior_bts.yaml`` of ``obp==0.4.1`` (the parameters
    the paper uses to compute the BTS action distribution by Monte Carlo,
    Saito et al. §5). ``path=None`` reads the committed copy, else
    ``path/prior_bts.yaml`` (written by ``mtrlrec data obd``) or a YAML file.
    """
    _check_name("bts", campaign)
    if path is None:
        with np.load(SAMPLE_FILE, allow_pickle=False) as z:
            return z[f"prior/{campaign}/alpha"], z[f"prior/{campaign}/beta"]
    p = pathlib.Path(path).expanduser()
    if p.is_dir():
        p = p / "prior_bts.yaml"
    priors = parse_prior_yaml(p)
    if campaign not in priors:
        raise ConfigError(f"{p} has no prior for campaign {campaign!r}.")
    return priors[campaign]


def build_compact_sample(source_dir: str | os.PathLike, out_file: str | os.PathLike = SAMPLE_FILE) -> pathlib.Path:
    """Writes the compact ``.npz`` copy of the small sample from extracted CSVs.

    This is how ``mtrlrec/data/obd_sample/obd_sample.npz`` was made
    (``prepare()`` then ``build_compact_sample(prepare())``); all columns are
    kept, categorical hashes as codes plus vocabularies.
    """
    arrays = {}
    root = pathlib.Path(source_dir)
    for b in POLICIES:
        for c in CAMPAIGNS:
            raw = read_csv_log(root / b / c / f"{c}.csv")
            for k, v in raw.items():
                if k in ("item_id",):
                    v = v.astype(np.int16)
                elif k in ("position", "click"):
                    v = v.astype(np.int8)
                elif k.startswith(("user_feature_", "item_feature_")) and not k.endswith("_vocab") \
                        and k != "item_feature_0":
                    v = v.astype(np.int8)
                arrays[f"{b}/{c}/{k}"] = v
    prior_file = root / "prior_bts.yaml"
    if prior_file.is_file():
        for c, ab in parse_prior_yaml(prior_file).items():
            arrays[f"prior/{c}/alpha"], arrays[f"prior/{c}/beta"] = ab
    out_file = pathlib.Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out_file, **arrays)
    return out_file


__all__ = ["CAMPAIGNS", "NUM_ITEMS", "NUM_POSITIONS", "OBDLog", "OBDRejectionWarning", "POLICIES", "build_compact_sample", "load", "parse_prior_yaml",
           "prepare", "read_csv_log"]
