r"""Supervised (pre)training: one jitted optax loop, vmapped over seeds and a sweep.

:func:`fit` trains any model given as pure functions::

    init_fn(key) -> params
    loss_fn(params, batch, key) -> (loss, metrics)       # training loss (dropout key)
    eval_fn(params, valid_data) -> {name: scalar}       # validation metrics

One *epoch* is a ``lax.scan`` over minibatches, compiled once as
``jit(vmap_hparams(vmap_seeds(epoch)))``; the host loop runs epochs, logs the
curves through a writer (TensorBoard + metrics.jsonl in the run directory),
checkpoints, and stops early when every run has gone ``patience`` epochs without
improving its validation metric. The parameters returned are each run's best
on validation ("restore best weights").

Minibatches come either from arrays (a fresh permutation per epoch; the last
incomplete batch is dropped) or from a pure sampler ``sample_fn(key, data,
batch_size)`` (streaming data, e.g. the MMoE synthetic generator). Data may be
shared by all seeds or carry a leading seed axis (``data_per_seed=True``).

Losses used by the runners (:func:`next_item_loss`, :func:`bce_loss`,
:func:`mse_loss`): cross-entropy of a softmax over the full catalogue for
next-item prediction (SASRec-CE as in RecBole 1.2), binary cross-entropy for
click/conversion, squared error for regression.

Exported parameters are written with :func:`save_params` (msgpack, no pickle)
and read by agents with :func:`load_params` or the Gin configurable
``PretrainedParams``; :func:`freeze_mask` + ``optax.masked`` freezes them, or
fine-tune them by simply not masking.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
import time
from typing import Any, Callable, Mapping, Sequence

import flax.serialization
import flax.struct
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mtrlrec.core.errors import ConfigError, check_float, check_int


@flax.struct.dataclass
class FitState:
    """Per-run training state (batched over seeds / sweep points by vmap)."""

    params: Any
    opt_state: Any
    key: jax.Array
    best_params: Any
    best: jax.Array  # best validation metric so far (lower is better internally)
    bad_epochs: jax.Array
    step: jax.Array


@dataclasses.dataclass
class FitOutput:
    """Result of :func:`fit`.

    Attributes:
      params: best-on-validation parameters, leaves ``[S, ...]`` (``[H, S, ...]`` with a sweep).
      curves: name -> ``[S, E]`` (``[H, S, E]``): ``train/loss`` and ``valid/<metric>`` per epoch.
      epochs: ``[E]`` epoch numbers (1-based) of the curves.
      best: ``[S]`` / ``[H, S]`` best validation value of the monitored metric.
      hparams: swept values name -> ``[H]``.
      seconds_per_epoch: mean wall time of an epoch after the first (compiled) one.
      state: the final :class:`FitState` (batched).
    """

    params: Any
    curves: dict[str, np.ndarray]
    epochs: np.ndarray
    best: np.ndarray
    hparams: dict[str, np.ndarray]
    seconds_per_epoch: float
    state: Any


class _NullWriter:
    def scalars(self, step, values):
        pass

    def text(self, tag, markdown):
        pass

    def image(self, tag, png):
        pass


def make_optimizer(name: str, learning_rate, weight_decay: float = 0.0, clip_norm: float | None = None):
    """Optax optimizer by name ('adam', 'adamw', 'sgd'); ``learning_rate`` may be traced."""
    if name == "adam":
        opt = optax.adam(learning_rate)
    elif name == "adamw":
        opt = optax.adamw(learning_rate, weight_decay=weight_decay)
    elif name == "sgd":
        opt = optax.sgd(learning_rate)
    else:
        raise ConfigError(f"optimizer must be 'adam', 'adamw' or 'sgd', got {name!r}.")
    if clip_norm:
        opt = optax.chain(optax.clip_by_global_norm(clip_norm), opt)
    return opt


def _gather(data, idx):
    return jax.tree.map(lambda a: a[idx], data)


def _check_data(where: str, data) -> int:
    leaves = jax.tree.leaves(data)
    if not leaves:
        raise ConfigError(f"{where} is empty.")
    n = {int(np.shape(a)[0]) for a in leaves}
    if len(n) != 1:
        raise ConfigError(f"{where}: arrays must share their first (sample) axis, got lengths {sorted(n)}.")
    (n,) = n
    return n


def fit(
    init_fn: Callable[[jax.Array], Any],
    loss_fn: Callable[[Any, Any, jax.Array], tuple[jax.Array, dict]],
    eval_fn: Callable[[Any, Any], dict],
    *,
    train_data: Any = None,
    valid_data: Any = None,
    sample_fn: Callable[[jax.Array, Any, int], Any] | None = None,
    steps_per_epoch: int | None = None,
    data_per_seed: bool = False,
    num_seeds: int = 1,
    seed: int = 0,
    batch_size: int = 256,
    num_epochs: int = 10,
    patience: int | None = None,
    monitor: str = "loss",
    mode: str = "min",
    optimizer: str = "adam",
    learning_rate: float = 1e-3,
    hparams: Mapping[str, Sequence[float]] | None = None,
    writer: Any = None,
    checkpoint_dir: pathlib.Path | str | None = None,
    resume: bool = False,
    progress: bool = False,
    log_prefix: str = "",
    post_step: Callable[[Any, dict], Any] | None = None,
) -> FitOutput:
    """Trains ``num_seeds`` independent runs (times a learning-rate sweep) in one compiled program.

    Args:
      init_fn: ``key -> params`` for one run.
      loss_fn: ``(params, batch, key) -> (scalar loss, {name: scalar})``.
      eval_fn: ``(params, valid_data) -> {name: scalar}``; must contain ``monitor``.
      train_data: pytree of arrays ``[N, ...]`` (``[S, N, ...]`` if ``data_per_seed``),
        or, with ``sample_fn``, whatever ``sample_fn`` reads (e.g. per-run weights).
      valid_data: pytree passed to ``eval_fn`` (leading seed axis if ``data_per_seed``).
      sample_fn: ``(key, train_data, batch_size) -> batch`` for streaming data.
      steps_per_epoch: number of steps per epoch with ``sample_fn`` (required then).
      num_seeds: S independent runs; run ``i`` uses ``fold_in(PRNGKey(seed), i)``.
      batch_size, num_epochs, patience: minibatch size, max epochs, early-stopping
        patience in epochs (None: no early stopping).
      monitor, mode: validation metric and whether lower ('min') or higher ('max') is better.
      optimizer, learning_rate: optax optimizer name and step size.
      hparams: optional sweep ``{'learning_rate': [...]}``, vmapped (one compile).
      writer: object with ``scalars(step, {name: float})`` (the run's MetricWriter).
      checkpoint_dir: where ``supervised.msgpack`` is written after each epoch.
      resume: continue from that checkpoint when present.
      progress: print one line per epoch.
      log_prefix: prefix of the logged scalar names (e.g. 'pretrain/').
      post_step: optional ``(params, aux) -> params`` applied after every optimizer
        step with the ``aux`` dict that ``loss_fn`` returned for that step, for state
        that is not trained by gradients (GradNorm's task weights ride in ``params``
        with zero gradients and are replaced here).
    """
    num_seeds = check_int("fit.num_seeds", num_seeds, min_value=1)
    batch_size = check_int("fit.batch_size", batch_size, min_value=1)
    num_epochs = check_int("fit.num_epochs", num_epochs, min_value=1)
    if patience is not None:
        patience = check_int("fit.patience", patience, min_value=1)
    if mode not in ("min", "max"):
        raise ConfigError(f"fit.mode must be 'min' or 'max', got {mode!r}.")
    check_float("fit.learning_rate", learning_rate, low=0.0, low_open=True)
    hparams = dict(hparams or {})
    for k in hparams:
        if k != "learning_rate":
            raise ConfigError(f"fit.hparams: only 'learning_rate' can be swept, got {k!r}.")
    lrs = None
    if hparams:
        lrs = np.asarray([check_float(f"fit.hparams['learning_rate'][{i}]", v, low=0.0, low_open=True)
                          for i, v in enumerate(hparams["learning_rate"])], np.float32)
        if lrs.size == 0:
            raise ConfigError("fit.hparams['learning_rate'] is empty.")
    sign = 1.0 if mode == "min" else -1.0
    writer = writer or _NullWriter()

    if sample_fn is None:
        if train_data is None:
            raise ConfigError("fit: give train_data arrays or a sample_fn.")
        n = _check_data("fit.train_data", jax.tree.map(lambda a: a[0], train_data) if data_per_seed else train_data)
        num_batches = n // batch_size
        if num_batches < 1:
            raise ConfigError(f"fit.batch_size={batch_size} is larger than the training set ({n} samples).")
    else:
        if steps_per_epoch is None:
            raise ConfigError("fit.steps_per_epoch is required with sample_fn.")
        num_batches = check_int("fit.steps_per_epoch", steps_per_epoch, min_value=1)

    epoch_all, init_all = _programs(
        init_fn, loss_fn, eval_fn, sample_fn, None if sample_fn is not None else n, num_batches, batch_size,
        optimizer, monitor, sign, data_per_seed, lrs is not None, post_step,
    )
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(seed), i))(jnp.arange(num_seeds))
    lr_arg = jnp.asarray(lrs) if lrs is not None else jnp.float32(learning_rate)
    _init = init_all
    init_all = lambda k: _init(k, lr_arg)  # noqa: E731
    _epoch = epoch_all
    epoch_all = lambda s, t, v: _epoch(s, lr_arg, t, v)  # noqa: E731

    state = init_all(keys)
    start_epoch = 0
    history: dict[str, list] = {}
    ckpt = pathlib.Path(checkpoint_dir) / "supervised.msgpack" if checkpoint_dir else None
    if ckpt is not None and resume and ckpt.exists():
        blob = flax.serialization.msgpack_restore(ckpt.read_bytes())
        state = flax.serialization.from_state_dict(state, blob["state"])
        start_epoch = int(blob["epoch"])
        history = {k: [np.asarray(x) for x in v.values()] if isinstance(v, dict) else list(v)
                   for k, v in blob["history"].items()}
    if resume:
        # Lines logged after the checkpoint (an epoch logged, then interrupted before its
        # checkpoint was written) are redone: a resumed metrics.jsonl has no duplicate rows.
        jsonl = getattr(writer, "jsonl", None)
        if jsonl is not None:
            jsonl.truncate_after(start_epoch)

    from mtrlrec.train.guards import Interrupted, interrupt_flag

    times = []
    epoch = start_epoch
    # Ctrl-C sets a flag: the epoch in flight finishes and is checkpointed, then the run
    # stops (``--resume`` continues from that epoch to the same numbers).
    with interrupt_flag() as interrupted:
        for epoch in range(start_epoch, num_epochs):
            t0 = time.perf_counter()
            state, metrics = epoch_all(state, train_data, valid_data)
            metrics = jax.device_get(metrics)
            times.append(time.perf_counter() - t0)
            for k, v in metrics.items():
                history.setdefault(k, []).append(np.asarray(v))
            writer.scalars(epoch + 1, {f"{log_prefix}{k}": float(np.mean(v))
                                       for k, v in metrics.items()})
            if progress:
                shown = ", ".join(f"{k}={np.mean(v):.4f}" for k, v in metrics.items())
                print(f"epoch {epoch + 1}/{num_epochs} ({times[-1]:.1f}s): {shown}", flush=True)
            if ckpt is not None:
                if hasattr(writer, "flush"):
                    writer.flush()
                _save_fit_checkpoint(ckpt, state, epoch + 1, history)
            if interrupted():
                raise Interrupted(f"interrupted after epoch {epoch + 1}")
            if patience is not None and bool(np.all(np.asarray(state.bad_epochs) >= patience)):
                break

    curves = {k: np.stack(v, -1) for k, v in history.items()}
    n_ep = next(iter(curves.values())).shape[-1] if curves else 0
    return FitOutput(
        params=state.best_params,
        curves=curves,
        epochs=np.arange(1, n_ep + 1),
        best=sign * np.asarray(state.best),
        hparams={} if lrs is None else {"learning_rate": lrs},
        seconds_per_epoch=float(np.mean(times[1:])) if len(times) > 1 else float("nan"),
        state=state,
    )


def _save_fit_checkpoint(path: pathlib.Path, state, epoch: int, history) -> None:
    """The training state after ``epoch`` epochs and the curves so far, written atomically
    (by process 0 alone on several processes: every process holds the same state)."""
    if jax.process_index() != 0:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "state": flax.serialization.to_state_dict(jax.device_get(state)),
        "epoch": epoch,
        "history": {k: {str(i): x for i, x in enumerate(v)} for k, v in history.items()},
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(flax.serialization.msgpack_serialize(blob))
    tmp.replace(path)


# ----------------------------------------------------------------------------- losses


def next_item_loss(logits: jax.Array, targets: jax.Array, weights: jax.Array | None = None) -> jax.Array:
    r"""Softmax cross-entropy over the full catalogue: ``-log softmax(z)_{target}``, mean over ``weights``.

    ``logits [B, V]``, ``targets [B]`` int, ``weights [B]`` (0 for padded samples).
    """
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    if weights is None:
        return ce.mean()
    return (ce * weights).sum() / jnp.maximum(weights.sum(), 1.0)


def bce_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Binary cross-entropy with logits, mean over all entries."""
    return optax.sigmoid_binary_cross_entropy(logits, labels).mean()


def mse_loss(preds: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error."""
    return jnp.mean((preds - targets) ** 2)


# ----------------------------------------------------------------------------- export / import


def save_params(path: pathlib.Path | str, params: Any, meta: Mapping[str, Any] | None = None) -> pathlib.Path:
    """Writes ``params`` (a pytree of arrays) as msgpack, plus ``<path>.json`` metadata."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(flax.serialization.msgpack_serialize(flax.serialization.to_state_dict(jax.device_get(params))))
    if meta is not None:
        path.with_suffix(path.suffix + ".json").write_text(json.dumps(dict(meta), indent=2, default=str))
    return path


def load_params(path: pathlib.Path | str, like: Any = None, *, index: int | None = None) -> Any:
    """Reads parameters written by :func:`save_params`.

    Args:
      path: the msgpack file.
      like: optional target pytree whose structure (and shapes) must match;
        mismatched names or shapes raise a :class:`ConfigError` naming the leaf.
      index: take run ``index`` from a seed-batched export (leaves ``[S, ...]``).
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise ConfigError(f"PretrainedParams.path: no such file {str(path)!r}.")
    tree = flax.serialization.msgpack_restore(path.read_bytes())
    if index is not None:
        sizes = {np.shape(a)[0] if np.ndim(a) else None for a in jax.tree.leaves(tree)}
        if None in sizes or any(not -n <= index < n for n in sizes):
            raise ConfigError(
                f"PretrainedParams.index={index} is out of range: {str(path)!r} holds "
                f"{sorted(n for n in sizes if n is not None) or 'unbatched'} runs.")
        tree = jax.tree.map(lambda a: a[index], tree)
    if like is None:
        return jax.tree.map(jnp.asarray, tree)
    return restore_like(tree, like, f"in {str(path)!r}")


def restore_like(tree: Any, like: Any, source: str = "in the file") -> Any:
    """``tree`` (a state dict of arrays) in the structure of ``like``, after checking names and shapes.

    ``like`` may hold arrays, tracers or ``jax.ShapeDtypeStruct`` (from ``jax.eval_shape``).
    Raises a :class:`ConfigError` ``PretrainedParams: ...`` naming the first differing
    leaf; ``source`` says where the file's parameters come from.
    """
    target = flax.serialization.to_state_dict(like)
    flat_t = flax.traverse_util.flatten_dict(target, sep="/")
    flat_l = flax.traverse_util.flatten_dict(flax.serialization.to_state_dict(tree), sep="/")
    if set(flat_t) != set(flat_l):
        missing = sorted(set(flat_t) - set(flat_l))[:3]
        extra = sorted(set(flat_l) - set(flat_t))[:3]
        raise ConfigError(f"PretrainedParams: parameter names differ {source} (the model's leaves missing "
                          f"from the file: {missing}; leaves the model does not have: {extra}).")
    for k, v in flat_t.items():
        if np.shape(v) != np.shape(flat_l[k]):
            raise ConfigError(
                f"PretrainedParams: leaf {k!r} has shape {np.shape(flat_l[k])} {source}, "
                f"the model expects {np.shape(v)}."
            )
    return flax.serialization.from_state_dict(like, jax.tree.map(jnp.asarray, tree))


@gin.configurable("PretrainedParams")
@dataclasses.dataclass
class PretrainedParams:
    """Gin handle for exported parameters that an agent loads into its network.

    ``PretrainedParams.path = 'runs/pretrain/params.msgpack'``; ``freeze``
    keeps them fixed (agents wrap their optimizer with :func:`frozen_optimizer`),
    otherwise they are fine-tuned. ``subtree`` names where they go in the
    agent's parameters (e.g. 'encoder'); ``index`` picks one seed of a
    seed-batched export. The file is read once, on first use (so an
    experiment file that names a not-yet-written export still builds).
    """

    path: str = ""
    freeze: bool = True
    subtree: str = "encoder"
    index: int | None = 0
    _cache: Any = dataclasses.field(default=None, init=False, repr=False, compare=False)

    def load(self, like: Any = None) -> Any:
        if not self.path:
            raise ConfigError("PretrainedParams.path is empty.")
        if self._cache is None:
            self._cache = load_params(self.path, index=self.index)
        if like is None:
            return self._cache
        return restore_like(self._cache, like, f"in {self.path!r} (subtree {self.subtree!r})")

    def insert(self, params: Mapping[str, Any]) -> dict:
        """Returns ``params`` (a flax param dict) with ``params[subtree]`` replaced by the file's.

        Works on concrete arrays, tracers (inside ``init`` under ``jit``/``vmap``) and
        ``jax.eval_shape`` structures (a shape check before compilation).
        """
        params = flax.core.unfreeze(params)
        root = params.get("params", params)
        if self.subtree not in root:
            raise ConfigError(
                f"PretrainedParams.subtree={self.subtree!r} is not in the model's parameters {sorted(root)}."
            )
        root[self.subtree] = self.load(root[self.subtree])
        return params


def freeze_mask(params: Any, frozen_subtree: str) -> Any:
    """Boolean pytree: True for leaves to *train*, False under ``frozen_subtree``.

    Use ``optax.masked(opt, freeze_mask(params, 'encoder'))`` together with
    ``optax.masked(optax.set_to_zero(), not-mask)`` or simply
    ``optax.multi_transform`` to freeze an encoder while fine-tuning the rest.
    """
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params))
    mask = {k: frozen_subtree not in k for k in flat}
    return flax.traverse_util.unflatten_dict(mask)


def frozen_optimizer(opt: optax.GradientTransformation, params: Any = None, frozen_subtree: str | None = None):
    """``opt`` on trainable leaves, zero updates under ``frozen_subtree`` (None: train all).

    The labels are computed from the parameters ``optax`` sees at ``init``/``update``
    (``params`` is only checked to contain the subtree, and may be None), so the
    transform can be built before the network's sizes are known (agents build it
    in ``__init__``). Frozen leaves get no Adam moments.
    """
    if not frozen_subtree:
        return opt
    if params is not None:
        flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(params))
        if not any(frozen_subtree in k for k in flat):
            raise ConfigError(f"PretrainedParams.subtree={frozen_subtree!r} names no parameters of the model.")

    def labels(p):
        return jax.tree.map(lambda m: "train" if m else "frozen", freeze_mask(p, frozen_subtree))

    return optax.multi_transform({"train": opt, "frozen": optax.set_to_zero()}, labels)


@functools.lru_cache(maxsize=64)
def _programs(init_fn, loss_fn, eval_fn, sample_fn, n, num_batches, batch_size, optimizer, monitor, sign,
              data_per_seed, swept, post_step=None):
    """Compiled ``(epoch_all, init_all)`` taking the learning rate(s) as an argument.

    Cached, so runs with the same functions and static sizes (e.g. the rows of a
    table that differ only in data or learning rates) compile once per process.
    """

    def make_opt(lr):
        return make_optimizer(optimizer, lr)

    def init_one(key, lr):
        kp, kr = jax.random.split(key)
        params = init_fn(kp)
        opt_state = make_opt(lr).init(params)
        return FitState(params, opt_state, kr, params, jnp.float32(jnp.inf), jnp.int32(0), jnp.int32(0))

    def epoch_one(state: FitState, lr, tdata, vdata):
        opt = make_opt(lr)
        key, kperm = jax.random.split(state.key)
        if sample_fn is None:
            xs = jax.random.permutation(kperm, n)[: num_batches * batch_size].reshape(num_batches, batch_size)
        else:
            xs = jax.random.split(kperm, num_batches)

        def body(carry, x):
            params, opt_state, key = carry
            key, kl = jax.random.split(key)
            batch = _gather(tdata, x) if sample_fn is None else sample_fn(x, tdata, batch_size)
            (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, kl)
            updates, opt_state = opt.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            if post_step is not None:
                params = post_step(params, aux)
            return (params, opt_state, key), loss

        (params, opt_state, key), losses = jax.lax.scan(body, (state.params, state.opt_state, key), xs)
        metrics = dict(eval_fn(params, vdata))
        if monitor not in metrics:
            raise ConfigError(f"fit.monitor={monitor!r} is not among the validation metrics {sorted(metrics)}.")
        value = sign * metrics[monitor]
        better = value < state.best
        best_params = jax.tree.map(lambda a, b: jnp.where(better, a, b), params, state.best_params)
        new = FitState(
            params,
            opt_state,
            key,
            best_params,
            jnp.where(better, value, state.best),
            jnp.where(better, 0, state.bad_epochs + 1),
            state.step + num_batches,
        )
        out = {"train/loss": losses.mean()}
        out.update({f"valid/{k}": v for k, v in metrics.items()})
        return new, out

    data_axis = 0 if data_per_seed else None
    init_s = jax.vmap(init_one, in_axes=(0, None))
    epoch_s = jax.vmap(epoch_one, in_axes=(0, None, data_axis, data_axis))
    if swept:
        init_all = jax.jit(jax.vmap(init_s, in_axes=(None, 0)))
        epoch_all = jax.jit(jax.vmap(epoch_s, in_axes=(0, 0, None, None)))
    else:
        init_all = jax.jit(init_s)
        epoch_all = jax.jit(epoch_s)
    return epoch_all, init_all
