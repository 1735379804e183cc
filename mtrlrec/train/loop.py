r"""The online engine: environment and learner in one ``jit(vmap(lax.scan))``.

``run`` compiles one program that advances every seed (and, optionally, every
point of a hyperparameter sweep) by a chunk of steps::

    chunk = jit(vmap_hparams(vmap_seeds(scan_windows(scan_blocks(scan_steps(step))))))

and calls it repeatedly, so that a long run reports progress, logs and
checkpoints between chunks while staying one compiled program. The step is
the learner contract of :mod:`mtrlrec.core.agent` (``act``, ``observe`` every
step, ``learn`` every ``agent.learn_every`` steps) and is built in
:mod:`mtrlrec.train.step`, with ``num_envs`` users per learner stepped in a
``vmap``. Metrics come back as NumPy arrays shaped ``[num_seeds, num_logs]``
(``[num_hparams, num_seeds, num_logs]`` when sweeping), one entry per window
of ``log_every`` steps, averaged over the window and the users:

* every ``info`` entry (small vectors per component), the reward (``reward``
  or ``reward/<task>``), and ``agent/<name>`` for what ``learn`` returns;
* keys starting with ``episode_`` averaged over the episodes that ended in the
  window only (NaN when none did), plus ``episodes``: the number that ended;
* ``cumulative_<key>`` for each key in ``env.cumulative_metrics``: the running
  sum since step 0 at the end of the window (e.g. cumulative regret).

Train and evaluate phases (Dopamine's iterations): with ``evaluation``, every
``evaluation.every`` steps the learner is evaluated on fresh users with
learning off and ``act(..., greedy=True)`` for ``evaluation.episodes``
episodes per user; those metrics come back as ``eval_metrics`` (``[..., num_evals]``).
``num_steps = 0`` evaluates the initial (or restored) learner only.

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

import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core.agent import Agent, PerUser
from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_int
from mtrlrec.train import sharding
from mtrlrec.train.carry import place_agent_state, real_seeds, restore_carry, trim
from mtrlrec.train.guards import Diverged, Interrupted, check_finite, interrupt_flag
from mtrlrec.train.sweep import check_sweep, checked_params, override_env_params, split_sweep
from mtrlrec.train.step import (LoopCarry, choose_divisor, init_carry, make_eval_fn,
                                make_window_fn, step_metrics)

__all__ = ["Diverged", "Evaluation", "Interrupted", "LoopCarry", "LoopOutput", "LoopResume",
           "checked_params", "choose_num_chunks", "run", "step_metrics"]

MAX_STEPS = 2**31 - 1  # the int32 step counters of the loop and of the agents
EVAL_STREAM = 0x5EED_E7A1  # fold_in data of the evaluation users' keys


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """An evaluation phase: fresh users, learning off, the greedy policy.

    Attributes:
      every: evaluate after every this many training steps (a multiple of
        ``log_every`` dividing ``num_steps``); None with ``num_steps = 0``.
      episodes: episodes per user (episodic environments).
      max_steps: step cap per user (episodic), or the evaluation horizon
        (non-episodic environments such as bandits); RecSim's
        ``max_steps_per_episode`` is 27,000.
      num_users: fresh users evaluated per seed; None: as many as the training
        users (``num_envs``). A learner trained on one user stream (DQN as in
        Dopamine) is evaluated on 5,000 users this way (SlateQ §7).
    """

    every: int | None = None
    episodes: int = 1
    max_steps: int = 27_000
    num_users: int | None = None

@dataclasses.dataclass
class LoopOutput:
    """Result of :func:`run`.

    Attributes:
      steps: ``[num_logs]`` step count at the end of each log window.
      metrics: name -> ``[num_seeds, num_logs]`` (or ``[H, num_seeds, num_logs]``).
      carry: the final :class:`LoopCarry`, batched like the metrics (padding seeds dropped).
      hparams: the swept values, name -> ``[H]`` (empty without a sweep).
      seconds: wall time of the compiled chunks (compilation excluded).
      compile_seconds: wall time of compiling the chunk program.
      eval_steps: ``[num_evals]`` training steps at each evaluation.
      eval_metrics: name -> ``[num_seeds, num_evals]`` (or ``[H, num_seeds, num_evals]``).
      eval_users: the last evaluation per user, name -> ``[num_seeds, num_envs]``
        (or ``[H, num_seeds, num_envs]``); see :func:`mtrlrec.train.step.make_eval_fn`.
    """

    steps: np.ndarray
    metrics: dict[str, np.ndarray]
    carry: Any
    hparams: dict[str, np.ndarray]
    seconds: float = 0.0
    compile_seconds: float = 0.0
    eval_steps: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    eval_metrics: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    eval_users: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class LoopResume:
    """Where to pick up an interrupted run: the carry after ``next_window`` log windows.

    ``carry`` may be a restored state dict (``flax.serialization``); it is
    matched against a freshly initialised carry of the same configuration.
    ``metrics`` holds the windows before ``next_window``; ``eval_metrics`` the
    evaluations of the chunks finished before it.
    """

    carry: Any
    metrics: dict[str, np.ndarray]
    next_window: int
    eval_metrics: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


def choose_num_chunks(num_logs: int, target: int = 10) -> int:
    """The largest divisor of ``num_logs`` that is <= ``target``."""
    return choose_divisor(num_logs, target)


def run(
    env: Environment,
    agent: Agent,
    *,
    num_steps: int,
    num_seeds: int = 1,
    num_envs: int = 1,
    env_params: Any = None,
    env_params_per_seed: bool = False,
    seed: int = 0,
    seed_offset: int = 0,
    log_every: int = 1,
    hparams: Mapping[str, Any] | None = None,
    evaluation: Evaluation | None = None,
    num_chunks: int | None = None,
    resume: LoopResume | None = None,
    init_agent_state: Any = None,
    on_chunk: Callable[[int, int, LoopOutput], None] | None = None,
    on_interrupt: Callable[[LoopOutput], None] | None = None,
    progress: bool = False,
    desc: str = "run",
    devices: int | None = None,
    slice_seconds: float = 1.0,
    check_metrics: Callable[[list[str]], None] | None = None,
) -> LoopOutput:
    """Runs ``agent`` on ``env`` for ``num_steps`` steps, for every seed at once.

    Args:
      env: the environment (wrap it in ``EpisodeStatistics`` for episode returns).
      agent: the learner.
      num_steps: training steps per seed; a multiple of ``log_every``; 0 with an
        ``evaluation`` evaluates the initial (or ``init_agent_state``) learner.
      num_seeds: independent learners, vmapped (and sharded over devices).
      num_envs: users per learner, stepped in a ``vmap`` and handed to the
        learner as a batch; agents not written for batches (``batched``) are
        wrapped in :class:`~mtrlrec.core.agent.PerUser`.
      env_params: env params; default ``env.default_params()``.
      env_params_per_seed: if True every leaf of ``env_params`` has a leading
        ``[num_seeds]`` axis (a task per seed, e.g. sampled arm means).
      seed: base PRNG seed.
      seed_offset: index of the first seed (runs seeds ``offset..offset+n-1``).
      log_every: window length over which metrics are averaged.
      hparams: optional sweep, name -> ``[H]`` values; agent hyperparameters by
        name (``epsilon``, ``learning_rate``), env params as ``env.<field>``.
      evaluation: an optional :class:`Evaluation` phase.
      num_chunks: number of compiled calls the run is split into (progress,
        logging and checkpoints happen between them); default up to 10, and
        one per evaluation period with ``evaluation``.
      resume: continue from a :class:`LoopResume` of the same configuration.
      init_agent_state: a learner state (e.g. restored from a checkpoint or an
        export) that replaces the initial one of every seed; batched like the
        carry's (``[num_seeds, ...]``) or one state for all seeds.
      on_chunk: called as ``on_chunk(chunk_index, num_chunks, partial_output)``
        after every chunk (logging, checkpointing).
      on_interrupt: called with the output up to the last finished window when
        Ctrl-C stops the run (to save a checkpoint there); then :class:`Interrupted`
        is raised. A chunk runs as calls of about ``slice_seconds`` each (the
        first of one window, the next sized from its speed), so Ctrl-C takes
        effect within about that time, and the progress bar moves from the
        first second. The numbers do not depend on how calls are sliced.
      progress: show a progress bar with steps/s and ETA.
      desc: progress bar label.
      devices: spread the seeds over at most this many devices (default: all,
        see :func:`mtrlrec.config.use_cpu_cores`); never more than one per
        seed. The numbers do not depend on it.
      check_metrics: called with the names of the metrics the run will log (those
        of ``LoopOutput.metrics``), found by tracing one window before anything
        compiles, e.g. to refuse a ``primary`` metric the run does not have.

    Returns:
      A :class:`LoopOutput`.

    Raises:
      Diverged: a metric of some seed became NaN or infinite (``episode_*``
        metrics are NaN in windows without a finished episode and are exempt
        from NaN, not from infinity). The message names the seeds and the first
        step; ``on_chunk`` is not called for the diverged chunk, so the last
        checkpoint written is the last good one.
    """
    # Ctrl-C sets a flag from here on (also during set-up and compilation); the run
    # stops after the call in flight, with the last finished window handed on.
    with interrupt_flag() as interrupted:
        num_steps = check_int("num_steps", num_steps, min_value=0 if evaluation else 1)
        if num_steps > MAX_STEPS:
            raise ConfigError(
                f"num_steps={num_steps:,} is more than 2^31 - 1 steps per seed, the range of the "
                f"int32 step counters; split the run or use more seeds (--seeds) instead.")
        num_seeds = check_int("num_seeds (--seeds)", num_seeds, min_value=1)
        num_envs = check_int("num_envs", num_envs, min_value=1)
        log_every = check_int("log_every", log_every, min_value=1)
        if num_steps % log_every:
            raise ConfigError(
                f"num_steps={num_steps} must be a multiple of log_every={log_every}."
            )
        if num_steps == 0:  # evaluation only: no window runs, any valid length will do
            log_every = agent.learn_every
        num_logs = num_steps // log_every
        if evaluation is not None:
            num_chunks = _eval_chunks(evaluation, num_steps, log_every, num_chunks)
        elif num_chunks is None:
            num_chunks = choose_num_chunks(num_logs)
        num_chunks = check_int("num_chunks", num_chunks, min_value=1)
        if num_logs % num_chunks:
            raise ConfigError(
                f"num_chunks={num_chunks} must divide the number of log windows {num_logs}."
            )
        windows_per_chunk = num_logs // num_chunks
        agent.check_num_envs(num_envs)
        if agent.max_exact_steps is not None and num_steps * num_envs > agent.max_exact_steps:
            raise ConfigError(
                f"{agent.name} keeps float32 running statistics, exact for "
                f"{agent.max_exact_steps:,} pulls; this run makes {num_steps * num_envs:,} per "
                "learner (num_steps x num_envs). Shorten it, or use an agent with compensated "
                "statistics (ε-greedy, UCB1, KL-UCB, Softmax, Thompson sampling).")

        if num_envs > 1 and not agent.batched:
            agent = PerUser(agent)
        env_params = checked_params(env, agent, env_params, env_params_per_seed)
        sweep, num_hp = check_sweep(hparams, agent, env, env_params, env_params_per_seed)

        devices = sharding.seed_devices(num_seeds, devices)
        padded = sharding.padded_size(num_seeds, devices)
        if sharding.multi_process() and padded != num_seeds:
            raise ConfigError(
                f"--seeds {num_seeds} cannot be split evenly over the {devices} devices of the "
                f"{sharding.num_processes()} processes (MTRLREC_NUM_PROCESSES / --num-processes): "
                f"use a multiple of {devices}, such as {padded}.")
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
        programs = _compiled(env, agent, log_every, max(windows_per_chunk, 1), params_axis,
                             bool(num_hp), devices, num_envs, evaluation)
        keys = sharding.shard_along(keys, 0, devices)
        if env_params_per_seed:
            env_params = sharding.shard_along(env_params, 0, devices)
        else:  # on several processes, inputs shared by all seeds are placed on every device
            env_params = sharding.replicate(env_params, devices)
        host_sweep, sweep = sweep, sharding.replicate(sweep, devices)

        if check_metrics is not None and num_steps:  # traced, before anything compiles
            abstract = jax.eval_shape(programs.init, keys, env_params, sweep)
            check_metrics(sorted(_window_metric_names(abstract, programs.window, env_params,
                                                      params_axis, num_hp)))
        carry = programs.init(keys, env_params, sweep)
        # The cumulative dict must exist in the carry from the start so the chunk
        # program has a fixed structure: trace one window abstractly to learn its keys.
        carry = _with_cumulative_keys(carry, env, programs.window, env_params, params_axis, num_hp,
                                      devices)
        seed_axis = 1 if num_hp else 0
        if init_agent_state is not None:
            carry = carry.replace(agent_state=place_agent_state(
                carry.agent_state, init_agent_state, seed_axis, num_seeds))
        collected: dict[str, list[np.ndarray]] = {}
        evals: dict[str, list[np.ndarray]] = {}
        start_window = 0
        if resume is not None:
            carry = restore_carry(carry, resume.carry, seed_axis, num_seeds)
            collected = {k: [np.asarray(v)] for k, v in resume.metrics.items()}
            evals = {k: [np.asarray(v)] for k, v in resume.eval_metrics.items()}
            start_window = int(resume.next_window)
            if start_window > num_logs:
                raise ConfigError(
                    f"cannot resume after window {start_window}: this run has {num_logs} windows."
                )
        eval_keys = jax.vmap(lambda k: jax.random.fold_in(k, EVAL_STREAM))(keys)

        last_users: dict[str, np.ndarray] = {}

        def evaluate():
            m, users = sharding.to_host(programs.evaluate(carry.agent_state, eval_keys,
                                                          env_params, sweep))
            for k, v in m.items():
                evals.setdefault(f"eval/{k}", []).append(
                    trim(np.asarray(v)[..., None], seed_axis, num_seeds))
            last_users.clear()
            last_users.update({k: trim(np.asarray(v), seed_axis, num_seeds)
                               for k, v in users.items()})

        bar = None
        if progress and num_steps:
            from tqdm.auto import tqdm

            bar = tqdm(total=num_steps, initial=start_window * log_every, desc=desc, unit="step",
                       dynamic_ncols=True, leave=True)
        seconds = compile_seconds = 0.0
        out = None
        if num_steps == 0:
            evaluate()
            num_chunks = 0
        chunk = None
        if start_window < num_logs:
            # Compiled ahead of the first call (and kept for later runs of the same
            # shapes), so that ``seconds`` times the calls and ``compile_seconds``
            # compilation alone.
            signature = jax.tree.map(lambda a: (np.shape(a), str(getattr(a, "dtype", type(a)))),
                                     (carry, env_params, sweep))
            signature = (jax.tree.structure(signature), tuple(jax.tree.leaves(signature)))
            chunk = programs.executables.get(signature)
            if chunk is None:
                t0 = time.perf_counter()
                chunk = programs.chunk.lower(carry, env_params, sweep,
                                             np.int32(windows_per_chunk)).compile()
                compile_seconds = time.perf_counter() - t0
                programs.executables[signature] = chunk
        users_per_step = num_seeds * max(num_hp, 1) * num_envs
        window = start_window
        n = 1  # the first call measures the speed
        while window < num_logs:
            c = window // windows_per_chunk
            n = min(n, (c + 1) * windows_per_chunk - window)
            t0 = time.perf_counter()
            carry, m = chunk(carry, env_params, sweep, np.int32(n))
            m = sharding.to_host(m)
            dt = time.perf_counter() - t0
            seconds += dt
            m = {k: trim(np.asarray(v)[..., :n], seed_axis, num_seeds) for k, v in m.items()}
            check_finite(m, window, log_every, seed_axis)
            for k, v in m.items():
                collected.setdefault(k, []).append(v)
            window += n
            if bar is not None:
                bar.update(n * log_every)
                bar.set_postfix_str(f"{users_per_step * n * log_every / max(dt, 1e-9):,.0f} "
                                    "user·steps/s")
            chunk_done = window % windows_per_chunk == 0
            # The next call: about slice_seconds of work (a scan length chosen at
            # run time; the compiled loop takes it as an argument). On several
            # processes process 0's choice is everyone's, and Ctrl-C on any stops all.
            n = int(max(1, min(windows_per_chunk, slice_seconds * n / max(dt, 1e-9))))
            n, stop = sharding.agree(n, interrupted())
            if chunk_done and evaluation is not None:
                evaluate()
            if chunk_done or stop:
                out = _output(collected, evals, last_users, log_every,
                              real_seeds(carry, seed_axis, num_seeds), host_sweep, seconds,
                              compile_seconds, evaluation)
            if chunk_done and on_chunk is not None:
                on_chunk(c, num_chunks, out)
            if stop:
                if bar is not None:
                    bar.close()
                if on_interrupt is not None and not chunk_done:
                    on_interrupt(out)
                raise Interrupted(f"interrupted after step {window * log_every}")
        if bar is not None:
            bar.close()
        if out is None:  # evaluation only, or resumed a finished run
            out = _output(collected, evals, last_users, log_every,
                          real_seeds(carry, seed_axis, num_seeds), host_sweep, 0.0, 0.0,
                          evaluation)
        if interrupted():  # Ctrl-C during set-up or an evaluation-only run
            raise Interrupted("interrupted")
        return out


def _eval_chunks(evaluation: Evaluation, num_steps: int, log_every: int,
                 num_chunks: int | None) -> int:
    """Chunks of a run with evaluation: one per evaluation period."""
    check_int("Evaluation.episodes", evaluation.episodes, min_value=1)
    check_int("Evaluation.max_steps", evaluation.max_steps, min_value=1)
    if evaluation.num_users is not None:
        check_int("Evaluation.num_users", evaluation.num_users, min_value=1)
    if num_steps == 0:
        return 1
    if evaluation.every is None:
        raise ConfigError("an evaluation phase during training needs its period "
                          "(OnlineRunner.eval_every).")
    every = check_int("eval_every", evaluation.every, min_value=1)
    if every % log_every or num_steps % every:
        raise ConfigError(
            f"eval_every={every} must be a multiple of log_every={log_every} and divide "
            f"num_steps={num_steps}.")
    if num_chunks is not None and num_chunks != num_steps // every:
        raise ConfigError(
            f"num_chunks={num_chunks} must be num_steps / eval_every = {num_steps // every} "
            "with an evaluation phase (one compiled chunk per evaluation period).")
    return num_steps // every


@dataclasses.dataclass(frozen=True)
class _Programs:
    init: Callable
    chunk: Callable
    evaluate: Callable | None
    window: Callable
    executables: dict = dataclasses.field(default_factory=dict)  # compiled chunks by input shapes


@functools.lru_cache(maxsize=64)
def _compiled(env, agent, log_every, windows_per_chunk, params_axis, sweep, devices, num_envs,
              evaluation):
    """The jitted init, chunk and evaluation functions, cached so repeated runs
    reuse compilations.

    On several devices they are ``shard_map``-ped over the seed axis: every
    device advances its own seeds, and the carry comes out split the way it went
    in, so every chunk runs the one compiled program.
    """
    window = make_window_fn(env, agent, log_every, num_envs)
    evaluate = None
    if evaluation is not None:
        users = evaluation.num_users or num_envs
        # The evaluation batch may differ from the training batch: serve it with the
        # unwrapped learner, or with PerUser when it is not written for batches.
        base = agent.agent if isinstance(agent, PerUser) else agent
        eval_agent = PerUser(base) if users > 1 and not base.batched else base
        evaluate = make_eval_fn(env, eval_agent, episodes=evaluation.episodes,
                                max_steps=evaluation.max_steps, num_envs=users)

    def params_for(params, hp):
        env_hp, _ = split_sweep(hp)
        return override_env_params(params, env_hp)

    def one_seed_init(key, params, hp):
        _, agent_hp = split_sweep(hp)
        return init_carry(env, agent, params_for(params, hp), key, agent_hp, num_envs)

    def one_seed_chunk(carry, params, hp, n):
        # ``n`` (<= windows_per_chunk) windows, the metrics written into a buffer of
        # windows_per_chunk: one compiled program serves calls of any length.
        params = params_for(params, hp)
        shapes = jax.eval_shape(lambda c: window(c, params)[1], carry)
        buf = jax.tree.map(lambda a: jnp.zeros((windows_per_chunk,) + a.shape, a.dtype), shapes)

        def body(i, state):
            c, buf = state
            c, m = window(c, params)
            buf = jax.tree.map(lambda b, x: jax.lax.dynamic_update_index_in_dim(b, x, i, 0),
                               buf, m)
            return c, buf

        return jax.lax.fori_loop(0, n, body, (carry, buf))

    def one_seed_eval(agent_state, key, params, hp):
        return evaluate(agent_state, key, params_for(params, hp))

    init_fn = jax.vmap(one_seed_init, in_axes=(0, params_axis, None))
    chunk_fn = jax.vmap(one_seed_chunk, in_axes=(0, params_axis, None, None))
    eval_fn = jax.vmap(one_seed_eval, in_axes=(0, 0, params_axis, None))
    if sweep:
        init_fn = jax.vmap(init_fn, in_axes=(None, None, 0))
        chunk_fn = jax.vmap(chunk_fn, in_axes=(0, None, 0, None))
        eval_fn = jax.vmap(eval_fn, in_axes=(0, None, None, 0))
    seed_axis = 1 if sweep else 0
    if devices > 1:
        # Each device runs the program on its own seeds, with no communication:
        # under plain GSPMD a while loop over the batch (the Gamma sampler's
        # retries) synchronised the devices at every iteration.
        seeds = sharding.spec_along(seed_axis)
        keys = sharding.spec_along(0)
        params_spec = keys if params_axis == 0 else sharding.P()
        mesh = sharding.seed_mesh(devices)
        init_fn = jax.shard_map(init_fn, mesh=mesh, in_specs=(keys, params_spec, sharding.P()),
                                out_specs=seeds, check_vma=False)
        chunk_fn = jax.shard_map(chunk_fn, mesh=mesh,
                                 in_specs=(seeds, params_spec, sharding.P(), sharding.P()),
                                 out_specs=(seeds, seeds), check_vma=False)
        eval_fn = jax.shard_map(eval_fn, mesh=mesh,
                                in_specs=(seeds, keys, params_spec, sharding.P()),
                                out_specs=seeds, check_vma=False)
    return _Programs(jax.jit(init_fn), jax.jit(chunk_fn, donate_argnums=(0,)),
                     jax.jit(eval_fn) if evaluate is not None else None, window)


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


def _window_metric_names(carry, window, env_params, params_axis, num_hp):
    """The metric names one window logs (traced abstractly: nothing compiles)."""
    fn = jax.vmap(lambda c, p: window(c, p)[1], in_axes=(0, params_axis))
    if num_hp:
        fn = jax.vmap(fn, in_axes=(0, None))
    return jax.eval_shape(fn, carry, env_params).keys()


def _output(collected, evals, eval_users, log_every, carry, sweep, seconds, compile_seconds,
            evaluation):
    metrics = {k: np.concatenate(v, axis=-1) for k, v in collected.items()}
    num_logs = next(iter(metrics.values())).shape[-1] if metrics else 0
    eval_metrics = {k: np.concatenate(v, axis=-1) for k, v in evals.items()}
    num_evals = next(iter(eval_metrics.values())).shape[-1] if eval_metrics else 0
    every = evaluation.every if evaluation is not None and evaluation.every else 0
    return LoopOutput(
        steps=(np.arange(1, num_logs + 1) * log_every).astype(np.int64),
        metrics=metrics,
        carry=carry,
        hparams={k: np.asarray(v) for k, v in sweep.items()},
        seconds=seconds,
        compile_seconds=compile_seconds,
        eval_steps=(np.arange(1, num_evals + 1) * every).astype(np.int64) if every
        else np.zeros(num_evals, np.int64),
        eval_metrics=eval_metrics,
        eval_users=dict(eval_users),
    )
