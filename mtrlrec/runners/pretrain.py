r"""Supervised pretraining of a neural bandit agent's network on logged feedback.

:class:`BanditPretrainRunner` logs ``num_samples`` rounds of a contextual
environment under the uniform policy, :math:`(x_i, a_i, r_i)` with
:math:`a_i \sim U\{0..K-1\}`, and fits the agent's own network
(:class:`mtrlrec.models.heads.BanditMLP`: torso ``encoder``, per-arm linear
``head``) by the squared error of the logged arm's head,

.. math:: \min_\phi \frac1n \sum_i \big(f_\phi(x_i)_{a_i} - r_i\big)^2 ,

the regression the neural agents themselves run online (Riquelme et al.,
ICLR 2018, §3). It uses :func:`mtrlrec.train.supervised.fit` (Adam, early
stopping on a held-out log, ``num_seeds`` runs vmapped) and exports the torso
of every run to ``<run dir>/params.msgpack`` (leaves ``[S, ...]``), which an
agent loads with ``NeuralLinear.pretrained = @PretrainedParams()``. Because the
network is built from the agent bound here, the export always matches the
agent's ``encoder`` (same ``hidden_sizes``); the agent run must use the same
sizes, and a mismatch is a ``PretrainedParams`` error naming the leaf.
"""

from __future__ import annotations

import functools
from typing import Any

import gin
import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.agents.linear import context_dim, scalar_reward
from mtrlrec.agents.neural import _NeuralBase
from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_float, check_int
from mtrlrec.core.spaces import num_actions
from mtrlrec.train import supervised
from mtrlrec.train.result import Result, RunContext


def log_uniform(env: Environment, params: Any, key: jax.Array, n: int, num_arms: int,
                reward_weights=None, owner: str = "BanditPretrainRunner"):
    """``n`` independent rounds under the uniform logging policy.

    Returns ``(contexts [n, d], arms [n], rewards [n], means [n, K] or None)``; every
    round is its own ``reset`` (a fresh context) and one ``step`` with a uniform arm.
    """
    has_means = hasattr(env, "mean_rewards")

    def one(k):
        k_r, k_a, k_s = jax.random.split(k, 3)
        x, state = env.reset(k_r, params)
        a = jax.random.randint(k_a, (), 0, num_arms, dtype=jnp.int32)
        _, _, reward, _, _, _ = env.step(k_s, state, a, params)
        x = jnp.asarray(x, jnp.float32).reshape(-1)
        r = scalar_reward(reward, reward_weights, owner)
        means = env.mean_rewards(x, params) if has_means else jnp.zeros((num_arms,))
        return x, a, r, means

    x, a, r, m = jax.jit(jax.vmap(one))(jax.random.split(key, n))
    return x, a, r, (m if has_means else None)


@functools.lru_cache(maxsize=None)
def _programs(net):
    def loss_fn(params, batch, key):
        x, a, r = batch
        _, q = net.apply(params, x)
        pred = jnp.take_along_axis(q, a[:, None], axis=1)[:, 0]
        return jnp.mean((pred - r) ** 2), {}

    def eval_fn(params, data):
        x, a, r = data
        return {"loss": loss_fn(params, (x, a, r), None)[0]}

    return loss_fn, eval_fn


