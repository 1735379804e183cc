"""``OnlineRunner``: an environment and a learner on the one engine, as an experiment.

Gin::

    Experiment.runner = @OnlineRunner()
    OnlineRunner.env = %ENV                    # bound by a gin/envs fragment
    OnlineRunner.agent = %AGENT                # bound by a gin/agents fragment
    OnlineRunner.num_steps = 10_000
    OnlineRunner.log_every = 100
    OnlineRunner.num_envs = 1                  # users per learner
    OnlineRunner.hparams = {'epsilon': [0.01, 0.1, 0.2]}   # optional sweep, one compiled call
    OnlineRunner.eval_every = 1_000            # optional train/evaluate iterations
    OnlineRunner.summary = @regret_summary     # optional paper-specific summary

Curves go to TensorBoard/JSONL after every chunk (``train`` metrics, and
``eval/...`` after each evaluation; mean and std over seeds); a checkpoint of
the whole loop carry is written after every chunk, and ``--resume`` continues
from the latest one to the same final numbers. ``num_steps = 0`` with
``eval_episodes`` evaluates the initial learner, or the one in
``init_from`` (a run directory or checkpoint file), without training.
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable, Mapping, Sequence

import gin
import jax
import numpy as np

from mtrlrec.core.agent import Agent
from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_int
from mtrlrec.core.wrappers import EpisodeStatistics, Trials
from mtrlrec.train import checkpoint as ckpt
from mtrlrec.train import loop
from mtrlrec.train.result import Result, RunContext


def sweep_labels(hparams: Mapping[str, np.ndarray]) -> list[str]:
    """``['epsilon=0.01', ...]`` for each sweep point."""
    if not hparams:
        return []
    n = len(next(iter(hparams.values())))

    def fmt(k, v, i):
        v = np.asarray(v)
        return f"{k}={float(v[i]):g}" if v.ndim == 1 else f"{k}#{i}"

    return [",".join(fmt(k, v, i) for k, v in hparams.items()) for i in range(n)]


def final_metrics(output: loop.LoopOutput, tail_fraction: float = 0.1) -> dict[str, np.ndarray]:
    """Per-seed summary values of a loop output.

    * ``<m>``: value in the last window (for ``episode_*``: mean over the last
      ``tail_fraction`` of windows, ignoring windows in which no episode ended);
    * ``avg/<m>``: mean over all windows (e.g. average reward, fraction optimal).
    """
    out = {}
    num_logs = output.steps.shape[0]
    tail = max(1, int(round(num_logs * tail_fraction)))
    for k, v in output.metrics.items():
        if k.startswith("episode_"):
            with np.errstate(all="ignore"):
                out[k] = np.nanmean(v[..., -tail:], axis=-1)
                out[f"avg/{k}"] = np.nanmean(v, axis=-1)
        elif k.startswith("cumulative_") or k == "episodes":
            out[k] = v[..., -1] if k != "episodes" else v.sum(-1)
        else:
            out[k] = v[..., -1]
            out[f"avg/{k}"] = v.mean(-1)
    return out


@gin.configurable
class OnlineRunner:
    """Runs ``agent`` on ``env`` with :func:`mtrlrec.train.loop.run`.

    Args:
      env: the environment instance (``@BernoulliBandit()`` in Gin).
      agent: the agent instance.
      num_steps: steps per seed (a multiple of ``log_every``).
      log_every: window over which curves are averaged.
      hparams: optional sweep ``{name: [values]}`` (agent hyperparameters by
        name, env params as ``'env.<field>'``), run as one compiled call.
      wrappers: environment wrappers applied in order, as Gin class references
        (``[@TimeLimit]``); episodic envs get :class:`EpisodeStatistics` last.
      task_sampler: optional ``sampler(key) -> env params``, or a task distribution
        with ``sample(key, num)`` (``@BanditTaskDistribution()``); each seed then
        runs on its own task (e.g. arm means drawn from a prior).
      primary: the main curve; default ``cumulative_regret`` if the env reports
        regret, else ``episode_return`` for episodic envs, else ``reward``.
      num_chunks: compiled calls the run is split into (progress, logs,
        checkpoints between them); default up to 10.
      checkpoint_every: save a checkpoint every this many chunks (0: never).
      num_envs: users per learner, stepped together and handed to the learner
        as a batch (metrics are averaged over them).
      eval_every: evaluate every this many training steps on fresh users with
        learning off (greedy policy); None: no evaluation phase.
      eval_episodes: episodes per user in an evaluation (episodic envs).
      eval_max_steps: step cap per evaluated user, or the evaluation horizon of
        non-episodic envs (bandits).
      eval_users: fresh users per seed in an evaluation; None: ``num_envs``
        (e.g. train on one user stream, evaluate on 5,000 users).
      trials: optional ``@Trials`` wrapper class (meta-RL): tasks sampled per trial.
      init_from: start every seed's learner from this run directory's latest
        checkpoint (or a checkpoint file), e.g. to evaluate a trained agent.
      summary: optional ``summary(output, env) -> Result`` (a table's own numbers,
        :mod:`mtrlrec.runners.summaries`); default: final and average of every metric.
    """

    def __init__(
        self,
        env: Environment = gin.REQUIRED,
        agent: Agent = gin.REQUIRED,
        num_steps: int = 1000,
        log_every: int = 10,
        hparams: Mapping[str, Sequence[float]] | None = None,
        wrappers: Sequence[Callable[[Environment], Environment]] = (),
        task_sampler: Callable[[jax.Array], Any] | None = None,
        primary: str | None = None,
        num_chunks: int | None = None,
        checkpoint_every: int = 1,
        num_envs: int = 1,
        eval_every: int | None = None,
        eval_episodes: int | None = None,
        eval_max_steps: int = 27_000,
        eval_users: int | None = None,
        trials: Callable[[Environment], Environment] | None = None,
        init_from: str | None = None,
        summary: Callable[[loop.LoopOutput, Environment], Result] | None = None,
    ):
        if not isinstance(env, Environment):
            raise ConfigError(
                f"OnlineRunner.env must be an environment instance (e.g. @BernoulliBandit()), "
                f"got {_describe(env)}."
            )
        if not isinstance(agent, Agent):
            raise ConfigError(
                f"OnlineRunner.agent must be an agent instance (e.g. @EpsilonGreedy()), "
                f"got {_describe(agent)}."
            )
        for w in wrappers:
            env = w(env)
        if env.episodic and not _has_wrapper(env, EpisodeStatistics):
            env = EpisodeStatistics(env)
        if trials is not None:  # outermost: episodes end inside a trial, tasks change at its end
            env = trials(env)
            if not isinstance(env, Trials):
                raise ConfigError(f"OnlineRunner.trials must be @Trials, got {trials!r}.")
        self.env = env
        self.agent = agent
        self.num_steps = check_int("OnlineRunner.num_steps", num_steps, min_value=0)
        if self.num_steps > loop.MAX_STEPS:
            raise ConfigError(
                f"OnlineRunner.num_steps={self.num_steps:,} is more than 2^31 - 1 steps per seed, "
                "the range of the int32 step counters; use more seeds (--seeds) or shorter runs.")
        self.log_every = check_int("OnlineRunner.log_every", log_every, min_value=1)
        self.num_envs = check_int("OnlineRunner.num_envs", num_envs, min_value=1)
        self.evaluation = None
        if eval_users is not None:
            eval_users = check_int("OnlineRunner.eval_users", eval_users, min_value=1)
        if eval_every is not None or eval_episodes is not None or self.num_steps == 0:
            if eval_every is not None:
                eval_every = check_int("OnlineRunner.eval_every", eval_every, min_value=1)
            episodes = check_int("OnlineRunner.eval_episodes",
                                 1 if eval_episodes is None else eval_episodes, min_value=1)
            self.evaluation = loop.Evaluation(
                eval_every, episodes,
                check_int("OnlineRunner.eval_max_steps", eval_max_steps, min_value=1),
                eval_users)
            if not agent.has_greedy:
                raise ConfigError(
                    f"OnlineRunner.eval_every/eval_episodes: {agent.name} has no greedy "
                    "(evaluation) mode, so it cannot be evaluated with learning off.")
        if summary is not None and not callable(summary):
            raise ConfigError(f"OnlineRunner.summary must be a function such as "
                              f"@regret_summary, got {summary!r}.")
        self.summary = summary
        if summary is not None and hasattr(summary, "check_env"):
            summary.check_env(self.env)
        if init_from is not None and not pathlib.Path(init_from).exists():
            raise ConfigError(f"OnlineRunner.init_from={init_from!r}: no such run directory or "
                              "checkpoint file.")
        self.init_from = init_from
        if self.num_steps % self.log_every:
            raise ConfigError(
                f"OnlineRunner.num_steps={self.num_steps} must be a multiple of "
                f"OnlineRunner.log_every={self.log_every}."
            )
        if hparams is not None and not isinstance(hparams, Mapping):
            raise ConfigError(
                f"OnlineRunner.hparams must be a dict {{name: [values]}}, got {hparams!r}.")
        # Every swept value gets the check a single binding gets, before anything compiles.
        sweep, _ = loop.check_sweep(hparams, agent, self.env, self.env.default_params(),
                                    task_sampler is not None, owner="OnlineRunner.hparams")
        self.hparams = {k: np.asarray(v) for k, v in sweep.items()}
        if task_sampler is not None and (isinstance(task_sampler, type) or not (
                callable(task_sampler) or callable(getattr(task_sampler, "sample", None)))):
            raise ConfigError(
                "OnlineRunner.task_sampler must be a function key -> env params, or a task "
                f"distribution with sample(key, num) such as @BanditTaskDistribution(); got "
                f"{_describe(task_sampler)}.")
        self.task_sampler = task_sampler
        self.primary = primary
        self.num_chunks = num_chunks
        self.checkpoint_every = check_int("OnlineRunner.checkpoint_every", checkpoint_every,
                                          min_value=0)

    def _primary(self, metrics: Mapping[str, Any]) -> str:
        if self.primary:
            if self.primary not in metrics:
                raise ConfigError(
                    f"OnlineRunner.primary={self.primary!r} is not a metric of this run; "
                    f"available: {sorted(metrics)}."
                )
            return self.primary
        for m in ("cumulative_regret", "episode_return", "reward"):
            if m in metrics:
                return m
        return sorted(metrics)[0]

    def __call__(self, ctx: RunContext) -> Result:
        env_params = None
        per_seed = False
        if self.task_sampler is not None:
            key = jax.random.PRNGKey(ctx.seed + 1_000_003)
            if callable(getattr(self.task_sampler, "sample", None)):  # a task distribution
                env_params = self.task_sampler.sample(key, ctx.num_seeds)
            else:
                env_params = jax.vmap(self.task_sampler)(jax.random.split(key, ctx.num_seeds))
            per_seed = True
        labels = sweep_labels(self.hparams)
        init_state = None
        if self.init_from is not None:
            init_state = _agent_state_from(self.init_from)
        resume = None
        start_step = 0
        if ctx.resume and ctx.checkpoint_dir is not None:
            path = ckpt.latest(ctx.checkpoint_dir)
            if path is not None:
                state = ckpt.load_state_dict(path)
                start_step = int(state["last_step"])
                resume = loop.LoopResume(state["carry"], state["metrics"],
                                         start_step // self.log_every,
                                         state.get("eval_metrics", {}))
            # Lines logged after the checkpoint (or all, without one) are redone.
            jsonl = getattr(ctx.writer, "jsonl", None)
            if jsonl is not None:
                jsonl.truncate_after(start_step)
        logged = {"n": start_step}

        def log_new_windows(out: loop.LoopOutput) -> None:
            steps = out.steps
            for j in np.nonzero(steps > logged["n"])[0]:
                ctx.writer.scalars(int(steps[j]), _window_scalars(out.metrics, j, labels))
            logged["n"] = int(steps[-1])

        def save(out: loop.LoopOutput) -> None:
            # Numbered by the log windows done, so a checkpoint taken at Ctrl-C inside
            # a chunk sorts between the chunks' own.
            step = int(out.steps[-1])
            ckpt.save(ctx.checkpoint_dir, step // self.log_every, {
                "carry": out.carry,
                "metrics": out.metrics,
                "eval_metrics": out.eval_metrics,
                "last_step": np.int64(step),
            }, meta={"step": step})

        def on_chunk(c: int, num_chunks: int, out: loop.LoopOutput) -> None:
            log_new_windows(out)
            if out.eval_metrics:  # this chunk's evaluation
                ctx.writer.scalars(int(out.eval_steps[-1]),
                                   _window_scalars(out.eval_metrics, -1, labels))
            ctx.writer.flush()
            if ctx.checkpoint_dir is not None and self.checkpoint_every and (
                (c + 1) % self.checkpoint_every == 0 or c + 1 == num_chunks
            ):
                save(out)

        def on_interrupt(out: loop.LoopOutput) -> None:
            log_new_windows(out)
            ctx.writer.flush()
            if ctx.checkpoint_dir is not None:
                save(out)

        out = loop.run(
            self.env, self.agent,
            num_steps=self.num_steps, num_seeds=ctx.num_seeds, env_params=env_params,
            env_params_per_seed=per_seed, seed=ctx.seed, log_every=self.log_every,
            hparams=self.hparams or None, num_chunks=self.num_chunks, resume=resume,
            on_chunk=on_chunk, on_interrupt=on_interrupt, progress=ctx.progress,
            desc=f"{self.agent.name} on {self.env.name}",
            num_envs=self.num_envs, evaluation=self.evaluation, init_agent_state=init_state,
            check_metrics=self._primary if self.primary else None,
        )
        if self.num_steps == 0:  # evaluation only: no chunk ran, log the one evaluation
            ctx.writer.scalars(0, _window_scalars(out.eval_metrics, 0, labels))
        if self.summary is not None:
            return self.summary(out, self.env)
        final = final_metrics(out)
        final.update({k: v[..., -1] for k, v in out.eval_metrics.items()})  # last evaluation
        return Result(
            final=final,
            curves=out.metrics,
            steps=out.steps,
            primary=self._primary(out.metrics) if out.metrics else None,
            hparams=out.hparams,
        )


def _agent_state_from(path: str):
    """The learner state in a run directory's latest checkpoint (or a checkpoint file)."""
    p = pathlib.Path(path)
    if p.is_dir():
        found = ckpt.latest(p / "checkpoints" if (p / "checkpoints").is_dir() else p)
        if found is None:
            raise ConfigError(f"OnlineRunner.init_from={path!r}: no checkpoint there.")
        p = found
    if not p.exists():
        raise ConfigError(f"OnlineRunner.init_from={path!r}: no such run directory or file.")
    state = ckpt.load_state_dict(p)
    try:
        return state["carry"]["agent_state"]
    except (KeyError, TypeError):
        raise ConfigError(f"OnlineRunner.init_from={path!r} is not a checkpoint of an online "
                          "run (it holds no learner state).") from None


def _describe(x) -> str:
    """A value as a user would name it: a class (``@X`` without ``()``), a type name, a literal."""
    if isinstance(x, type):
        return f"the class {x.__name__} (write @{x.__name__}() to build one)"
    if isinstance(x, (str, int, float, bool, type(None), list, tuple, dict)):
        return repr(x)
    return f"a {type(x).__name__}"


def _has_wrapper(env, cls) -> bool:
    while env is not None:
        if isinstance(env, cls):
            return True
        env = env.__dict__.get("env")
    return False


def _window_scalars(metrics, j, labels) -> dict[str, float]:
    vals = {}
    for k, v in metrics.items():
        w = np.asarray(v[..., j], np.float64)
        groups = [("", w)] if w.ndim == 1 else [(f"[{l}]", w[i]) for i, l in enumerate(labels)]
        for suffix, x in groups:
            finite = x[np.isfinite(x)]
            if finite.size == 0:
                continue
            vals[f"{k}{suffix}"] = float(finite.mean())
            if finite.size > 1:
                vals[f"{k}{suffix}/std"] = float(finite.std(ddof=1))
    return vals
