r"""Supervised warm start of a slate policy, then reinforcement learning.

:class:`SlateWarmStart` is what ``PPO.warm_start`` / ``A2C.warm_start`` name: inside
the agent's ``init`` (so per seed, compiled with the run), it

1. logs ``num_users × num_steps`` interactions of a logging policy
   (default uniformly random slates) with fresh simulated users of ``env``
   (auto-reset, the env's default params, its own key stream);
2. fits the item softmax by cross-entropy on the clicked items, the supervised
   next-item objective of the seed,

   .. math:: \min_\theta -\frac{1}{|C|}\sum_{(s, i) \in C} \log \pi_\theta(i \mid s),

   over the logged steps ``C`` with a click, with ``train_steps`` Adam steps on
   minibatches of ``batch_size`` logged steps (steps without a click are masked);
3. hands the fitted parameters to the agent, which then learns online (the
   critic is left at its initialisation: the loss does not touch it).

The logged steps are environment steps: comparing with RL from scratch at equal
environment steps means giving the RL-only run ``num_users × num_steps`` more
user-steps (``benchmarks/tables/policy_gradient_slate.toml`` does).
"""

from __future__ import annotations

from typing import Any

import gin
import jax
import jax.numpy as jnp
import optax

from mtrlrec.core.agent import Agent
from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_float, check_int


@gin.configurable
class SlateWarmStart:
    """Cross-entropy pretraining of the item softmax on logged clicks (module docstring).

    Args:
      env: the simulator that writes the log (the run's env, ``%ENV``).
      logger: the logging agent (default ``RandomSlate()``); stateless agents only.
      num_users: users logged in parallel.
      num_steps: logged steps per user.
      train_steps: Adam steps.
      batch_size: logged steps per minibatch.
      learning_rate: Adam step size, > 0.
    """

    def __init__(self, env: Environment = gin.REQUIRED, logger: Agent | None = None,
                 num_users: int = 32, num_steps: int = 512, train_steps: int = 500,
                 batch_size: int = 256, learning_rate: float = 3e-3):
        w = "SlateWarmStart"
        if not isinstance(env, Environment):
            raise ConfigError(f"{w}.env must be an environment instance (%ENV), got {env!r}.")
        from mtrlrec.agents.slate_baselines import RandomSlate

        self.env = env
        self.logger = RandomSlate() if logger is None else logger
        if not isinstance(self.logger, Agent):
            raise ConfigError(f"{w}.logger must be an agent (@RandomSlate()), got {logger!r}.")
        p = env.default_params()
        self.logger.check_compatible(env.observation_spec(p), env.action_spec(p))
        self.num_users = check_int(f"{w}.num_users", num_users, min_value=1)
        self.num_steps = check_int(f"{w}.num_steps", num_steps, min_value=1)
        self.train_steps = check_int(f"{w}.train_steps", train_steps, min_value=1)
        self.batch_size = check_int(f"{w}.batch_size", batch_size, min_value=1)
        self.learning_rate = check_float(f"{w}.learning_rate", learning_rate, low=0.0,
                                         low_open=True)

    def log(self, key):
        """``(obs [n, ...], clicked item [n], clicked [n])`` for ``n = users × steps``."""
        env, logger, n = self.env, self.logger, self.num_users
        params = env.default_params()
        k_reset, k_log, k_init = jax.random.split(key, 3)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(k_reset, n), params)
        l_state = logger.init(k_init, env.observation_spec(params), env.action_spec(params))

        def step(carry, k):
            obs, state = carry
            k_a, k_s = jax.random.split(k)
            action, _, _ = jax.vmap(lambda kk, o: logger.act(kk, l_state, o))(
                jax.random.split(k_a, n), obs)
            nxt, state, _, _, _, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k_s, n), state, action, params)
            clicks = info["slate_click"]  # [n, k]
            clicked = jnp.any(clicks > 0, axis=-1)
            pos = jnp.argmax(clicks, axis=-1)
            item = jnp.take_along_axis(action, pos[:, None], axis=1)[:, 0]
            return (nxt, state), (obs, item, clicked)

        _, (o, item, clicked) = jax.lax.scan(step, (obs, state),
                                             jax.random.split(k_log, self.num_steps))
        flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
        return jax.tree.map(flat, o), flat(item), flat(clicked)

    def pretrain(self, key, net, params) -> Any:
        """``params`` after ``train_steps`` Adam steps of the cross-entropy on logged clicks."""
        k_log, k_fit = jax.random.split(key)
        obs, item, clicked = self.log(k_log)
        size = item.shape[0]
        opt = optax.adam(self.learning_rate)

        def loss_fn(p, idx):
            out = jax.vmap(lambda o: net.apply(p, o))(jax.tree.map(lambda x: x[idx], obs))
            lp = jnp.take_along_axis(out["log_probs"], item[idx][:, None], axis=1)[:, 0]
            m = clicked[idx].astype(jnp.float32)
            return -jnp.sum(m * lp) / jnp.maximum(jnp.sum(m), 1.0)

        def one(carry, k):
            p, s = carry
            idx = jax.random.randint(k, (self.batch_size,), 0, size)
            loss, g = jax.value_and_grad(loss_fn)(p, idx)
            upd, s = opt.update(g, s, p)
            return (optax.apply_updates(p, upd), s), loss

        (params, _), _ = jax.lax.scan(one, (params, opt.init(params)),
                                      jax.random.split(k_fit, self.train_steps))
        return params


__all__ = ["SlateWarmStart"]
