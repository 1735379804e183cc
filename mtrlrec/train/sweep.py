"""Sweeps: the hyperparameter and env-parameter values of one compiled call, checked.

``check_sweep`` validates every value the way a single Gin binding is validated
(the agent's constructor check, ``env.check_params``), before compilation;
``split_sweep`` and ``override_env_params`` apply a sweep point inside the
traced program (agent hyperparameters by name, env params as ``env.<field>``).
"""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core.agent import Agent, hparam_names
from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError


def check_sweep(hparams: Mapping[str, Any] | None, agent: Agent, env: Environment,
                env_params: Any, batched_params: bool, owner: str = "hparams"
                ) -> tuple[dict[str, jnp.ndarray], int]:
    """The sweep as float32 arrays ``[H]``, every value checked like a single binding.

    Agent hyperparameters go through :meth:`Agent.check_hparam` (the
    constructor's own check), env fields through ``env.check_params`` on the
    params with that value; names that are neither are refused.
    """
    if not hparams:
        return {}, 0
    arrays = {}
    for k, v in hparams.items():
        try:
            a = np.asarray(v, np.float32)
        except (TypeError, ValueError):
            raise ConfigError(f"{owner}[{k!r}] must be a list of numbers, got {v!r}.") from None
        if a.ndim < 1 or a.size == 0:
            raise ConfigError(
                f"{owner}[{k!r}] must be a non-empty list with one value per sweep point, "
                f"got {v!r}.")
        bad = np.flatnonzero(~np.all(np.isfinite(a.reshape(a.shape[0], -1)), axis=1))
        if bad.size:
            raise ConfigError(f"{owner}[{k!r}][{bad[0]}] must be finite, got {a[bad[0]]}.")
        arrays[k] = a
    sizes = {k: a.shape[0] for k, a in arrays.items()}
    if len(set(sizes.values())) != 1:
        raise ConfigError(
            f"{owner} lists must have one entry per sweep point, all of equal length; got {sizes}.")
    agent_names = set(hparam_names(agent))
    for k, a in arrays.items():
        field = k[4:] if k.startswith("env.") else None
        if field is not None and (env_params is None or not hasattr(env_params, field)):
            raise ConfigError(f"{owner}: cannot sweep {k!r}: the environment {env.name} has no "
                              f"parameter {field!r}.")
        if field is None and k not in agent_names:
            raise ConfigError(
                f"{owner}: cannot sweep {k!r}: {agent.name}'s hyperparameters are "
                f"{sorted(agent_names)} (environment parameters are swept as 'env.<field>').")
        for i, x in enumerate(a):
            try:
                if field is not None and not batched_params:
                    env.check_params(env_params.replace(**{field: x}))
                elif field is None and x.ndim == 0:
                    agent.check_hparam(k, float(x))
            except ConfigError as e:
                shown = f"{float(x):g}" if x.ndim == 0 else str(x.tolist())
                raise ConfigError(f"{owner}[{k!r}][{i}] = {shown}: {e}") from None
    return {k: jnp.asarray(a) for k, a in arrays.items()}, next(iter(sizes.values()))


def split_sweep(hp: Mapping[str, jax.Array]):
    env_hp = {k[4:]: v for k, v in hp.items() if k.startswith("env.")}
    agent_hp = {k: v for k, v in hp.items() if not k.startswith("env.")}
    return env_hp, agent_hp


def override_env_params(env_params, env_hp):
    if not env_hp:
        return env_params
    try:
        return env_params.replace(**env_hp)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"cannot sweep env params {sorted(env_hp)}: {e}") from None


def checked_params(env: Environment, agent: Agent, env_params: Any, batched: bool) -> Any:
    """``env_params`` (default: the env's own), validated on the host with the agent's fit.

    Batched params (a leading task or seed axis) skip ``env.check_params``,
    which validates one task.
    """
    if env_params is None:
        env_params = env.default_params()
    if not batched:
        env.check_params(env_params)
    agent.check_compatible(env.observation_spec(env_params), env.action_spec(env_params))
    return env_params