@gin.configurable
class BanditPretrainRunner:
    """Pretrains a neural bandit agent's network on uniformly logged rounds and exports its encoder.

    Args:
      env: the contextual environment that generates the log (its default params).
      agent: the neural agent (``NeuralLinear`` / ``NeuralEpsilonGreedy``) whose
        network (its ``hidden_sizes``) is trained; its learning rate is not used.
      num_samples: logged training rounds.
      num_valid: held-out logged rounds (early stopping).
      batch_size, num_epochs, patience, learning_rate: Adam training.
      data_seed: seed of the log (fixed, so every training seed sees the same log).
    """

    def __init__(self, env: Environment = gin.REQUIRED, agent: _NeuralBase = gin.REQUIRED,
                 num_samples: int = 20_000, num_valid: int = 2_000, batch_size: int = 256,
                 num_epochs: int = 30, patience: int = 3, learning_rate: float = 3e-3,
                 data_seed: int = 1234):
        w = "BanditPretrainRunner"
        if not isinstance(agent, _NeuralBase):
            raise ConfigError(f"{w}.agent must be a neural agent (@NeuralLinear() or "
                              f"@NeuralEpsilonGreedy()), got {type(agent).__name__}.")
        if agent.pretrained is not None:
            raise ConfigError(f"{w}.agent: the agent to pretrain must not itself load "
                              f"pretrained parameters (unbind {agent._owner}.pretrained).")
        self.env, self.agent = env, agent
        self.num_samples = check_int(f"{w}.num_samples", num_samples, min_value=1)
        self.num_valid = check_int(f"{w}.num_valid", num_valid, min_value=1)
        self.batch_size = check_int(f"{w}.batch_size", batch_size, min_value=1)
        if self.batch_size > self.num_samples:
            raise ConfigError(f"{w}.batch_size={batch_size} is larger than {w}.num_samples={num_samples}.")
        self.num_epochs = check_int(f"{w}.num_epochs", num_epochs, min_value=1)
        self.patience = check_int(f"{w}.patience", patience, min_value=1)
        self.learning_rate = check_float(f"{w}.learning_rate", learning_rate, low=0.0, low_open=True)
        self.data_seed = check_int(f"{w}.data_seed", data_seed, min_value=0)

    def __call__(self, ctx: RunContext) -> Result:
        env, agent = self.env, self.agent
        params = env.default_params()
        d = context_dim(env.observation_spec(params), agent._owner)
        k = num_actions(env.action_spec(params))
        net = agent._net(k)
        key_t, key_v = jax.random.split(jax.random.PRNGKey(self.data_seed))
        xt, at, rt, _ = log_uniform(env, params, key_t, self.num_samples, k, agent.reward_weights)
        xv, av, rv, mv = log_uniform(env, params, key_v, self.num_valid, k, agent.reward_weights)
        loss_fn, eval_fn = _programs(net)
        out = supervised.fit(
            lambda key: net.init(key, jnp.zeros((d,), jnp.float32)), loss_fn, eval_fn,
            train_data=(xt, at, rt), valid_data=(xv, av, rv), num_seeds=ctx.num_seeds, seed=ctx.seed,
            batch_size=self.batch_size, num_epochs=self.num_epochs, patience=self.patience,
            learning_rate=self.learning_rate, writer=ctx.writer, checkpoint_dir=ctx.checkpoint_dir,
            resume=ctx.resume, progress=ctx.progress,
        )
        final = {"valid/loss": np.asarray(out.best), "epochs": np.full(ctx.num_seeds, float(out.epochs[-1]))}
        if mv is not None:
            # Regret per round of acting greedily on the pretrained heads, on the held-out contexts.
            q = jax.vmap(lambda p: net.apply(p, xv)[1])(out.params)  # [S, n, K]
            picked = jnp.take_along_axis(mv[None], jnp.argmax(q, -1)[..., None], -1)[..., 0]
            final["greedy_regret"] = np.asarray(jnp.mean(mv.max(-1)[None] - picked, -1))
        if ctx.run_dir is not None:
            meta = {"module": "BanditMLP.encoder", "agent": agent._owner,
                    "hidden_sizes": list(agent.hidden_sizes), "context_dim": d, "num_arms": k,
                    "env": type(env).__name__, "num_samples": self.num_samples, "num_seeds": ctx.num_seeds}
            supervised.save_params(ctx.run_dir / "params.msgpack", out.params["params"]["encoder"], meta=meta)
        return Result(final=final, curves=out.curves, steps=out.epochs, primary="valid/loss")
