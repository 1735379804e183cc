r"""Reward models :math:`\hat q(x, a, k)` for the direct method and the doubly robust family.

* :func:`empirical_reward_model`: the smoothed click rate of each (item, position),
  context-free and cheap enough to refit on every bootstrap replicate.
* :func:`fit_logistic_reward_model` / :func:`logistic_inputs`: one L2 logistic
  regression with item, position and per-item context effects (fitted by Adam).
* :func:`fit_obp_logistic` / :func:`predict_obp_logistic`: the model of Saito et al.
  2021 (§5, and obp 0.4.1's ``RegressionModel(fitting_method='normal')`` with an
  sklearn ``LogisticRegression(C=100)`` base model; C = 100 is our setting, not
  checked against obp's example configuration): one logistic regression
  **per position** on ``[context, action_context[a]]`` — obp's OBD features, the
  one-hot user features and the item's (label-encoded id, three hashed categories,
  ``item_feature_0``) — with cross-fitting over K folds. It minimises sklearn's
  objective, :math:`C \sum_i \ell(y_i, b + \theta^\top z_i) + \tfrac12 \lVert\theta\rVert^2`
  (intercept unpenalised), by damped Newton steps, in JAX so a bootstrap can refit
  it on every replicate (bootstrap counts are row weights).

Cross-fitting (Chernozhukov et al. 2018; Narita et al. 2021): row i's prediction
comes from the model trained on the other folds, so DR's residual term is
independent of the model, as its unbiasedness argument assumes.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core.errors import check_float, check_int
from mtrlrec.eval.ope import OPEInputs, _expand


def empirical_reward_model(
    action,
    position,
    reward,
    *,
    num_actions: int,
    num_positions: int = 1,
    prior_strength: float = 10.0,
    fold: jax.Array | None = None,
    num_folds: int = 1,
    return_table: bool = False,
    sample_weight: jax.Array | None = None,
) -> jax.Array:
    r"""Context-free reward model: smoothed mean reward of each (action, position).

    :math:`\hat q(a, k) = (S_{a,k} + m \bar r) / (N_{a,k} + m)` with
    :math:`S, N` the reward sum and count of (a, k) in the training rows,
    :math:`\bar r` their overall mean and :math:`m` = ``prior_strength``
    (empirical-Bayes shrinkage towards the mean, so rare cells do not get 0 or 1).

    With ``fold`` (``[n]`` ints in ``0 .. num_folds-1``) the model is
    *cross-fitted* (Chernozhukov et al. 2018; Narita et al. 2021): row i's
    prediction uses only rows of other folds, which keeps DR's residual term
    independent of the model as its unbiasedness argument assumes.

    Args:
      action, position: ``[n]`` int.
      reward: ``[n]`` or ``[n, R]``.
      num_actions, num_positions: A, P (static).
      prior_strength: m >= 0.
      fold: optional ``[n]`` fold ids; num_folds: their number (static).
      return_table: return the ``[F, A, P, R...]`` per-fold tables instead.
      sample_weight: optional ``[n]`` row weights (bootstrap counts), so a
        bootstrap can refit the model on every replicate.

    Returns:
      ``[n, A, P, R...]`` predictions (the same table for every row of a fold).
    """
    reward = jnp.asarray(reward, jnp.float32)
    action = jnp.asarray(action, jnp.int32)
    position = jnp.asarray(position, jnp.int32)
    n = action.shape[0]
    cell = action * num_positions + position
    if fold is None:
        fold = jnp.zeros(n, jnp.int32)
        num_folds = 1
    fold = jnp.asarray(fold, jnp.int32)
    seg = fold * (num_actions * num_positions) + cell
    size = num_folds * num_actions * num_positions
    cw = jnp.ones(n, jnp.float32) if sample_weight is None else jnp.asarray(sample_weight, jnp.float32)
    s = jax.ops.segment_sum(_expand(cw, reward) * reward, seg, num_segments=size).reshape(
        (num_folds, num_actions, num_positions) + reward.shape[1:])
    c = jax.ops.segment_sum(cw, seg, num_segments=size).reshape(
        num_folds, num_actions, num_positions)
    if num_folds > 1:  # train on the other folds
        s = jnp.sum(s, axis=0, keepdims=True) - s
        c = jnp.sum(c, axis=0, keepdims=True) - c
    tot_s = jnp.sum(s, axis=(1, 2))  # [F, R...]
    tot_c = jnp.sum(c, axis=(1, 2))  # [F]
    mean = tot_s / _expand(jnp.maximum(tot_c, 1.0), tot_s)
    c_e = _expand(c, s)
    table = (s + prior_strength * mean[:, None, None]) / (c_e + prior_strength + 1e-12)
    return table if return_table else table[fold]


@flax.struct.dataclass
class LogisticRewardParams:
    r"""Parameters of :func:`fit_logistic_reward_model`, one set per fold (leading ``[F]`` axis).

    :math:`\mathrm{logit}\, \hat q(x, a, k) = b_0 + b_a + c_k + x^\top v + x^\top U_a`.
    """

    b0: jax.Array  # [F]
    b: jax.Array  # [F, A]
    c: jax.Array  # [F, P]
    v: jax.Array  # [F, d]
    u: jax.Array  # [F, A, d]


def _logistic_logits(p: LogisticRewardParams, x, position):
    """Logits ``[n, A]`` of every action at each row's position, for one fold's params."""
    return (p.b0 + p.c[position])[:, None] + p.b[None, :] + (x @ p.v)[:, None] + x @ p.u.T


def fit_logistic_reward_model(
    features,
    action,
    position,
    reward,
    *,
    num_actions: int,
    num_positions: int = 1,
    l2: float = 1.0,
    steps: int = 300,
    learning_rate: float = 0.05,
    fold: jax.Array | None = None,
    num_folds: int = 1,
) -> LogisticRewardParams:
    r"""A contextual click model for DM/DR: L2-regularised logistic regression.

    :math:`\mathrm{logit}\,\hat q(x, a, k) = b_0 + b_a + c_k + x^\top v + x^\top U_a`
    (item and position effects, a shared context effect and a per-item context
    effect), fitted by full-batch Adam on the mean binary cross-entropy plus
    :math:`\frac{\lambda}{n}\lVert(b, c, v, U)\rVert^2`. With ``fold`` the model
    is cross-fitted: fold f's parameters are trained on the other folds (all
    folds in one vmapped call).

    Args:
      features: ``[n, d]`` contexts; action, position: ``[n]``; reward: ``[n]`` in [0, 1].
      num_actions, num_positions: A, P.
      l2: λ >= 0; steps: optimisation steps; learning_rate: Adam step size.
      fold, num_folds: cross-fitting folds (default: one model on all rows).

    Returns:
      :class:`LogisticRewardParams` with a leading ``[F]`` axis.
    """
    import optax

    x = jnp.asarray(features, jnp.float32)
    a = jnp.asarray(action, jnp.int32)
    k = jnp.asarray(position, jnp.int32)
    y = jnp.asarray(reward, jnp.float32)
    n, d = x.shape
    if fold is None:
        fold, num_folds = jnp.zeros(n, jnp.int32), 1
    fold = jnp.asarray(fold, jnp.int32)
    mean = jnp.clip(jnp.mean(y), 1e-4, 1 - 1e-4)
    init = LogisticRewardParams(
        b0=jnp.log(mean / (1 - mean)), b=jnp.zeros(num_actions), c=jnp.zeros(num_positions),
        v=jnp.zeros(d), u=jnp.zeros((num_actions, d)))
    opt = optax.adam(learning_rate)

    def fit_one(f):
        w = (fold != f) if num_folds > 1 else jnp.ones(n, bool)
        w = w.astype(jnp.float32)

        def loss(p):
            logit = (p.b0 + p.b[a] + p.c[k] + x @ p.v + jnp.sum(x * p.u[a], axis=1))
            bce = optax.sigmoid_binary_cross_entropy(logit, y)
            reg = sum(jnp.sum(t ** 2) for t in (p.b, p.c, p.v, p.u))
            return jnp.sum(w * bce) / jnp.sum(w) + l2 * reg / jnp.sum(w)

        def step(carry, _):
            p, s = carry
            g = jax.grad(loss)(p)
            upd, s = opt.update(g, s, p)
            return (optax.apply_updates(p, upd), s), None

        (p, _), _ = jax.lax.scan(step, (init, opt.init(init)), None, length=steps)
        return p

    return jax.jit(jax.vmap(fit_one))(jnp.arange(num_folds))


def logistic_inputs(params: LogisticRewardParams, features, policy, action, position, pscore,
                    reward, fold=None) -> OPEInputs:
    """:class:`OPEInputs` with a :func:`fit_logistic_reward_model` model and a context-free ``policy [A, P]``.

    Row i uses the parameters of its own fold (cross-fitting).
    """
    x = jnp.asarray(features, jnp.float32)
    a = jnp.asarray(action, jnp.int32)
    k = jnp.asarray(position, jnp.int32)
    policy = jnp.asarray(policy, jnp.float32)
    n = a.shape[0]
    fold = jnp.zeros(n, jnp.int32) if fold is None else jnp.asarray(fold, jnp.int32)
    all_folds = jax.vmap(lambda p: _logistic_logits(p, x, k))(params)  # [F, n, A]
    logits = all_folds[fold, jnp.arange(n)]  # [n, A], each row from its own fold
    q = jax.nn.sigmoid(logits)
    return OPEInputs(
        weight=policy[a, k] / jnp.asarray(pscore, jnp.float32),
        reward=jnp.asarray(reward, jnp.float32),
        q_logged=q[jnp.arange(n), a],
        q_policy=jnp.sum(policy[:, k].T * q, axis=1),
        position=k,
    )


# ---------------------------------------------------------------------------
# obp's model: one logistic regression per position, cross-fitted


def kfold_ids(seed: int, n: int, num_folds: int) -> np.ndarray:
    """``[n]`` fold ids of a shuffled K-fold split (contiguous blocks of a permutation, as KFold(shuffle=True)).

    The fold sizes differ by at most one; the permutation comes from
    ``np.random.default_rng(seed)`` (obp's own KFold split uses sklearn's
    generator, so the folds differ from obp's; the peer script passes obp's folds
    where the numbers must match).
    """
    num_folds = check_int("num_folds", num_folds, min_value=1)
    perm = np.random.default_rng(seed).permutation(n)
    fold = np.empty(n, np.int32)
    sizes = np.full(num_folds, n // num_folds)
    sizes[: n % num_folds] += 1
    start = 0
    for f, s in enumerate(sizes):
        fold[perm[start:start + s]] = f
        start += s
    return fold


@flax.struct.dataclass
class PositionLogisticParams:
    r""":func:`fit_obp_logistic` parameters: ``w [F, P, d]`` and intercepts ``b [F, P]``.

    :math:`\hat q(x, a, k) = \sigma(b_{f,k} + w_{f,k}^\top [x, c_a])` for a row of fold f.
    """

    w: jax.Array
    b: jax.Array


def _newton_logistic(z, y, weight, inv_c, iters, theta0):
    """Minimises ``sum_i weight_i * logloss_i + inv_c/2 * |w|^2`` over (w, b); z ``[n, d]``.

    Damped Newton: each step tries step sizes 1, 1/2, ..., 1/128 and keeps the
    best objective (logistic losses are convex, so this never increases it).
    """
    n, d = z.shape
    za = jnp.concatenate([z, jnp.ones((n, 1), z.dtype)], axis=1)  # intercept last
    reg = jnp.concatenate([jnp.full((d,), inv_c), jnp.zeros((1,))])
    steps = 0.5 ** jnp.arange(8)

    def objective(theta):
        s = za @ theta
        return jnp.sum(weight * (jnp.logaddexp(0.0, s) - y * s)) + 0.5 * jnp.sum(reg * theta ** 2)

    def body(theta, _):
        s = za @ theta
        p = jax.nn.sigmoid(s)
        g = za.T @ (weight * (p - y)) + reg * theta
        h = (za * (weight * p * (1 - p))[:, None]).T @ za + jnp.diag(reg + 1e-8)
        delta = jnp.linalg.solve(h, g)
        cand = theta[None, :] - steps[:, None] * delta[None, :]
        vals = jax.vmap(objective)(cand)
        best = jnp.argmin(jnp.where(jnp.isfinite(vals), vals, jnp.inf))
        new = cand[best]
        return jnp.where(vals[best] <= objective(theta), new, theta), None

    theta, _ = jax.lax.scan(body, theta0, None, length=iters)
    return theta


def fit_obp_logistic(
    context,
    action_context,
    action,
    position,
    reward,
    *,
    num_positions: int,
    fold=None,
    num_folds: int = 1,
    C: float = 100.0,
    iters: int = 30,
    sample_weight=None,
    init: PositionLogisticParams | None = None,
) -> PositionLogisticParams:
    r"""Fits obp's per-position logistic regression (cross-fitted); pure JAX.

    Args:
      context: ``[n, d_x]`` (obp's OBD context: one-hot user features, first level dropped).
      action_context: ``[A, d_c]`` item features (:meth:`mtrlrec.data.obd.OBDLog.action_context`).
      action, position: ``[n]`` ints; reward: ``[n]`` in {0, 1}.
      num_positions: P (static).
      fold: ``[n]`` fold ids (:func:`kfold_ids`), num_folds: K (static); fold f's
        models are trained on the rows of the other folds (K = 1: all rows).
      C: sklearn's inverse regularisation strength (default 100, our setting).
      iters: Newton steps.
      sample_weight: ``[n]`` row weights (bootstrap counts).
      init: warm start (e.g. the full-data fit when refitting on bootstrap
        replicates, where a few Newton steps suffice); default zeros with the
        intercept at the logit of the mean reward.

    Returns:
      :class:`PositionLogisticParams` with ``w [K, P, d_x + d_c]`` and ``b [K, P]``.
    """
    C = check_float("fit_obp_logistic.C", C, low=0.0, low_open=True)
    x = jnp.asarray(context, jnp.float32)
    ac = jnp.asarray(action_context, jnp.float32)
    a = jnp.asarray(action, jnp.int32)
    k = jnp.asarray(position, jnp.int32)
    y = jnp.asarray(reward, jnp.float32)
    n = a.shape[0]
    z = jnp.concatenate([x, ac[a]], axis=1)
    fold = jnp.zeros(n, jnp.int32) if fold is None else jnp.asarray(fold, jnp.int32)
    cw = jnp.ones(n, jnp.float32) if sample_weight is None else jnp.asarray(sample_weight, jnp.float32)
    mean = jnp.clip(jnp.sum(cw * y) / jnp.sum(cw), 1e-4, 1 - 1e-4)
    init_b = jnp.log(mean / (1 - mean))

    d = z.shape[1]
    if init is None:
        theta0 = jnp.zeros((num_folds, num_positions, d + 1)).at[..., -1].set(init_b)
    else:
        theta0 = jnp.concatenate([init.w, init.b[..., None]], axis=-1)

    if isinstance(position, jax.core.Tracer):
        rows = jnp.broadcast_to(jnp.arange(n), (num_positions, n))  # every row, masked
    else:
        # each position's model only sees that position's rows: gather them
        # (padded with a zero-weight row) instead of masking all n, a P-fold saving
        k_np = np.asarray(position)
        idx = [np.flatnonzero(k_np == j) for j in range(num_positions)]
        m = max(1, max(len(i) for i in idx))
        rows = jnp.asarray(np.stack([np.pad(i, (0, m - len(i)), constant_values=-1) for i in idx]))

    def one(f, pos, t0):
        r_ = rows[pos]
        valid = r_ >= 0
        r_ = jnp.where(valid, r_, 0)
        train = (fold[r_] != f) if num_folds > 1 else jnp.ones(r_.shape, bool)
        wt = cw[r_] * train * valid * (k[r_] == pos)
        return _newton_logistic(z[r_], y[r_], wt, 1.0 / C, iters, t0)

    ff, pp = jnp.meshgrid(jnp.arange(num_folds), jnp.arange(num_positions), indexing="ij")
    theta = jax.vmap(jax.vmap(one))(ff, pp, theta0)  # [K, P, d + 1]
    return PositionLogisticParams(w=theta[..., :-1], b=theta[..., -1])


def obp_logistic_logits(params: PositionLogisticParams, context, action_context, position, fold):
    """Logits ``[n, A]`` of every item at each row's own position, with the row's own fold's model."""
    x = jnp.asarray(context, jnp.float32)
    ac = jnp.asarray(action_context, jnp.float32)
    k = jnp.asarray(position, jnp.int32)
    f = jnp.asarray(fold, jnp.int32)
    dx = x.shape[1]
    w = params.w[f, k]  # [n, d]
    return (params.b[f, k] + jnp.sum(w[:, :dx] * x, axis=1))[:, None] + w[:, dx:] @ ac.T


def predict_obp_logistic(params: PositionLogisticParams, context, action_context, fold) -> jax.Array:
    r"""``[n, A, P]`` predictions :math:`\hat q(x_i, a, k)` for every item and position (obp's layout)."""
    x = jnp.asarray(context, jnp.float32)
    ac = jnp.asarray(action_context, jnp.float32)
    f = jnp.asarray(fold, jnp.int32)
    dx = x.shape[1]
    w = params.w[f]  # [n, P, d]
    ctx = params.b[f] + jnp.einsum("npd,nd->np", w[..., :dx], x)  # [n, P]
    item = jnp.einsum("npd,ad->nap", w[..., dx:], ac)  # [n, A, P]
    return jax.nn.sigmoid(ctx[:, None, :] + item)


def obp_logistic_inputs(params: PositionLogisticParams, context, action_context, policy, action,
                        position, pscore, reward, fold) -> OPEInputs:
    """:class:`OPEInputs` for a context-free ``policy [A, P]`` with the per-position model (row's own fold)."""
    a = jnp.asarray(action, jnp.int32)
    k = jnp.asarray(position, jnp.int32)
    policy = jnp.asarray(policy, jnp.float32)
    n = a.shape[0]
    q = jax.nn.sigmoid(obp_logistic_logits(params, context, action_context, k, fold))  # [n, A]
    return OPEInputs(
        weight=policy[a, k] / jnp.asarray(pscore, jnp.float32),
        reward=jnp.asarray(reward, jnp.float32),
        q_logged=q[jnp.arange(n), a],
        q_policy=jnp.sum(policy[:, k].T * q, axis=1),
        position=k,
    )


__all__ = [
    "LogisticRewardParams", "PositionLogisticParams", "empirical_reward_model",
    "fit_logistic_reward_model", "fit_obp_logistic", "kfold_ids", "logistic_inputs",
    "obp_logistic_inputs", "obp_logistic_logits", "predict_obp_logistic",
]
