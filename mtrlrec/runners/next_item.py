r"""Next-item recommendation on MovieLens-100k (the protocol of RecBole 1.2).

Protocol: each user's interactions are ordered by time with a stable sort; the
last one is the test target, the second last the validation target, every
earlier prefix a training sample, histories truncated to the last 50 items
(:func:`mtrlrec.data.splits.leave_last_out_sequences`). Models score the full
catalogue; the metrics are HR@10, NDCG@10 and MRR@10 (``1/(rank+1)`` if the
target ranks in the top 10, else 0) with pessimistic ties
(:mod:`mtrlrec.eval.ranking`), averaged over users.

Rows:

* ``pop``: items by training-interaction count (the user's history masked).
* ``mf``: matrix factorisation trained with BPR (Rendle et al. 2009) on the
  training interactions, uniform negatives, Adam.
* ``gru4rec``: GRU over the history (Hidasi et al. 2016): embedding 64,
  hidden 128, dropout 0.3; softmax cross-entropy over all items.
* ``sasrec``: causal Transformer (Kang & McAuley 2018): 2 layers, 2 heads,
  hidden 64; softmax cross-entropy over all items.

Training of the sequence models: every training prefix is a sample. To make
an epoch affordable on a CPU, prefixes are grouped in windows: with
``train_stride = k`` the window of the prefix ending at ``t`` (its 50-item
history plus its target) trains the predictions of the k prefixes
``t−k+1..t`` in one causal pass, so every prefix is trained exactly once per
epoch, with its history cut to between ``50−k+1`` and 50 items
(``train_stride = 1`` is exactly RecBole's per-prefix training).
Early stopping on validation MRR@10 (RecBole's default ``valid_metric``).
"""

from __future__ import annotations

import functools

import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mtrlrec.core.errors import ConfigError, check_float, check_int
from mtrlrec.eval import ranking
from mtrlrec.models import encoders, factorization
from mtrlrec.train import supervised
from mtrlrec.train.result import Result, RunContext


def stride_windows(history: np.ndarray, target: np.ndarray, user: np.ndarray, stride: int):
    """Groups left-padded prefix samples into causal training windows.

    Args:
      history: ``[n, L]`` left-padded histories of the training prefixes (time-ordered per user).
      target: ``[n]`` next items. user: ``[n]`` user of each sample.
      stride: k >= 1.

    Returns:
      ``(inputs [m, L], targets [m, L], weights [m, L])``: position j of a
      window predicts ``targets[:, j]`` from ``inputs[:, :j+1]``; ``weights`` is 1 on
      the (at most k) positions whose prefixes this window trains.
    """
    n, L = history.shape
    if n == 0:
        raise ConfigError("NextItemRunner: no training samples.")
    # Position of each sample within its user's block and the block size.
    change = np.r_[True, user[1:] != user[:-1]]
    block = np.cumsum(change) - 1
    starts = np.flatnonzero(change)
    pos = np.arange(n) - starts[block]
    count = np.bincount(block)[block]
    keep = (count - 1 - pos) % stride == 0  # the last prefix of each user is always a window end
    h, y, p = history[keep], target[keep], pos[keep]
    inputs = h
    targets = np.concatenate([h[:, 1:], y[:, None]], axis=1)
    j = np.arange(L)[None, :]
    # Position L-1 trains this sample's prefix; position L-1-d trains the prefix d steps earlier,
    # which belongs to this window iff d < stride and that prefix exists (d <= p) and its input is real.
    d = L - 1 - j
    weights = (d < stride) & (d <= p[:, None]) & (inputs != 0)
    return inputs.astype(np.int32), targets.astype(np.int32), weights.astype(np.float32)


def _metrics(scores, target, exclude, k):
    m = ranking.next_item_metrics(scores, target, k, exclude)
    hit = m[f"hr@{k}"]
    return {f"hr@{k}": hit, f"ndcg@{k}": m[f"ndcg@{k}"], f"mrr@{k}": hit * m["mrr"]}


@functools.lru_cache(maxsize=None)
def _seq_programs(kind, num_items, features, hidden, num_layers, num_heads, max_len, dropout, k, mask_history,
                  stride=None):
    enc = encoders.SequenceEncoder(
        num_items=num_items, features=features, kind=kind, hidden=hidden, num_layers=num_layers,
        num_heads=num_heads, max_len=max_len, dropout=dropout,
    )

    def init_fn(key):
        return enc.init(key, jnp.ones((1, max_len), jnp.int32), method=enc.sequence)

    def loss_fn(params, batch, key):
        inputs, targets, weights = batch
        h = enc.apply(params, inputs, True, method=enc.sequence, rngs={"dropout": key})  # [B, L, D]
        if stride is not None:  # only the last `stride` positions carry weight (see stride_windows)
            h, targets, weights = h[:, -stride:], targets[:, -stride:], weights[:, -stride:]
        table = enc.apply(params, method=enc.item_table)
        logits = (h @ table.T).at[..., 0].set(-1e9)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
        return (ce * weights).sum() / jnp.maximum(weights.sum(), 1.0), {}

    def scores_fn(params, hist):
        h = enc.apply(params, hist, False, method=enc.sequence)[:, -1]  # left padding: last = newest
        return h @ enc.apply(params, method=enc.item_table).T

    def eval_fn(params, data):
        hist, target, exclude = data
        s = scores_fn(params, hist)
        m = _metrics(s, target, exclude if mask_history else _pad_mask(s), k)
        return {name: v.mean() for name, v in m.items()}

    return init_fn, loss_fn, eval_fn


