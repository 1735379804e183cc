r"""The meta policy-gradient over item representations: learning how to start with a new user.

Each user is a new bandit task over a catalogue of K items (a trial of
:class:`~mtrlrec.core.wrappers.Trials`, e.g. :mod:`mtrlrec.envs.population`).
Items are represented by an encoder of :mod:`mtrlrec.models`,
:math:`h_i = \mathrm{enc}_\phi(x_i) \in \mathbb R^{m}` (an
:class:`~mtrlrec.models.encoders.MLP` over the item features, or the fixed
features themselves with ``encoder='identity'``), and the policy is the item
softmax of :class:`~mtrlrec.models.heads.ItemSoftmaxPolicy` conditioned on a
user state :math:`s_t \in \mathbb R^m`:

.. math::

   \pi_\theta(i \mid s_t) = \mathrm{softmax}_i\big(h_i^\top (W s_t + v) + b_i\big),
   \qquad \theta = (W\,[m, m],\ v\,[m],\ b\,[K]),

so :math:`p_i = \mathrm{softmax}(h_i W_\theta + b_\theta)` with the state-dependent
weight :math:`W_\theta = W s_t + v`. The user state is the exponential smoothing
of the clicked items' representations,

.. math:: s_{t+1} = \alpha s_t + (1 - \alpha)\, h_{a_t} \ \text{ if } r_t > 0,
          \quad s_{t+1} = s_t \ \text{otherwise}, \qquad s_0 = 0,

with :math:`\alpha \in [0, 1]` in ``state.hparams`` (sweepable), or a GRU
(``user_state='gru'``): :math:`s_{t+1} = \mathrm{GRU}_\psi(s_t, [h_{a_t}, c\,r_t])`
after every interaction, its weights ψ meta-learned with the encoder.

**Inner loop** (per user, online; the fast parameters :math:`\theta^u_t` live in
the learner state, ``[num_envs, ...]``, and are reset to the meta-parameters
:math:`\theta_0` by :meth:`reset_trial` at each trial start): after each
interaction, one REINFORCE step on the average reward (CTR),

.. math:: \theta^u_{t+1} = \theta^u_t + \eta\,(c\,r_t - \bar r^u_t)\,
          \nabla_\theta \log \pi_{\theta^u_t}(a_t \mid s_t),

with :math:`\bar r^u_t` the user's running mean reward (the gradient-bandit
baseline, Sutton & Barto 2018, §2.8), :math:`\eta` = ``inner_lr`` > 0 and
:math:`c` = ``reward_scale``. The step is taken in ``act`` from the previous
action and reward, read from the observation of
:class:`~mtrlrec.envs.meta.RL2Inputs` (``[items, onehot(a_{t-1}), r_{t-1},
d_{t-1}]``), so users adapt also in the evaluation phase (which calls ``act``
only).

**Outer loop** (``learn``, every ``rollout_length`` steps; best equal to the
trial length, so each update sees whole trials that started from the current
:math:`\theta_0`): the stored rollout (actions, rewards, trial ends) is
replayed from the meta-parameters through the inner updates, differentiably,
and the meta-parameters :math:`(\phi, \theta_0)` take an Adam step on

.. math::

   L(\phi, \theta_0) = -\frac{1}{T N'} \sum_{t, u}
        \log \pi_{\theta^u_t(\phi, \theta_0)}(a^u_t \mid s^u_t)\, \hat A^u_t
      \;-\; c_H\, \bar{\mathcal H}[\pi] \;+\; \lambda \|\theta_0\|^2,
   \qquad \hat A^u_t = G^u_t - \frac1{N'}\sum_{u'} G^{u'}_t,

with :math:`G^u_t = \sum_{t' \ge t} \gamma^{t'-t} r^u_{t'}` the reward to go
within the trial. The trajectory's likelihood is
:math:`\prod_t \pi_{\theta_t(\theta_0, \tau_{<t})}(a_t)`, so the gradient of this
surrogate through the inner updates is the unbiased policy gradient of the
trial's return with respect to the initial parameters (MAML, Finn et al. 2017,
§3.2 for RL, with the whole online adaptation as the inner loop;
``meta_gradient='maml'``, second order). ``'first_order'`` stops the gradient
through the inner steps (:math:`d\theta_t/d\theta_0 = I`, FOMAML, Finn et al.
§5.2); ``'none'`` learns nothing across users (the uniform and expert-prior
initial strategies: :math:`\theta_0 = 0`, or :math:`b = ` ``prior_logits``).

**Regularisation against overfitting to the training users**: the entropy bonus
:math:`c_H`, L2 :math:`\lambda` on :math:`\theta_0`, and early stopping on
held-out validation users: the first ``val_users`` of the ``num_envs`` users
are served by :math:`\theta_0` but left out of :math:`L`; their mean reward
(exponentially smoothed over updates) is tracked, and after ``patience``
updates without improvement the outer loop stops and restores the best
meta-parameters. The table evaluates on fresh users of the engine's evaluation
phase only (:mod:`mtrlrec.runners.cold_start`).

Shapes: N = ``num_envs`` users, K items of d features, m = encoder width,
T = ``rollout_length``.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import flax.struct
import gin
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mtrlrec.core.agent import Agent
from mtrlrec.core.errors import ConfigError, check_float, check_floats, check_int
from mtrlrec.core.spaces import Box, num_actions
from mtrlrec.models.encoders import MLP


@flax.struct.dataclass
class MetaPGHParams:
    inner_lr: jax.Array
    outer_lr: jax.Array
    alpha: jax.Array
    entropy_coef: jax.Array
    l2: jax.Array
    gamma: jax.Array
    reward_scale: jax.Array


@flax.struct.dataclass
class UserState:
    """The per-user (fast) part of the learner, ``[N, ...]`` in the state."""

    theta: Any          # fast parameters {'W': [m, m], 'v': [m], 'b': [K]}
    s: jax.Array        # [m] the user state the last action was chosen in
    rbar: jax.Array     # running mean reward (inner baseline)
    n: jax.Array        # inner steps taken with this user


@flax.struct.dataclass
class MetaPGRollout:
    actions: jax.Array  # [T, N] int32
    rewards: jax.Array  # [T, N] raw rewards
    resets: jax.Array   # [T, N] bool: a trial ended after step t
    start: UserState    # [N, ...] the users at the rollout's first step
    ptr: jax.Array


@flax.struct.dataclass
class MetaPGState:
    hparams: MetaPGHParams
    meta: Any           # {'enc': φ, 'theta0': θ0}
    opt_state: Any
    users: UserState    # [N, ...]
    items: jax.Array    # [K, d] the catalogue's features (from the observation)
    rollout: MetaPGRollout
    best_meta: Any      # early stopping: the meta-parameters of the best validation score
    val_ema: jax.Array  # smoothed validation reward
    best_val: jax.Array
    since_best: jax.Array
    stopped: jax.Array  # bool: the outer loop has stopped early
    updates: jax.Array


def policy_logits(h: jax.Array, theta: Any, s: jax.Array) -> jax.Array:
    """:math:`h_i^\\top (W s + v) + b_i`: ``h [K, m]``, ``s [m]`` -> logits ``[K]``."""
    return h @ (theta["W"] @ s + theta["v"]) + theta["b"]


def inner_step(h, theta, u: UserState, action, reward, valid, hp: MetaPGHParams,
               stop_inner: bool = False, state_fn=None):
    """One user's inner update after ``(action, reward)`` (module docstring).

    Args:
      h: ``[K, m]`` item representations.
      theta, u: the user's fast parameters and state before the update.
      action, reward: the last interaction (raw reward).
      valid: bool, whether there was one (False right after a reset).
      hp: hyperparameters.
      stop_inner: stop the gradient through this step (first-order meta-gradient).
      state_fn: ``state_fn(s, h_a, c·r) -> s'`` (the GRU user state), or None for
        the exponential smoothing of the clicked items' representations.

    Returns:
      the updated ``UserState`` (its ``theta`` and ``s``).
    """
    def logp(th):
        return jax.nn.log_softmax(policy_logits(h, th, u.s))[action]

    g = jax.grad(logp)(theta)
    r = reward * hp.reward_scale
    w = jnp.where(valid, hp.inner_lr * (r - u.rbar), 0.0)
    step = jax.tree.map(lambda x: w * x, g)
    if stop_inner:
        step = jax.lax.stop_gradient(step)
    theta = jax.tree.map(jnp.add, theta, step)
    vf = valid.astype(jnp.float32)
    n = u.n + vf
    rbar = u.rbar + vf * (r - u.rbar) / jnp.maximum(n, 1.0)
    if state_fn is None:
        clicked = valid & (reward > 0)
        s = jnp.where(clicked, hp.alpha * u.s + (1.0 - hp.alpha) * h[action], u.s)
    else:
        s = jnp.where(valid, state_fn(u.s, h[action], r), u.s)
    return UserState(theta, s, rbar, n)


@gin.configurable
class MetaPolicyGradient(Agent):
    """Meta-learned item softmax with per-user policy-gradient adaptation (module docstring).

    Args:
      encoder: 'mlp' (:class:`~mtrlrec.models.encoders.MLP` over the item
        features, meta-learned) or 'identity' (:math:`h_i = x_i`).
      hidden: the MLP's hidden units; its output has ``embed_dim`` units.
      embed_dim: m >= 1 (the MLP's output; ignored by 'identity').
      meta_gradient: 'maml', 'first_order' or 'none' (no outer loop).
      rollout_length: T >= 1, steps per outer update (``learn_every``); best the
        trial length.
      inner_lr: η > 0 (swept).
      outer_lr: Adam step size >= 0 (swept).
      alpha: smoothing α in [0, 1] of the user state (swept).
      entropy_coef: c_H >= 0 (swept).
      l2: λ >= 0 on θ0 (swept).
      gamma: discount in [0, 1] of the reward to go in the outer loss (swept).
      reward_scale: c > 0 multiplying rewards in the inner update (swept), e.g.
        1 / max price for revenue.
      prior_logits: optional K initial logits b of θ0 (the expert prior); default 0.
      prior_scale: multiplies ``prior_logits`` (an inverse temperature) >= 0.
      val_users: users (of ``num_envs``) held out of the outer loss for early stopping.
      patience: outer updates without a validation improvement before stopping
        (0: no early stopping).
      val_smoothing: EMA factor in [0, 1) of the validation reward.
      max_grad_norm: global-norm clip of the meta-gradient > 0.
      eval_policy: 'sample' or 'greedy' (the mode), the policy of ``act(greedy=True)``.
      maml_window: 0: the MAML gradient runs through every inner step of the rollout;
        k > 0: truncated, through the last at most k steps (dθ_t/dθ0 restarts at the
        identity every k steps: first order across windows, second order within).
      user_state: 'smoothing' (the exponential smoothing with ``alpha``) or 'gru'
        (:math:`s_{t+1} = \mathrm{GRU}_\psi(s_t, [h_{a_t}, c\,r_t])` after every
        interaction, ψ meta-learned by the outer loop; ``alpha`` unused).
    """

    batched = True

    def __init__(self, encoder: str = "mlp", hidden: Sequence[int] = (32,),
                 embed_dim: int = 16, meta_gradient: str = "maml", rollout_length: int = 200,
                 inner_lr: float = 0.5, outer_lr: float = 0.01, alpha: float = 0.8,
                 entropy_coef: float = 0.0, l2: float = 0.0, gamma: float = 0.9,
                 reward_scale: float = 1.0, prior_logits: Sequence[float] | None = None,
                 prior_scale: float = 1.0, val_users: int = 0, patience: int = 0,
                 val_smoothing: float = 0.8, max_grad_norm: float = 1.0,
                 eval_policy: str = "sample", maml_window: int = 0,
                 user_state: str = "smoothing"):
        if encoder not in ("mlp", "identity"):
            raise ConfigError(f"MetaPolicyGradient.encoder must be 'mlp' or 'identity', got "
                              f"{encoder!r}.")
        self.encoder = encoder
        self.hidden = tuple(check_int(f"MetaPolicyGradient.hidden[{i}]", h, min_value=1)
                            for i, h in enumerate(hidden))
        self.embed_dim = check_int("MetaPolicyGradient.embed_dim", embed_dim, min_value=1)
        if meta_gradient not in ("maml", "first_order", "none"):
            raise ConfigError(f"MetaPolicyGradient.meta_gradient must be 'maml', 'first_order' "
                              f"or 'none', got {meta_gradient!r}.")
        self.meta_gradient = meta_gradient
        self.maml_window = check_int("MetaPolicyGradient.maml_window", maml_window, min_value=0)
        if user_state not in ("smoothing", "gru"):
            raise ConfigError(f"MetaPolicyGradient.user_state must be 'smoothing' or 'gru', got "
                              f"{user_state!r}.")
        self.user_state = user_state
        self.rollout_length = check_int("MetaPolicyGradient.rollout_length", rollout_length,
                                        min_value=1)
        self.learn_every = self.rollout_length
        self.inner_lr = check_float("MetaPolicyGradient.inner_lr", inner_lr, low=0.0,
                                    low_open=True)
        self.outer_lr = check_float("MetaPolicyGradient.outer_lr", outer_lr, low=0.0)
        self.alpha = check_float("MetaPolicyGradient.alpha", alpha, low=0.0, high=1.0)
        self.entropy_coef = check_float("MetaPolicyGradient.entropy_coef", entropy_coef, low=0.0)
        self.l2 = check_float("MetaPolicyGradient.l2", l2, low=0.0)
        self.gamma = check_float("MetaPolicyGradient.gamma", gamma, low=0.0, high=1.0)
        self.reward_scale = check_float("MetaPolicyGradient.reward_scale", reward_scale,
                                        low=0.0, low_open=True)
        self.prior_logits = None if prior_logits is None else np.asarray(
            check_floats("MetaPolicyGradient.prior_logits", prior_logits), np.float32)
        self.prior_scale = check_float("MetaPolicyGradient.prior_scale", prior_scale, low=0.0)
        self.val_users = check_int("MetaPolicyGradient.val_users", val_users, min_value=0)
        self.patience = check_int("MetaPolicyGradient.patience", patience, min_value=0)
        self.val_smoothing = check_float("MetaPolicyGradient.val_smoothing", val_smoothing,
                                         low=0.0, high=1.0)
        if self.val_smoothing >= 1.0:
            raise ConfigError("MetaPolicyGradient.val_smoothing must be < 1.")
        if self.patience and not self.val_users:
            raise ConfigError("MetaPolicyGradient.patience > 0 (early stopping) needs "
                              "MetaPolicyGradient.val_users >= 1 held-out users.")
        self.max_grad_norm = check_float("MetaPolicyGradient.max_grad_norm", max_grad_norm,
                                         low=0.0, low_open=True)
        if eval_policy not in ("sample", "greedy"):
            raise ConfigError(f"MetaPolicyGradient.eval_policy must be 'sample' or 'greedy', "
                              f"got {eval_policy!r}.")
        self.eval_policy = eval_policy
        self.num_envs = None
        self.optimizer = optax.chain(optax.clip_by_global_norm(self.max_grad_norm),
                                     optax.scale_by_adam())

    # -- checks before compilation ---------------------------------------------------
    def _sizes(self, obs_spec, action_spec) -> tuple[int, int]:
        k = num_actions(action_spec)
        if not isinstance(obs_spec, Box) or len(obs_spec.shape) != 1:
            raise ConfigError(
                "MetaPolicyGradient needs the item features and the last interaction as a "
                "vector observation: an env with observation='items' (e.g. UserPopulation) "
                "and OnlineRunner.wrappers = [@RL2Inputs].")
        rest = int(obs_spec.shape[0]) - k - 2
        if rest < k or rest % k:
            raise ConfigError(
                f"MetaPolicyGradient: the observation has {obs_spec.shape[0]} entries, not "
                f"K·d + K + 2 for K = {k} items (the catalogue's features, then RL2Inputs' "
                "onehot(a), r, done): set the env's observation = 'items' and "
                "OnlineRunner.wrappers = [@RL2Inputs].")
        return k, rest // k

    def check_compatible(self, obs_spec, action_spec) -> None:
        k, _ = self._sizes(obs_spec, action_spec)
        if self.prior_logits is not None and self.prior_logits.shape[0] != k:
            raise ConfigError(f"MetaPolicyGradient.prior_logits has {self.prior_logits.shape[0]} "
                              f"entries but there are {k} items.")

    def check_num_envs(self, num_envs: int) -> None:
        self.num_envs = int(num_envs)
        if self.val_users >= self.num_envs:
            raise ConfigError(f"MetaPolicyGradient.val_users={self.val_users} must be below "
                              f"OnlineRunner.num_envs={self.num_envs} (some users must train).")

    def hparams(self):
        f = jnp.float32
        return MetaPGHParams(f(self.inner_lr), f(self.outer_lr), f(self.alpha),
                             f(self.entropy_coef), f(self.l2), f(self.gamma),
                             f(self.reward_scale))

    # -- pieces ----------------------------------------------------------------------
    def _encoder(self):
        return MLP(self.hidden, output=self.embed_dim, name=None)

    def state_fn(self, meta):
        """The user-state update: None (exponential smoothing) or the meta-learned GRU,
        :math:`s' = \mathrm{GRU}_\psi(s, [h_a, c\,r])` after every interaction."""
        if self.user_state == "smoothing":
            return None
        cell = nn.GRUCell(self.state_size(meta))

        def update(s, h_a, r):
            return cell.apply(meta["gru"], s, jnp.concatenate([h_a, jnp.reshape(r, (1,))]))[0]

        return update

    @staticmethod
    def state_size(meta) -> int:
        return int(meta["theta0"]["v"].shape[0])

    def represent(self, enc_params, items: jax.Array) -> jax.Array:
        """Item representations ``h [K, m]`` from the features ``items [K, d]``."""
        if self.encoder == "identity":
            return items
        # tanh bounds |h_i| so the inner steps (of size ∝ |h|²) stay bounded however
        # the outer loop moves φ.
        return jnp.tanh(self._encoder().apply(enc_params, items))

    def _parse(self, obs, k: int, d: int):
        x = jnp.asarray(obs, jnp.float32)
        if x.ndim == 1:
            x = x[None]
        items = x[0, :k * d].reshape(k, d)
        onehot = x[:, k * d:k * d + k]
        return x, items, jnp.argmax(onehot, -1), x[:, k * d + k], jnp.sum(onehot, -1) > 0

    def _user0(self, theta0, m: int) -> UserState:
        return UserState(theta0, jnp.zeros((m,), jnp.float32), jnp.float32(0.0),
                         jnp.float32(0.0))

    def init(self, key, obs_spec, action_spec):
        k, d = self._sizes(obs_spec, action_spec)
        n = self.num_envs or 1
        if self.encoder == "identity":
            enc, m = {}, d
        else:
            enc, m = self._encoder().init(key, jnp.zeros((k, d), jnp.float32)), self.embed_dim
        b = jnp.zeros((k,), jnp.float32)
        if self.prior_logits is not None:
            b = jnp.asarray(self.prior_logits * self.prior_scale, jnp.float32)
        theta0 = {"W": jnp.zeros((m, m), jnp.float32), "v": jnp.zeros((m,), jnp.float32), "b": b}
        gru = {}
        if self.user_state == "gru":
            gru = nn.GRUCell(m).init(jax.random.fold_in(key, 1), jnp.zeros((m,), jnp.float32),
                                     jnp.zeros((m + 1,), jnp.float32))
        meta = {"enc": enc, "theta0": theta0, "gru": gru}
        users = jax.tree.map(lambda a: jnp.broadcast_to(a, (n,) + jnp.shape(a)),
                             self._user0(theta0, m))
        t = self.rollout_length
        rollout = MetaPGRollout(jnp.zeros((t, n), jnp.int32), jnp.zeros((t, n), jnp.float32),
                                jnp.zeros((t, n), bool), users, jnp.int32(0))
        f0 = jnp.float32(0.0)
        return MetaPGState(self.hparams(), meta, self.optimizer.init(meta), users,
                           jnp.zeros((k, d), jnp.float32), rollout, meta, f0,
                           jnp.float32(-jnp.inf), jnp.int32(0), jnp.bool_(False), jnp.int32(0))

    # -- the contract ------------------------------------------------------------------
    def act(self, key, state, obs, *, greedy=False):
        k = state.items.shape[0]
        d = state.items.shape[1]
        x, items, a_prev, r_prev, valid = self._parse(obs, k, d)
        n = x.shape[0]
        if n != state.users.s.shape[0]:
            raise ConfigError(
                f"MetaPolicyGradient keeps per-user fast parameters: it trains on "
                f"{state.users.s.shape[0]} users and cannot act for {n}; leave "
                "OnlineRunner.eval_users unset.")
        h = self.represent(state.meta["enc"], items)
        hp = state.hparams
        state_fn = self.state_fn(state.meta)
        users = jax.vmap(lambda u, a, r, v: inner_step(h, u.theta, u, a, r, v, hp,
                                                       state_fn=state_fn))(
            state.users, a_prev, r_prev, valid)
        logits = jax.vmap(lambda u: policy_logits(h, u.theta, u.s))(users)
        if greedy and self.eval_policy == "greedy":
            action = jnp.argmax(logits, -1).astype(jnp.int32)
        else:
            action = jax.random.categorical(key, logits).astype(jnp.int32)
        if jnp.ndim(obs) == 1:
            action = action[0]
        return action, state.replace(users=users, items=items), {}

    def observe(self, key, state, transition):
        ro = state.rollout
        i = ro.ptr
        n = state.users.s.shape[0]
        info = transition.info
        resets = info.get("trial_done", jnp.zeros((n,), bool)) if isinstance(info, dict) \
            else jnp.zeros((n,), bool)
        ro = ro.replace(
            actions=ro.actions.at[i].set(jnp.reshape(transition.action, (n,)).astype(jnp.int32)),
            rewards=ro.rewards.at[i].set(jnp.reshape(transition.reward, (n,)).astype(jnp.float32)),
            resets=ro.resets.at[i].set(jnp.reshape(resets, (n,))),
            ptr=i + 1)
        return state.replace(rollout=ro)

    def reset_trial(self, key, state, mask):
        # A new user: back to the meta-parameters (the initial strategy), forget the user.
        mask = jnp.reshape(jnp.asarray(mask), (-1,))
        m = state.users.s.shape[-1]
        fresh = self._user0(state.meta["theta0"], m)

        def pick(new, old):
            w = jnp.reshape(mask, (-1,) + (1,) * (old.ndim - 1))
            return jnp.where(w, new[None], old)

        return state.replace(users=jax.tree.map(pick, fresh, state.users))

    # -- the outer loop ----------------------------------------------------------------
    def replay(self, meta, items, ro: MetaPGRollout, hp: MetaPGHParams, start_theta,
               stop_inner: bool):
        """Re-runs the users' inner loops over the rollout from ``meta``, differentiably.

        Returns ``(logp [T, N], entropy [T, N])`` of the stored actions under the
        fast parameters the users had when they chose them.
        """
        h = self.represent(meta["enc"], items)
        theta0 = meta["theta0"]
        m = h.shape[-1]

        window = self.maml_window
        state_fn = self.state_fn(meta)

        def one_user(start: UserState, theta_start, actions, rewards, resets):
            def step(u: UserState, xs):
                a, r, done, t = xs
                if window and not stop_inner:
                    # Truncated second order: every `window` steps dθ_t/dθ0 restarts at I.
                    anchor = jax.tree.map(lambda x, t0: t0 + jax.lax.stop_gradient(x - t0),
                                          u.theta, theta0)
                    u = u.replace(theta=jax.tree.map(
                        lambda y, x: jnp.where(t % window == 0, y, x), anchor, u.theta))
                lp_all = jax.nn.log_softmax(policy_logits(h, u.theta, u.s))
                ent = -jnp.sum(jnp.exp(lp_all) * lp_all)
                nxt = inner_step(h, u.theta, u, a, r, jnp.bool_(True), hp, stop_inner,
                                 state_fn)
                fresh = self._user0(theta0, m)
                nxt = jax.tree.map(lambda f, x: jnp.where(done, f, x), fresh, nxt)
                return nxt, (lp_all[a], ent)

            u0 = UserState(theta_start, start.s, start.rbar, start.n)
            steps = jnp.arange(actions.shape[0])
            _, (lp, ent) = jax.lax.scan(step, u0, (actions, rewards, resets, steps))
            return lp, ent

        lp, ent = jax.vmap(one_user, in_axes=(0, 0, 1, 1, 1), out_axes=1)(
            ro.start, start_theta, ro.actions, ro.rewards, ro.resets)
        return lp, ent

    def learn(self, key, state):
        ro, hp = state.rollout, state.hparams
        t_len, n = ro.rewards.shape
        train = (jnp.arange(n) >= self.val_users).astype(jnp.float32)   # [N]
        # Reward to go within each trial (a trial end stops it), and a per-step
        # baseline: the training users' mean at the same step.
        def back(g, xs):
            r, done = xs
            g = r + hp.gamma * jnp.where(done, 0.0, g)
            return g, g

        _, returns = jax.lax.scan(back, jnp.zeros((n,), jnp.float32),
                                  (ro.rewards, ro.resets), reverse=True)
        base = jnp.sum(returns * train, -1, keepdims=True) / jnp.sum(train)
        adv = (returns - base) * train
        adv = adv / (jnp.sqrt(jnp.sum(adv ** 2) / (jnp.sum(train) * t_len)) + 1e-6)
        adv = jax.lax.stop_gradient(adv)
        # The users' fast parameters at the rollout's start relative to θ0 (zero when
        # the rollout starts with their trials).
        delta = jax.tree.map(lambda s, t0: s - t0[None], ro.start.theta,
                             state.meta["theta0"])
        stop_inner = self.meta_gradient == "first_order"

        def loss_fn(meta):
            start = jax.tree.map(lambda d, t0: t0[None] + d, delta, meta["theta0"])
            lp, ent = self.replay(meta, state.items, ro, hp, start, stop_inner)
            pg = -jnp.sum(lp * adv) / (jnp.sum(train) * t_len)
            entropy = jnp.sum(ent * train) / (jnp.sum(train) * t_len)
            l2 = sum(jnp.sum(x ** 2) for x in jax.tree.leaves(meta["theta0"]))
            loss = pg - hp.entropy_coef * entropy + hp.l2 * l2
            return loss, {"policy_loss": pg, "entropy": entropy}

        metrics = {}
        rew_train = jnp.sum(ro.rewards * train, -1) / jnp.sum(train)    # [T]
        head = min(10, t_len)
        metrics["pre_adaptation_reward"] = jnp.mean(rew_train[:head])
        metrics["post_adaptation_reward"] = jnp.mean(rew_train[t_len // 2:])
        metrics["trial_reward"] = jnp.mean(rew_train)
        if self.meta_gradient == "none":
            ro = ro.replace(start=state.users, ptr=jnp.int32(0))
            return state.replace(rollout=ro), metrics
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.meta)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.meta)
        # A non-finite meta-gradient (a diverging second-order product through the
        # inner steps) skips the update instead of poisoning θ0; counted in 'skipped'.
        finite = jnp.isfinite(optax.tree.norm(grads))
        opt_state = jax.tree.map(lambda n, o: jnp.where(finite, n, o), opt_state, state.opt_state)
        updates = jax.tree.map(lambda u: jnp.where(finite, u, 0.0), updates)
        lr = jnp.where(state.stopped, 0.0, hp.outer_lr)
        meta = optax.apply_updates(state.meta, jax.tree.map(lambda u: -lr * u, updates))
        aux = {k_: jnp.where(finite, v_, 0.0) for k_, v_ in aux.items()}
        metrics.update({"outer_loss": jnp.where(finite, loss, 0.0), **aux,
                        "grad_norm": jnp.where(finite, optax.tree.norm(grads), 0.0),
                        "skipped": 1.0 - finite.astype(jnp.float32)})
        # Early stopping on the validation users (served by θ0, not in the loss).
        best_meta, val_ema, best_val = state.best_meta, state.val_ema, state.best_val
        since, stopped = state.since_best, state.stopped
        if self.val_users:
            val = jnp.sum(ro.rewards * (1.0 - train)) / (self.val_users * t_len)
            val_ema = jnp.where(state.updates == 0, val,
                                self.val_smoothing * state.val_ema
                                + (1 - self.val_smoothing) * val)
            better = (val_ema > best_val) & ~stopped
            best_meta = jax.tree.map(lambda o, b: jnp.where(better, o, b), state.meta, best_meta)
            best_val = jnp.where(better, val_ema, best_val)
            since = jnp.where(better, 0, since + 1)
            if self.patience:
                newly = (since >= self.patience) & ~stopped
                stopped = stopped | newly
                meta = jax.tree.map(lambda b, x: jnp.where(stopped, b, x), best_meta, meta)
            metrics["val_reward"] = val_ema
            metrics["stopped"] = stopped.astype(jnp.float32)
        # Users mid-trial keep their own adaptation, shifted with θ0.
        shift = jax.tree.map(jnp.subtract, meta["theta0"], state.meta["theta0"])
        users = state.users.replace(theta=jax.tree.map(lambda x, s: x + s[None],
                                                       state.users.theta, shift))
        ro = ro.replace(start=users, ptr=jnp.int32(0))
        return state.replace(meta=meta, opt_state=opt_state, users=users, rollout=ro,
                             best_meta=best_meta, val_ema=val_ema, best_val=best_val,
                             since_best=since, stopped=stopped,
                             updates=state.updates + 1), metrics


__all__ = ["MetaPGHParams", "MetaPGState", "MetaPolicyGradient", "inner_step", "policy_logits"]
