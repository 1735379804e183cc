r"""The online loop: environment and agent in one ``jit(vmap(lax.scan))``.

``run`` compiles one program that advances every seed (and, optionally, every
point of a hyperparameter sweep) by a chunk of steps::

    chunk = jit(vmap_hparams(vmap_seeds(scan_windows(scan_steps(step)))))

and calls it repeatedly, so that a long run reports progress, logs and
checkpoints between chunks while staying one compiled program. Metrics come
back as NumPy arrays shaped ``[num_seeds, num_logs]`` (``[num_hparams,
num_seeds, num_logs]`` when sweeping), one entry per window of ``log_every``
steps:

* every scalar entry of the env ``info`` and of the agent's update metrics
  (prefixed ``agent/``), and the reward (``reward`` or ``reward/<name>`` per
  component), averaged over the window;
* keys starting with ``episode_`` (from :class:`EpisodeStatistics`) averaged
  over the steps where ``info['episode_done']`` only (NaN when no episode ended
  in the window), plus ``episodes``: the number that ended;
* ``cumulative_<key>`` for each key in ``env.cumulative_metrics``: the running
  sum since step 0 at the end of the window (e.g. cumulative regret).

Seed ``i`` uses ``fold_in(PRNGKey(seed), seed_offset + i)``, so seeds run one
by one (``num_seeds=1, seed_offset=i``) reproduce the vmapped run. Sweep points
share the seeds' keys (common random numbers), which lowers the variance of
comparisons between hyperparameter values. With several devices (GPUs, or one
CPU device per core from :func:`mtrlrec.config.use_cpu_cores`) the seed axis
is sharded over them. A seed's numbers do not depend on how many seeds run
beside it or on how many devices, bit for bit: window sums are accumulated per
seed (compensated), never reduced over a batch, whose summation order XLA
picks by shape (``tests/train/test_loop.py``, ``tests/train/test_sharding.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Mapping

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core.agent import Agent, with_hparams
from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_int
from mtrlrec.core.rng import step_keys as derive_step_keys
from mtrlrec.core.types import Transition
from mtrlrec.train import sharding


@flax.struct.dataclass
class LoopCarry:
    """Everything that is carried from one step to the next, for one seed."""

    env_state: Any
    agent_state: Any
    obs: Any
    key: jax.Array
    cumulative: dict[str, jax.Array]
    t: jax.Array


@dataclasses.dataclass
class LoopOutput:
    """Result of :func:`run`.

    Attributes:
      steps: ``[num_logs]`` step count at the end of each log window.
      metrics: name -> ``[num_seeds, num_logs]`` (or ``[H, num_seeds, num_logs]``).
      carry: the final :class:`LoopCarry`, batched like the metrics (padding seeds dropped).
      hparams: the swept values, name -> ``[H]`` (empty without a sweep).
      seconds: wall time of the compiled chunks (excluding the first compile).
      compile_seconds: wall time of the first chunk (compilation included).
    """

    steps: np.ndarray
    metrics: dict[str, np.ndarray]
    carry: Any
    hparams: dict[str, np.ndarray]
    seconds: float = 0.0
    compile_seconds: float = 0.0


@dataclasses.dataclass
class LoopResume:
    """Where to pick up an interrupted run: the carry after ``next_chunk`` chunks.

    ``carry`` may be a restored state dict (``flax.serialization``); it is
    matched against a freshly initialised carry of the same configuration.
    """

    carry: Any
    metrics: dict[str, np.ndarray]
    next_chunk: int


def _scalar_metrics(prefix: str, d: Mapping[str, Any]) -> dict[str, jax.Array]:
    out = {}
    for k, v in d.items():
        if k == "final_observation":
            continue
        v = jnp.asarray(v)
        if v.ndim == 0 and (jnp.issubdtype(v.dtype, jnp.number) or v.dtype == jnp.bool_):
            out[prefix + k] = v.astype(jnp.float32)
    return out


def step_metrics(env: Environment, reward, info, agent_metrics) -> dict[str, jax.Array]:
    """The scalars logged for one step: info entries, reward (per component), ``agent/`` metrics."""
    m = _scalar_metrics("", info)
    reward = jnp.asarray(reward, jnp.float32)
    if reward.ndim == 0:
        m["reward"] = reward
    else:
        for i, name in enumerate(env.reward_names):
            m[f"reward/{name}"] = reward[i]
    m.update(_scalar_metrics("agent/", agent_metrics))
    return m


def _per_episode(name: str) -> bool:
    """Whether metric ``name`` is averaged over the episodes that ended, not the steps."""
    return name.startswith("episode_") and name != "episode_done"


def _episode_weighted(metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Per-episode entries count only where ``episode_done`` (so that their sum
    over a window divided by the episodes ended is their mean)."""
    done = metrics.get("episode_done")
    if done is None:
        return metrics
    return {k: v * done if _per_episode(k) else v for k, v in metrics.items()}


