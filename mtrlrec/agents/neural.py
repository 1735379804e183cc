r"""Neural contextual bandit agents (Riquelme, Tucker & Snoek, ICLR 2018, §3).

* :class:`NeuralLinear` (Riquelme et al. 2018, §3 "Neural linear"): an MLP
  :math:`g_\phi(x) \in \mathbb{R}^h` with a linear head per arm is trained by
  regression on the observed rewards every ``train_every`` steps (optax); the
  agent acts by Thompson sampling from the NIG posterior of a Bayesian linear
  regression on the last hidden layer :math:`z = g_\phi(x)`, rebuilt from the
  whole buffer after each training phase (the features change) and updated
  rank-one in between.
* :class:`NeuralEpsilonGreedy`: the same network, acting ε-greedily on its
  predicted rewards (Riquelme et al. 2018 use it as a baseline).

Deep agents keep a buffer of ``buffer_size`` transitions in their state. They
expose ``observe`` (the per-step O(d²) update), ``learn`` (the periodic
training, with its loss as a metric) and ``learn_every`` (``train_every``);
the loop (:mod:`mtrlrec.train.loop`) scans blocks of ``learn_every`` steps and
calls ``learn`` between them. The Adam step size is ``state.hparams.learning_rate``,
so it can be swept in one compiled call.

Vector rewards are scalarised with ``reward_weights``. The normal-inverse-gamma
posterior on the last hidden layer is :mod:`mtrlrec.agents.linear`'s.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.struct
import gin
import jax
import jax.numpy as jnp
import optax

from mtrlrec.agents.linear import (
    NIGPosterior, _check_nig, _check_weights, _round_robin, argmax_random_tiebreak, context_dim,
    nig_from_data, nig_mean_values, nig_observe, nig_prior, nig_sample_values, scalar_reward,
)
from mtrlrec.core.agent import Agent
from mtrlrec.core.errors import ConfigError, check_float, check_int
from mtrlrec.core.spaces import num_actions
from mtrlrec.models.heads import BanditMLP
from mtrlrec.train.supervised import PretrainedParams, frozen_optimizer


@flax.struct.dataclass
class Buffer:
    contexts: jax.Array  # [N, d]
    actions: jax.Array  # [N]
    rewards: jax.Array  # [N]
    size: jax.Array  # [] number of valid rows (<= N)
    pos: jax.Array  # [] next write position


def _buffer_add(buf: Buffer, x, a, r) -> Buffer:
    n = buf.actions.shape[0]
    return Buffer(
        contexts=buf.contexts.at[buf.pos].set(x),
        actions=buf.actions.at[buf.pos].set(a),
        rewards=buf.rewards.at[buf.pos].set(r),
        size=jnp.minimum(buf.size + 1, n),
        pos=(buf.pos + 1) % n,
    )


@flax.struct.dataclass
class NeuralHParams:
    a0: jax.Array
    b0: jax.Array
    epsilon: jax.Array
    learning_rate: jax.Array


@flax.struct.dataclass
class NeuralState:
    hparams: NeuralHParams
    params: Any
    opt_state: Any
    buffer: Buffer
    post: NIGPosterior  # last-layer posterior (NeuralLinear only; unused by ε-greedy)
    t: jax.Array


class _NeuralBase(Agent):
    """Network, buffer and periodic training shared by the neural agents."""

    _owner = "NeuralLinear"
    uses_posterior = True

    def __init__(self, hidden_sizes, learning_rate, train_every, train_steps, batch_size,
                 buffer_size, initial_pulls, reward_weights, a0=6.0, b0=6.0,
                 lambda_prior=0.25, epsilon=0.0, pretrained=None):
        o = self._owner
        hidden_sizes = tuple(hidden_sizes)
        if not hidden_sizes:
            raise ConfigError(f"{o}.hidden_sizes must have at least one layer.")
        self.hidden_sizes = tuple(
            check_int(f"{o}.hidden_sizes[{i}]", h, min_value=1) for i, h in enumerate(hidden_sizes))
        self.learning_rate = check_float(f"{o}.learning_rate", learning_rate, low=0.0,
                                         low_open=True)
        self.learn_every = check_int(f"{o}.train_every", train_every, min_value=1)
        self.train_steps = check_int(f"{o}.train_steps", train_steps, min_value=1)
        self.batch_size = check_int(f"{o}.batch_size", batch_size, min_value=1)
        self.buffer_size = check_int(f"{o}.buffer_size", buffer_size, min_value=1)
        self.a0, self.b0, self.lambda_prior, self.initial_pulls = _check_nig(
            o, a0, b0, lambda_prior, initial_pulls)
        self.epsilon = check_float(f"{o}.epsilon", epsilon, low=0.0, high=1.0)
        self.reward_weights = _check_weights(o, reward_weights)
        if pretrained is not None and not isinstance(pretrained, PretrainedParams):
            raise ConfigError(f"{o}.pretrained must be @PretrainedParams() or None, got {pretrained!r}.")
        self.pretrained = pretrained
        # Frozen: the pretrained subtree gets zero updates (and no Adam moments); the
        # file itself is read at the first check/init, so the experiment builds before it exists.
        frozen = pretrained.subtree if pretrained is not None and pretrained.freeze else None
        # Adam's scaling only: the step size is applied from state.hparams in learn,
        # so a sweep over learning_rate is one compiled call.
        self.optimizer = frozen_optimizer(optax.scale_by_adam(), None, frozen)

    def hparams(self):
        return NeuralHParams(jnp.float32(self.a0), jnp.float32(self.b0),
                             jnp.float32(self.epsilon), jnp.float32(self.learning_rate))

    def check_compatible(self, obs_spec, action_spec):
        d = context_dim(obs_spec, self._owner)
        k = num_actions(action_spec)
        if self.pretrained is not None:  # names and shapes, before anything is compiled
            shapes = jax.eval_shape(self._net(k).init, jax.random.PRNGKey(0), jnp.zeros((d,), jnp.float32))
            self.pretrained.insert(shapes)

    def _net(self, k):
        return BanditMLP(self.hidden_sizes, k)

    def init(self, key, obs_spec, action_spec):
        d = context_dim(obs_spec, self._owner)
        k = num_actions(action_spec)
        params = self._net(k).init(key, jnp.zeros((d,), jnp.float32))
        if self.pretrained is not None:
            # The same exported values for every seed; the rest of the network is per-seed random.
            params = self.pretrained.insert(params)
        n = self.buffer_size
        buf = Buffer(jnp.zeros((n, d), jnp.float32), jnp.zeros((n,), jnp.int32),
                     jnp.zeros((n,), jnp.float32), jnp.int32(0), jnp.int32(0))
        return NeuralState(
            hparams=self.hparams(), params=params, opt_state=self.optimizer.init(params),
            buffer=buf, post=nig_prior(k, self.hidden_sizes[-1], self.lambda_prior),
            t=jnp.int32(0),
        )

    def observe(self, key, state: NeuralState, transition) -> NeuralState:
        """The per-step part of ``update``: store the transition, rank-one posterior update."""
        x = jnp.asarray(transition.obs, jnp.float32).reshape(-1)
        r = scalar_reward(transition.reward, self.reward_weights, self._owner)
        a = transition.action
        buf = _buffer_add(state.buffer, x, a, r)
        post = state.post
        if self.uses_posterior:
            k = post.xy.shape[0]
            z, _ = self._net(k).apply(state.params, x)
            post = nig_observe(post, a, z, r)
        return state.replace(buffer=buf, post=post, t=state.t + 1)

    def learn(self, key, state: NeuralState) -> tuple[NeuralState, dict]:
        """``train_steps`` minibatch Adam steps on the buffer (MSE of the pulled
        arm's head), then (NeuralLinear) the last-layer posterior from the buffer.

        Returns the state and ``{'loss': mean minibatch MSE of the phase}``.
        """
        buf = state.buffer
        k = state.post.xy.shape[0]
        net = self._net(k)

        def loss_fn(params, xb, ab, rb):
            _, q = jax.vmap(lambda x: net.apply(params, x))(xb)
            pred = jnp.take_along_axis(q, ab[:, None], axis=1)[:, 0]
            return jnp.mean((pred - rb) ** 2)

        def sgd(carry, k_b):
            params, opt_state = carry
            idx = jax.random.randint(k_b, (self.batch_size,), 0, jnp.maximum(buf.size, 1))
            loss, g = jax.value_and_grad(loss_fn)(params, buf.contexts[idx], buf.actions[idx],
                                                  buf.rewards[idx])
            updates, opt_state = self.optimizer.update(g, opt_state, params)
            updates = jax.tree.map(lambda u: u * -state.hparams.learning_rate, updates)
            return (optax.apply_updates(params, updates), opt_state), loss

        keys = jax.random.split(key, self.train_steps)
        (params, opt_state), losses = jax.lax.scan(sgd, (state.params, state.opt_state), keys)
        has_data = buf.size > 0
        params = jax.tree.map(lambda n, o: jnp.where(has_data, n, o), params, state.params)
        opt_state = jax.tree.map(lambda n, o: jnp.where(has_data, n, o), opt_state,
                                 state.opt_state)
        post = state.post
        if self.uses_posterior:
            z, _ = jax.vmap(lambda x: net.apply(params, x))(buf.contexts)
            valid = jnp.arange(buf.actions.shape[0]) < buf.size
            post = nig_from_data(z, buf.actions, buf.rewards, valid, k, self.lambda_prior)
        loss = jnp.where(has_data, jnp.mean(losses), 0.0)
        return state.replace(params=params, opt_state=opt_state, post=post), {"loss": loss}



@gin.configurable
class NeuralLinear(_NeuralBase):
    r"""Neural-linear Thompson sampling (Riquelme et al., ICLR 2018, §3).

    Args:
      hidden_sizes: MLP layer widths; the last one is the feature size h.
      learning_rate: Adam step size.
      train_every: steps between training phases (``learn_every``).
      train_steps: minibatch steps per training phase.
      batch_size: minibatch size.
      buffer_size: transitions kept (the whole run in the paper's setting).
      a0, b0, lambda_prior: NIG prior of the last-layer regression (> 0).
      initial_pulls: round-robin pulls of every arm first.
      reward_weights: scalarisation of vector rewards.
      pretrained: optional ``@PretrainedParams()``: exported torso parameters loaded
        into the network's ``encoder`` at ``init`` (every seed), frozen when
        ``PretrainedParams.freeze`` (the head and the posterior still learn),
        fine-tuned otherwise.
    """

    _owner = "NeuralLinear"
    uses_posterior = True

    def __init__(self, hidden_sizes: Sequence[int] = (32, 32), learning_rate: float = 3e-3,
                 train_every: int = 50, train_steps: int = 50, batch_size: int = 64,
                 buffer_size: int = 5000, a0: float = 6.0, b0: float = 6.0,
                 lambda_prior: float = 0.25, initial_pulls: int = 2,
                 reward_weights: Sequence[float] | None = None,
                 pretrained: PretrainedParams | None = None):
        super().__init__(hidden_sizes, learning_rate, train_every, train_steps, batch_size,
                         buffer_size, initial_pulls, reward_weights, a0, b0, lambda_prior,
                         pretrained=pretrained)

    def act(self, key, state, obs, *, greedy=False):
        k_s, k_t = jax.random.split(key)
        k = state.post.xy.shape[0]
        z, _ = self._net(k).apply(state.params, jnp.asarray(obs, jnp.float32).reshape(-1))
        values = nig_sample_values(k_s, state.post, z, state.hparams.a0, state.hparams.b0)
        if greedy:
            values = nig_mean_values(state.post, z)
        action = argmax_random_tiebreak(k_t, values)
        return _round_robin(state.t, self.initial_pulls, k, action), state, {}


@gin.configurable
class NeuralEpsilonGreedy(_NeuralBase):
    r"""ε-greedy on the predictions of a periodically trained MLP.

    With probability ε a uniform arm, otherwise :math:`\arg\max_a f_\phi(x)_a`.

    Args:
      epsilon: exploration probability in [0, 1] (swept as ``hparams.epsilon``).
      hidden_sizes, learning_rate, train_every, train_steps, batch_size,
      buffer_size, initial_pulls, reward_weights, pretrained: as in :class:`NeuralLinear`.
    """

    _owner = "NeuralEpsilonGreedy"
    uses_posterior = False

    def __init__(self, epsilon: float = 0.05, hidden_sizes: Sequence[int] = (32, 32),
                 learning_rate: float = 3e-3, train_every: int = 50, train_steps: int = 50,
                 batch_size: int = 64, buffer_size: int = 5000, initial_pulls: int = 2,
                 reward_weights: Sequence[float] | None = None,
                 pretrained: PretrainedParams | None = None):
        super().__init__(hidden_sizes, learning_rate, train_every, train_steps, batch_size,
                         buffer_size, initial_pulls, reward_weights, epsilon=epsilon,
                         pretrained=pretrained)

    def act(self, key, state, obs, *, greedy=False):
        k_e, k_a, k_t = jax.random.split(key, 3)
        k = state.post.xy.shape[0]
        _, q = self._net(k).apply(state.params, jnp.asarray(obs, jnp.float32).reshape(-1))
        best = argmax_random_tiebreak(k_t, q)
        if greedy:
            return best, state, {}
        rand = jax.random.randint(k_a, (), 0, k, dtype=jnp.int32)
        action = jnp.where(jax.random.uniform(k_e) < state.hparams.epsilon, rand, best)
        return _round_robin(state.t, self.initial_pulls, k, action), state, {}