def _pad_mask(scores):
    return (jnp.arange(scores.shape[-1]) == 0)[None, :] & jnp.ones_like(scores, bool)


@functools.lru_cache(maxsize=None)
def _mf_programs(num_users, num_items, features, k, reg):
    mf = factorization.MatrixFactorization(num_users, num_items, features)

    def init_fn(key):
        return mf.init(key, jnp.zeros((1,), jnp.int32), jnp.ones((1,), jnp.int32))

    def loss_fn(params, batch, key):
        u, i = batch
        j = factorization.sample_negatives(key, i.shape, num_items)
        s = mf.apply(params, u, jnp.stack([i, j], -1))
        p = params["params"]
        pu = p["user"]["table"]["embedding"][u]
        qi = p["item"]["table"]["embedding"][i]
        qj = p["item"]["table"]["embedding"][j]
        l2 = reg * jnp.mean(jnp.sum(pu**2 + qi**2 + qj**2, -1))
        return factorization.bpr_loss(s[:, 0], s[:, 1]) + l2, {}

    def eval_fn(params, data):
        users, target, exclude = data
        s = mf.apply(params, users, method=mf.score_all)
        return {name: v.mean() for name, v in _metrics(s, target, exclude, k).items()}

    return init_fn, loss_fn, eval_fn