def _kahan_add(sums, x):
    """Compensated summation: ``sums`` maps a name to ``(total, compensation)``."""
    out = {}
    for k, v in x.items():
        total, comp = sums[k]
        y = v - comp
        t = total + y
        out[k] = (t, (t - total) - y)
    return out


def _init_carry(env, agent, env_params, key, hparams) -> LoopCarry:
    k_env, k_agent, k_loop = jax.random.split(key, 3)
    obs, env_state = env.reset(k_env, env_params)
    agent_state = agent.init(k_agent, env.observation_spec(env_params), env.action_spec(env_params))
    agent_state = with_hparams(agent_state, hparams)
    return LoopCarry(env_state, agent_state, obs, k_loop, {}, jnp.int32(0))


def _make_window_fn(env: Environment, agent: Agent, log_every: int):
    """Returns ``window(carry, env_params) -> (carry, window_metrics)``.

    For periodic learners (``agent.learn_every``) the window is a scan over
    blocks of ``learn_every`` steps (``observe`` each step) followed by ``learn``.
    """
    periodic = agent.learn_every is not None
    if periodic and log_every % agent.learn_every:
        raise ConfigError(
            f"log_every={log_every} must be a multiple of the agent's learn_every="
            f"{agent.learn_every} (its training period)."
        )

    def one_step(carry, env_params, window_key, i):
        k_act, k_env, k_upd = derive_step_keys(window_key, i)
        action, act_info = agent.act(k_act, carry.agent_state, carry.obs)
        obs, env_state, reward, terminated, truncated, info = env.step(
            k_env, carry.env_state, action, env_params
        )
        transition = Transition(
            carry.obs, action, reward, obs, terminated, truncated, act_info, info
        )
        if periodic:
            agent_state, agent_metrics = agent.observe(k_upd, carry.agent_state, transition), {}
        else:
            agent_state, agent_metrics = agent.update(k_upd, carry.agent_state, transition)
        metrics = _episode_weighted(step_metrics(env, reward, info, agent_metrics))
        new = carry.replace(env_state=env_state, agent_state=agent_state, obs=obs, t=carry.t + 1)
        return new, metrics

    # A window is a scan over blocks of steps (periodic learners: their training
    # period, then ``learn``). Metrics are summed step by step in the carry, plainly
    # within a block and with Kahan compensation across blocks. Unlike stacking them
    # and reducing (XLA orders a reduction by the batch shape) this gives a seed the
    # same sums in any batch and on any number of devices, within about an ulp of
    # the exact sums, and saves a buffer write per metric and step.
    block_len = agent.learn_every if periodic else choose_num_chunks(log_every, 16)

    def step(state, i):
        carry, env_params, window_key, partial = state
        carry, metrics = one_step(carry, env_params, window_key, i)
        return (carry, env_params, window_key, jax.tree.map(jnp.add, partial, metrics)), None

    def window(carry: LoopCarry, env_params):
        key, window_key = jax.random.split(carry.key)
        carry = carry.replace(key=key)
        shapes = jax.eval_shape(lambda c: one_step(c, env_params, window_key, 0)[1], carry)
        zeros = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)

        def block(state, b):
            # Steps of block b are numbered b·block_len + j within the window; their
            # keys use fold_in data < 3·log_every, so the learn keys start above that.
            carry, sums = state
            (carry, _, _, partial), _ = jax.lax.scan(
                step, (carry, env_params, window_key, zeros),
                b * block_len + jnp.arange(block_len))
            if periodic:
                learn_key = jax.random.fold_in(window_key, 3 * log_every + b)
                carry = carry.replace(agent_state=agent.learn(learn_key, carry.agent_state))
            return (carry, _kahan_add(sums, partial)), None

        sums = {k: (z, z) for k, z in zeros.items()}
        (carry, sums), _ = jax.lax.scan(block, (carry, sums), jnp.arange(log_every // block_len))
        sums = {k: total - comp for k, (total, comp) in sums.items()}
        out = {}
        episodes = sums.get("episode_done")
        for k, v in sums.items():
            if _per_episode(k) and episodes is not None:
                out[k] = jnp.where(episodes > 0, v / jnp.maximum(episodes, 1.0), jnp.nan)
            elif k == "episode_done":
                out["episodes"] = v
            else:
                out[k] = v / log_every
        cumulative = dict(carry.cumulative)
        for k in env.cumulative_metrics:
            if k in sums:
                cumulative[k] = cumulative.get(k, jnp.float32(0.0)) + sums[k]
                out[f"cumulative_{k}"] = cumulative[k]
        return carry.replace(cumulative=cumulative), out

    return window


def _check_sweep(hparams: Mapping[str, Any] | None) -> tuple[dict[str, jnp.ndarray], int]:
    if not hparams:
        return {}, 0
    arrays = {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}
    sizes = {k: a.shape[0] if a.ndim >= 1 else None for k, a in arrays.items()}
    if any(s is None for s in sizes.values()) or len(set(sizes.values())) != 1:
        raise ConfigError(
            "hyperparameter sweep values must be lists with one entry per sweep point, all of "
            f"equal length; got sizes {sizes}."
        )
    return arrays, next(iter(sizes.values()))


def _split_sweep(hp: Mapping[str, jax.Array]):
    env_hp = {k[4:]: v for k, v in hp.items() if k.startswith("env.")}
    agent_hp = {k: v for k, v in hp.items() if not k.startswith("env.")}
    return env_hp, agent_hp


def _override_env_params(env_params, env_hp):
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


def choose_num_chunks(num_logs: int, target: int = 10) -> int:
    """The largest divisor of ``num_logs`` that is <= ``target`` (chunks, or block lengths)."""
    return max(d for d in range(1, min(num_logs, target) + 1) if num_logs % d == 0)


def run(
    env: Environment,
    agent: Agent,
    *,
    num_steps: int,
    num_seeds: int = 1,
    env_params: Any = None,
    env_params_per_seed: bool = False,
    seed: int = 0,
    seed_offset: int = 0,
    log_every: int = 1,
    hparams: Mapping[str, Any] | None = None,
    num_chunks: int | None = None,
    resume: LoopResume | None = None,
    on_chunk: Callable[[int, int, LoopOutput], None] | None = None,
    progress: bool = False,
    desc: str = "run",
    devices: int | None = None,
) -> LoopOutput:
    """Runs ``agent`` on ``env`` for ``num_steps`` steps, for every seed at once.

    Args:
      env: the environment (wrap it in ``EpisodeStatistics`` for episode returns).
      agent: the agent.
      num_steps: steps per seed; a multiple of ``log_every``.
      num_seeds: independent runs, vmapped (and sharded over devices).
      env_params: env params; default ``env.default_params()``.
      env_params_per_seed: if True every leaf of ``env_params`` has a leading
        ``[num_seeds]`` axis (a task per seed, e.g. sampled arm means).
      seed: base PRNG seed.
      seed_offset: index of the first seed (runs seeds ``offset..offset+n-1``).
      log_every: window length over which metrics are averaged.
      hparams: optional sweep, name -> ``[H]`` values; agent hyperparameters by
        name (``epsilon``), env params as ``env.<field>``.
      num_chunks: number of compiled calls the run is split into (progress,
        logging and checkpoints happen between them); default up to 10.
      resume: continue from a :class:`LoopResume` of the same configuration.
      on_chunk: called as ``on_chunk(chunk_index, num_chunks, partial_output)``
        after every chunk (logging, checkpointing).
      progress: show a progress bar with steps/s and ETA.
      desc: progress bar label.
      devices: spread the seeds over at most this many devices (default: all,
        see :func:`mtrlrec.config.use_cpu_cores`); never more than one per
        seed. The numbers do not depend on it.

    Returns:
      A :class:`LoopOutput`.
    """
    num_steps = check_int("num_steps", num_steps, min_value=1)
    num_seeds = check_int("num_seeds (--seeds)", num_seeds, min_value=1)
    log_every = check_int("log_every", log_every, min_value=1)
    if num_steps % log_every:
        raise ConfigError(
            f"num_steps={num_steps} must be a multiple of log_every={log_every}."
        )
    num_logs = num_steps // log_every
    if num_chunks is None:
        num_chunks = choose_num_chunks(num_logs)
    num_chunks = check_int("num_chunks", num_chunks, min_value=1)
    if num_logs % num_chunks:
        raise ConfigError(
            f"num_chunks={num_chunks} must divide the number of log windows {num_logs}."
        )
    windows_per_chunk = num_logs // num_chunks
    env_params = checked_params(env, agent, env_params, env_params_per_seed)
    sweep, num_hp = _check_sweep(hparams)

    devices = sharding.seed_devices(num_seeds, devices)
    padded = sharding.padded_size(num_seeds, devices)
    seed_ids = jnp.arange(seed_offset, seed_offset + padded)
    base = jax.random.PRNGKey(seed)
    keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(seed_ids)
    if env_params_per_seed:
        def pad(a):
            a = jnp.asarray(a)
            if a.shape[0] != num_seeds:
                raise ConfigError(
                    f"per-seed env params need a leading axis of {num_seeds}, got {a.shape}."
                )
            return jnp.concatenate([a, jnp.repeat(a[-1:], padded - num_seeds, 0)], 0)
        env_params = jax.tree.map(pad, env_params)
    params_axis = 0 if env_params_per_seed else None
    init_fn, chunk_fn, window = _compiled(env, agent, log_every, windows_per_chunk, params_axis,
                                          bool(num_hp), devices)
    keys = sharding.shard_along(keys, 0, devices)
    if env_params_per_seed:
        env_params = sharding.shard_along(env_params, 0, devices)

    carry = init_fn(keys, env_params, sweep)
    # The cumulative dict must exist in the carry from the start so the chunk
    # program has a fixed structure: trace one window abstractly to learn its keys.
    carry = _with_cumulative_keys(carry, env, window, env_params, params_axis, num_hp,
                                  devices)
    seed_axis = 1 if num_hp else 0
    collected: dict[str, list[np.ndarray]] = {}
    start_chunk = 0
    if resume is not None:
        carry = _restore_carry(carry, resume.carry, seed_axis, num_seeds)
        collected = {k: [np.asarray(v)] for k, v in resume.metrics.items()}
        start_chunk = int(resume.next_chunk)
        if start_chunk > num_chunks:
            raise ConfigError(
                f"cannot resume at chunk {start_chunk}: this run has {num_chunks} chunks."
            )

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=num_steps, initial=start_chunk * windows_per_chunk * log_every,
                   desc=desc, unit="step", dynamic_ncols=True, leave=True)
    seconds = compile_seconds = 0.0
    out = None
    for c in range(start_chunk, num_chunks):
        t0 = time.perf_counter()
        carry, m = chunk_fn(carry, env_params, sweep)
        m = jax.device_get(m)
        dt = time.perf_counter() - t0
        if c == start_chunk:
            compile_seconds = dt
        else:
            seconds += dt
        for k, v in m.items():
            collected.setdefault(k, []).append(_trim(np.asarray(v), seed_axis, num_seeds))
        if bar is not None:
            bar.update(windows_per_chunk * log_every)
            rate = num_seeds * max(num_hp, 1) * windows_per_chunk * log_every / max(dt, 1e-9)
            bar.set_postfix_str(f"{rate:,.0f} seed·steps/s")
        out = _output(collected, log_every, _real_seeds(carry, seed_axis, num_seeds), sweep,
                      seconds, compile_seconds)
        if on_chunk is not None:
            on_chunk(c, num_chunks, out)
    if bar is not None:
        bar.close()
    if out is None:  # resumed a finished run
        out = _output(collected, log_every, _real_seeds(carry, seed_axis, num_seeds), sweep,
                      0.0, 0.0)
    return out


@functools.lru_cache(maxsize=64)
def _compiled(env, agent, log_every, windows_per_chunk, params_axis, sweep, devices):
    """The jitted init and chunk functions, cached so repeated runs reuse compilations.

    On several devices they are ``shard_map``-ped over the seed axis: every
    device advances its own seeds, and the carry comes out split the way it went
    in, so every chunk runs the one compiled program.
    """
    window = _make_window_fn(env, agent, log_every)

    def one_seed_init(key, params, hp):
        env_hp, agent_hp = _split_sweep(hp)
        params = _override_env_params(params, env_hp)
        return _init_carry(env, agent, params, key, agent_hp)

    def one_seed_chunk(carry, params, hp):
        env_hp, _ = _split_sweep(hp)
        params = _override_env_params(params, env_hp)
        return jax.lax.scan(lambda c, _: window(c, params), carry, None, length=windows_per_chunk)

    init_fn = jax.vmap(one_seed_init, in_axes=(0, params_axis, None))
    chunk_fn = jax.vmap(one_seed_chunk, in_axes=(0, params_axis, None))
    if sweep:
        init_fn = jax.vmap(init_fn, in_axes=(None, None, 0))
        chunk_fn = jax.vmap(chunk_fn, in_axes=(0, None, 0))
    seed_axis = 1 if sweep else 0
    if devices > 1:
        # Each device runs the program on its own seeds, with no communication:
        # under plain GSPMD a while loop over the batch (the Gamma sampler's
        # retries) synchronised the devices at every iteration.
        seeds = sharding.spec_along(seed_axis)
        params_spec = sharding.spec_along(0) if params_axis == 0 else sharding.P()
        mesh = sharding.seed_mesh(devices)
        init_fn = jax.shard_map(init_fn, mesh=mesh, in_specs=(sharding.spec_along(0), params_spec,
                                                              sharding.P()),
                                out_specs=seeds, check_vma=False)
        chunk_fn = jax.shard_map(chunk_fn, mesh=mesh, in_specs=(seeds, params_spec, sharding.P()),
                                 out_specs=(seeds, seeds), check_vma=False)
    return jax.jit(init_fn), jax.jit(chunk_fn, donate_argnums=(0,)), window


def _with_cumulative_keys(carry, env, window, env_params, params_axis, num_hp, devices):
    def probe(c, p):
        return window(c, p)[0].cumulative

    fn = jax.vmap(probe, in_axes=(0, params_axis))
    if num_hp:
        fn = jax.vmap(fn, in_axes=(0, None))
    shapes = jax.eval_shape(fn, carry, env_params)
    zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    # Placed like the seeds, so that a restored carry (put leaf by leaf on the
    # template's shardings) is not half on one device and half spread.
    return carry.replace(cumulative=sharding.shard_along(zeros, 1 if num_hp else 0, devices))


def _restore_carry(template, restored, seed_axis: int, num_seeds: int):
    """``template`` with its first ``num_seeds`` seeds taken from ``restored``.

    Checkpoints hold the real seeds only, so a run resumes on any number of
    devices; padding seeds (see :mod:`mtrlrec.train.sharding`) keep the
    template's fresh values, which no real seed reads.
    """
    from flax import serialization

    if not isinstance(restored, dict):
        restored = serialization.to_state_dict(restored)
    host_template = jax.device_get(template)
    try:
        host = serialization.from_state_dict(host_template, restored)
    except (KeyError, ValueError, TypeError) as e:
        raise ConfigError(
            f"the checkpoint does not match this configuration (different agent, env or seeds?): {e}"
        ) from None

    def expected(t):
        shape = list(np.shape(t))
        shape[seed_axis] = num_seeds
        return tuple(shape)

    shapes_ok = jax.tree.map(lambda t, h: np.shape(h) in (np.shape(t), expected(t)),
                             host_template, host)
    if not all(jax.tree.leaves(shapes_ok)):
        raise ConfigError("the checkpoint's array shapes differ from this configuration.")

    def place(t, h):
        full = np.array(t)
        h = np.asarray(h, dtype=full.dtype)
        index = [slice(None)] * full.ndim
        index[seed_axis] = slice(0, h.shape[seed_axis])
        full[tuple(index)] = h
        return jax.device_put(full, t.sharding)

    return jax.tree.map(place, template, host)


def _real_seeds(carry, seed_axis: int, num_seeds: int):
    """The carry without its padding seeds (a no-op when there are none)."""
    def take(a):
        if a.shape[seed_axis] == num_seeds:
            return a
        return jax.lax.slice_in_dim(a, 0, num_seeds, axis=seed_axis)

    return jax.tree.map(take, carry)


def _trim(a: np.ndarray, seed_axis: int, num_seeds: int) -> np.ndarray:
    """Drops the padding seeds of a chunk's metrics ``[..., S_padded, W]``."""
    return np.take(a, np.arange(num_seeds), axis=seed_axis)


def _output(collected, log_every, carry, sweep, seconds, compile_seconds):
    metrics = {k: np.concatenate(v, axis=-1) for k, v in collected.items()}
    num_logs = next(iter(metrics.values())).shape[-1] if metrics else 0
    return LoopOutput(
        steps=(np.arange(1, num_logs + 1) * log_every).astype(np.int64),
        metrics=metrics,
        carry=carry,
        hparams={k: np.asarray(v) for k, v in sweep.items()},
        seconds=seconds,
        compile_seconds=compile_seconds,
    )
