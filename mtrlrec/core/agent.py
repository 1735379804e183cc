r"""The pure learner contract (DESIGN §3).

An :class:`Agent` holds static configuration only (network definitions, buffer
sizes, the learning period). Everything that changes (statistics, parameters,
optimiser state, buffers, a recurrent hidden state) lives in a state pytree
returned by ``init`` and threaded through the loop::

    action, state, info = agent.act(key, state, obs, greedy=False)   # every step
    state = agent.observe(key, state, transition)                     # every step
    state, metrics = agent.learn(key, state)                          # every learn_every steps

There is one path for every agent:

* ``act`` returns the state, so a recurrent policy advances its hidden state,
  also when learning is off (evaluation). ``greedy=True`` asks for the
  evaluation policy (no exploration); agents that have none set
  ``has_greedy = False`` and an evaluation phase refuses them.
* ``observe`` is the cheap per-step part: sufficient statistics, buffer writes.
* ``learn`` is the expensive part (gradient steps) and returns metrics (losses,
  TD error, entropy) that the loop logs as ``agent/<name>``. The loop calls it
  after every block of ``learn_every`` steps for all seeds at once: a
  ``lax.cond(t % n == 0, learn)`` inside a vmapped step would become a
  ``select`` that runs ``learn`` on every step. Bandits learn in ``observe``
  and keep the default ``learn_every = 1`` and the no-op ``learn``.

Batches of users. With ``num_envs`` users per learner (PureJaxRL's
``NUM_ENVS``) the loop hands ``act`` a batch of observations ``[N, ...]`` and
``observe`` a batch of transitions. Agents written for a batch set
``batched = True``; the others get :class:`PerUser`, which acts for each user
with the same state and observes the users one after another.

Swept hyperparameters (ε, the c of UCB, step sizes, learning rates) are float
fields of ``state.hparams``: the loop overrides them per sweep point with
:func:`with_hparams` under ``vmap``, so a sweep is one compiled call.
:meth:`Agent.check_hparam` validates a swept value with the same check as the
constructor argument of the same name, so ``{'epsilon': [1.5]}`` is refused
exactly like ``EpsilonGreedy.epsilon = 1.5``.
"""

from __future__ import annotations

import inspect
from typing import Any, Generic, TypeVar

import flax.struct
import jax
import jax.numpy as jnp

from mtrlrec.core.errors import ConfigError
from mtrlrec.core.spaces import Space
from mtrlrec.core.types import ActInfo, Metrics, PRNGKey, Transition

S = TypeVar("S")

FLOAT32_EXACT_STEPS = 2**24  # a float32 count or sum of 0/1 rewards stops growing here


@flax.struct.dataclass
class AgentState:
    """Minimal agent state: subclasses add fields; ``hparams`` holds swept values."""

    hparams: Any


class Agent(Generic[S]):
    """Base class of pure agents (see the module docstring for the contract).

    Class attributes:
      learn_every: steps between calls of ``learn`` (bandits 1, DQN 4, PPO the
        rollout length).
      has_greedy: whether ``act(..., greedy=True)`` is an evaluation policy.
      batched: whether ``act``/``observe`` take a batch of users.
      max_exact_steps: steps (pulls) beyond which the learner's float32 running
        statistics stop being exact (2^24 for plain float32 sums and averages);
        a longer run is refused. None: no limit (compensated or int statistics).
    """

    learn_every: int = 1
    has_greedy: bool = True
    batched: bool = False
    max_exact_steps: int | None = None

    def __new__(cls, *args, **kwargs):
        # The constructor arguments, so a swept value can be validated by the
        # constructor's own checks (check_hparam).
        obj = super().__new__(cls)
        obj._init_args = (args, kwargs)
        return obj

    # -- the contract ------------------------------------------------------------
    def init(self, key: PRNGKey, obs_spec: Space, action_spec: Space) -> S:
        raise NotImplementedError

    def act(self, key: PRNGKey, state: S, obs: Any, *, greedy: bool = False
            ) -> tuple[Any, S, ActInfo]:
        raise NotImplementedError

    def observe(self, key: PRNGKey, state: S, transition: Transition) -> S:
        """Per-step bookkeeping; the default keeps the state."""
        return state

    def learn(self, key: PRNGKey, state: S) -> tuple[S, Metrics]:
        """The periodic learning phase; the default learns nothing."""
        return state, {}

    def reset_trial(self, key: PRNGKey, state: S, mask: jax.Array) -> S:
        """Resets the per-task part of the state where ``mask`` (a new trial starts).

        Called by the loop after the step at which a :class:`~mtrlrec.core.wrappers.Trials`
        environment ended a trial (``mask`` is a bool, ``[num_envs]`` for batched
        agents), and before an evaluation. A meta-learner resets its recurrent
        state and keeps its parameters; a bandit forgets its statistics. The
        default keeps everything.
        """
        return state

    def hparams(self) -> Any:
        """The default hyperparameter struct (float arrays) stored in the state."""
        return {}

    # -- checks made before compilation ------------------------------------------
    def check_compatible(self, obs_spec: Space, action_spec: Space) -> None:
        """Raises ``ConfigError`` when this agent cannot act in these spaces."""

    def check_num_envs(self, num_envs: int) -> None:
        """Raises ``ConfigError`` if this learner cannot take batches of ``num_envs`` users.

        A batched learner whose networks or buffers are built for a batch size
        refuses another here, before anything compiles.
        """

    def check_hparam(self, name: str, value: float) -> None:
        """Raises ``ConfigError`` if ``value`` is not valid for hyperparameter ``name``.

        Rebuilds the agent with the constructor argument ``name`` set to
        ``value``, so the message is the constructor's own (naming e.g.
        ``EpsilonGreedy.epsilon``). Hyperparameters that are not constructor
        arguments are only checked to be finite (by the caller).
        """
        args, kwargs = getattr(self, "_init_args", ((), {}))
        sig = inspect.signature(type(self).__init__)
        if name not in sig.parameters:
            return
        bound = sig.bind_partial(self, *args, **kwargs)
        bound.arguments[name] = value
        try:
            type(self)(*bound.args[1:], **bound.kwargs)
        except ConfigError as e:  # gin appends "In call to configurable ..." lines
            raise ConfigError(str(e).splitlines()[0]) from None

    @property
    def name(self) -> str:
        return type(self).__name__