@gin.configurable
class NextItemRunner:
    """Trains and evaluates one next-item model on MovieLens-100k (see module docstring).

    Args:
      model: 'pop', 'mf', 'gru4rec' or 'sasrec'.
      data_path: directory of the prepared data (default: ``mtrlrec data movielens`` cache).
      max_len: history length L (50).
      features: item embedding size (64). hidden: GRU hidden size (128).
      num_layers, num_heads: SASRec depth and heads (2, 2).
      dropout: dropout rate (GRU4Rec 0.3; SASRec 0.5, RecBole's default).
      learning_rate: Adam step size (1e-3). batch_size: windows (or pairs for MF) per step.
      num_epochs, patience: max epochs and early stopping on validation MRR@10.
      train_stride: k of the training windows (1 = per-prefix training).
      mask_history: exclude the user's past items from the ranking (default:
        True for pop and mf, False for sequence models, as RecBole does).
      k: cut-off of the metrics (10).
      mf_reg: L2 coefficient of BPR.
      quick_epochs: epochs under ``bench --quick``.
    """

    def __init__(
        self,
        model: str = "sasrec",
        data_path: str | None = None,
        max_len: int = 50,
        features: int = 64,
        hidden: int = 128,
        num_layers: int = 2,
        num_heads: int = 2,
        dropout: float = 0.5,
        learning_rate: float = 1e-3,
        batch_size: int = 256,
        num_epochs: int = 50,
        patience: int = 5,
        train_stride: int = 10,
        mask_history: bool | None = None,
        k: int = 10,
        mf_reg: float = 1e-4,
        quick_epochs: int = 2,
    ):
        w = "NextItemRunner"
        if model not in ("pop", "mf", "gru4rec", "sasrec"):
            raise ConfigError(f"{w}.model must be 'pop', 'mf', 'gru4rec' or 'sasrec', got {model!r}.")
        self.model = model
        self.data_path = data_path
        self.max_len = check_int(f"{w}.max_len", max_len, min_value=1)
        self.features = check_int(f"{w}.features", features, min_value=1)
        self.hidden = check_int(f"{w}.hidden", hidden, min_value=1)
        self.num_layers = check_int(f"{w}.num_layers", num_layers, min_value=1)
        self.num_heads = check_int(f"{w}.num_heads", num_heads, min_value=1)
        if model == "sasrec" and self.features % self.num_heads:
            raise ConfigError(f"{w}.features={features} must be divisible by {w}.num_heads={num_heads}.")
        self.dropout = check_float(f"{w}.dropout", dropout, low=0.0, high=1.0, high_open=True)
        self.learning_rate = check_float(f"{w}.learning_rate", learning_rate, low=0.0, low_open=True)
        self.batch_size = check_int(f"{w}.batch_size", batch_size, min_value=1)
        self.num_epochs = check_int(f"{w}.num_epochs", num_epochs, min_value=1)
        self.patience = check_int(f"{w}.patience", patience, min_value=1)
        self.train_stride = check_int(f"{w}.train_stride", train_stride, min_value=1)
        if self.train_stride > self.max_len:
            raise ConfigError(f"{w}.train_stride={train_stride} must be <= {w}.max_len={max_len}.")
        self.mask_history = model in ("pop", "mf") if mask_history is None else bool(mask_history)
        self.k = check_int(f"{w}.k", k, min_value=1)
        self.mf_reg = check_float(f"{w}.mf_reg", mf_reg, low=0.0)
        self.quick_epochs = check_int(f"{w}.quick_epochs", quick_epochs, min_value=1)

    def load_split(self):
        from mtrlrec.data import movielens, splits

        ml = movielens.load(self.data_path)
        split = splits.leave_last_out_sequences(
            ml.users, ml.items, ml.timestamps, num_users=ml.num_users, num_items=ml.num_items,
            max_len=self.max_len, padding="left",
        )
        return ml, split

    def __call__(self, ctx: RunContext) -> Result:
        ml, split = self.load_split()
        N, U = ml.num_items, ml.num_users
        for part in ("valid", "test"):
            encoders.check_histories(f"NextItemRunner ({part} histories)", getattr(split, part).history)
        va, te = split.valid, split.test
        vex = jnp.asarray(split.train_seen[va.user])
        tex = jnp.asarray(split.valid_seen[te.user])
        S = ctx.num_seeds
        epochs = self.quick_epochs if ctx.quick else self.num_epochs
        monitor = f"mrr@{self.k}"
        common = dict(num_seeds=S, seed=ctx.seed, batch_size=self.batch_size, num_epochs=epochs,
                      patience=self.patience, monitor=monitor, mode="max", learning_rate=self.learning_rate,
                      writer=ctx.writer, checkpoint_dir=ctx.checkpoint_dir, resume=ctx.resume,
                      progress=ctx.progress)
        curves, steps, extra = {}, None, {}
        if self.model == "pop":
            # Training interactions per item (each user rates a movie at most once in ml-100k).
            counts = split.train_seen.astype(np.float32).sum(0)
            counts[0] = 0.0
            s_v = jnp.broadcast_to(jnp.asarray(counts), (va.user.shape[0], N + 1))
            s_t = jnp.broadcast_to(jnp.asarray(counts), (te.user.shape[0], N + 1))
            mv = _metrics(s_v, jnp.asarray(va.target), vex if self.mask_history else _pad_mask(s_v), self.k)
            mt = _metrics(s_t, jnp.asarray(te.target), tex if self.mask_history else _pad_mask(s_t), self.k)
            test = {f"test/{k}": np.full(S, float(np.mean(v))) for k, v in mt.items()}
            valid = {f"valid/{k}": np.full(S, float(np.mean(v))) for k, v in mv.items()}
            return Result(final={**test, **valid, "epochs": np.zeros(S)}, primary=None)
        if self.model == "mf":
            uu, ii = np.nonzero(split.train_seen[:, 1:])
            train = (jnp.asarray(uu, jnp.int32), jnp.asarray(ii + 1, jnp.int32))
            init_fn, loss_fn, eval_fn = _mf_programs(U, N, self.features, self.k, self.mf_reg)
            vdata = (jnp.asarray(va.user), jnp.asarray(va.target), vex)
            tdata = (jnp.asarray(te.user), jnp.asarray(te.target), tex)
        else:
            kind = "gru" if self.model == "gru4rec" else "transformer"
            x, y, wts = stride_windows(split.train.history, split.train.target, split.train.user, self.train_stride)
            train = (jnp.asarray(x), jnp.asarray(y), jnp.asarray(wts))
            extra["train_windows"] = np.asarray([float(x.shape[0])])
            init_fn, loss_fn, eval_fn = _seq_programs(
                kind, N, self.features, self.hidden, self.num_layers, self.num_heads, self.max_len,
                self.dropout, self.k, self.mask_history, self.train_stride,
            )
            vdata = (jnp.asarray(va.history), jnp.asarray(va.target), vex)
            tdata = (jnp.asarray(te.history), jnp.asarray(te.target), tex)
        out = supervised.fit(init_fn, loss_fn, eval_fn, train_data=train, valid_data=vdata, **common)
        test = jax.jit(jax.vmap(eval_fn, in_axes=(0, None)))(out.params, tdata)
        final = {f"test/{k}": np.asarray(v) for k, v in test.items()}
        final.update({f"valid/{k}": out.curves[f"valid/{k}"].max(-1) for k in test})
        final["epochs"] = np.full(S, float(out.epochs[-1]))
        final["seconds_per_epoch"] = np.asarray([out.seconds_per_epoch])
        final.update(extra)
        if ctx.run_dir is not None:
            # Export (seed-batched) for agents: PretrainedParams.path = '<run_dir>/params.msgpack'.
            meta = {"model": self.model, "num_items": N, "features": self.features, "hidden": self.hidden,
                    "num_layers": self.num_layers, "num_heads": self.num_heads, "max_len": self.max_len,
                    "num_seeds": S, "module": "SequenceEncoder" if self.model != "mf" else "MatrixFactorization"}
            supervised.save_params(ctx.run_dir / "params.msgpack", out.params["params"], meta=meta)
        curves = out.curves
        return Result(final=final, curves=curves, steps=out.epochs, primary=f"valid/{monitor}")