class AgentWrapper(Agent):
    """Forwards the whole contract to ``agent``; subclasses override what they change.

    The learning period, the greedy mode and batching are the wrapped agent's, so a
    wrapped periodic learner still learns every ``learn_every`` steps only.
    """

    def __init__(self, agent: Agent):
        self.agent = agent
        self.learn_every = agent.learn_every
        self.has_greedy = agent.has_greedy
        self.batched = agent.batched
        self.max_exact_steps = agent.max_exact_steps

    @property
    def name(self) -> str:
        return self.agent.name

    def hparams(self):
        return self.agent.hparams()

    def check_compatible(self, obs_spec, action_spec):
        self.agent.check_compatible(obs_spec, action_spec)

    def check_hparam(self, name, value):
        self.agent.check_hparam(name, value)

    def check_num_envs(self, num_envs):
        self.agent.check_num_envs(num_envs)

    def init(self, key, obs_spec, action_spec):
        return self.agent.init(key, obs_spec, action_spec)

    def act(self, key, state, obs, *, greedy=False):
        return self.agent.act(key, state, obs, greedy=greedy)

    def observe(self, key, state, transition):
        return self.agent.observe(key, state, transition)

    def learn(self, key, state):
        return self.agent.learn(key, state)

    def reset_trial(self, key, state, mask):
        return self.agent.reset_trial(key, state, mask)


class PerUser(AgentWrapper):
    """Serves a batch of users with an agent written for one user at a time.

    ``act`` acts for every user with the same learner state (a ``vmap``) and
    returns that state unchanged: agents whose ``act`` changes their state
    (recurrent policies) must set ``batched = True`` and handle the batch.
    ``observe`` feeds the users' transitions one after another, in user order,
    as if they had arrived in turn within the step. ``learn`` is forwarded;
    ``reset_trial`` resets the shared learner when any user starts a trial.
    """

    def __init__(self, agent: Agent):
        super().__init__(agent)
        self.batched = True

    def act(self, key, state, obs, *, greedy=False):
        n = jax.tree.leaves(obs)[0].shape[0]
        keys = jax.random.split(key, n)
        action, _, info = jax.vmap(
            lambda k, o: self.agent.act(k, state, o, greedy=greedy))(keys, obs)
        return action, state, info

    def observe(self, key, state, transition):
        n = jnp.shape(transition.terminated)[0]
        keys = jax.random.split(key, n)

        def one(s, xs):
            k, tr = xs
            return self.agent.observe(k, s, tr), None

        state, _ = jax.lax.scan(one, state, (keys, transition))
        return state

    def reset_trial(self, key, state, mask):
        return self.agent.reset_trial(key, state, jnp.any(mask))


def _field_names(hp: Any) -> list[str]:
    """The names in a hyperparameter struct (a dict or a flax dataclass), sorted."""
    return sorted(hp) if isinstance(hp, dict) else sorted(getattr(hp, "__dataclass_fields__", {}))


def with_hparams(state: Any, overrides: dict[str, jax.Array]) -> Any:
    """Returns ``state`` with some ``state.hparams`` fields replaced (used by sweeps)."""
    if not overrides:
        return state
    hp = state.hparams
    known = _field_names(hp)
    missing = set(overrides) - set(known)
    if missing:
        raise ConfigError(
            f"cannot sweep {sorted(missing)}: the agent's hyperparameters are {known}."
        )
    new_hp = {**hp, **overrides} if isinstance(hp, dict) else hp.replace(**overrides)
    return state.replace(hparams=new_hp)


def hparam_names(agent: Agent) -> list[str]:
    """The names a sweep may set for ``agent`` (the fields of its hparams)."""
    return _field_names(agent.hparams())
