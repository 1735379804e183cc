"""``OnlineRunner``: an environment and an agent in the jitted loop, as an experiment.

Gin::

    Experiment.runner = @OnlineRunner()
    OnlineRunner.env = @BernoulliBandit()
    OnlineRunner.agent = @EpsilonGreedy()
    OnlineRunner.num_steps = 10_000
    OnlineRunner.log_every = 100
    OnlineRunner.hparams = {'epsilon': [0.01, 0.1, 0.2]}   # optional sweep, one compiled call

Curves go to TensorBoard/JSONL after every chunk (mean and std over seeds);
a checkpoint of the whole loop carry is written after every chunk, and
``--resume`` continues from the latest one to the same final numbers.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import gin
import jax
import numpy as np

from mtrlrec.core.agent import Agent
from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_int
from mtrlrec.core.wrappers import EpisodeStatistics
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
      task_sampler: optional ``sampler(key) -> env params``; each seed then
        runs on its own task (e.g. arm means drawn from a prior).
      primary: the main curve; default ``cumulative_regret`` if the env reports
        regret, else ``episode_return`` for episodic envs, else ``reward``.
      num_chunks: compiled calls the run is split into (progress, logs,
        checkpoints between them); default up to 10.
      checkpoint_every: save a checkpoint every this many chunks (0: never).
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
    ):
        if not isinstance(env, Environment):
            raise ConfigError(
                f"OnlineRunner.env must be an environment instance (e.g. @BernoulliBandit()), "
                f"got {env!r}."
            )
        if not isinstance(agent, Agent):
            raise ConfigError(
                f"OnlineRunner.agent must be an agent instance (e.g. @EpsilonGreedy()), got {agent!r}."
            )
        for w in wrappers:
            env = w(env)
        if env.episodic and not _has_wrapper(env, EpisodeStatistics):
            env = EpisodeStatistics(env)
        self.env = env
        self.agent = agent
        self.num_steps = check_int("OnlineRunner.num_steps", num_steps, min_value=1)
        self.log_every = check_int("OnlineRunner.log_every", log_every, min_value=1)
        if self.num_steps % self.log_every:
            raise ConfigError(
                f"OnlineRunner.num_steps={self.num_steps} must be a multiple of "
                f"OnlineRunner.log_every={self.log_every}."
            )
        self.hparams = _check_hparams(hparams)
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
            keys = jax.random.split(jax.random.PRNGKey(ctx.seed + 1_000_003), ctx.num_seeds)
            env_params = jax.vmap(self.task_sampler)(keys)
            per_seed = True
        labels = sweep_labels(self.hparams)
        resume = None
        start_step = 0
        if ctx.resume and ctx.checkpoint_dir is not None:
            path = ckpt.latest(ctx.checkpoint_dir)
            if path is not None:
                state = ckpt.load_state_dict(path)
                resume = loop.LoopResume(state["carry"], state["metrics"],
                                         int(state["next_chunk"]))
                start_step = int(state["last_step"])
            # Lines logged after the checkpoint (or all, without one) are redone.
            jsonl = getattr(ctx.writer, "jsonl", None)
            if jsonl is not None:
                jsonl.truncate_after(start_step)
        logged = {"n": start_step}

        def on_chunk(c: int, num_chunks: int, out: loop.LoopOutput) -> None:
            steps = out.steps
            new = steps > logged["n"]
            for j in np.nonzero(new)[0]:
                ctx.writer.scalars(int(steps[j]), _window_scalars(out.metrics, j, labels))
            logged["n"] = int(steps[-1])
            ctx.writer.flush()
            if ctx.checkpoint_dir is not None and self.checkpoint_every and (
                (c + 1) % self.checkpoint_every == 0 or c + 1 == num_chunks
            ):
                ckpt.save(ctx.checkpoint_dir, c + 1, {
                    "carry": out.carry,
                    "metrics": out.metrics,
                    "next_chunk": np.int64(c + 1),
                    "last_step": np.int64(steps[-1]),
                }, meta={"next_chunk": c + 1, "step": int(steps[-1])})

        out = loop.run(
            self.env, self.agent,
            num_steps=self.num_steps, num_seeds=ctx.num_seeds, env_params=env_params,
            env_params_per_seed=per_seed, seed=ctx.seed, log_every=self.log_every,
            hparams=self.hparams or None, num_chunks=self.num_chunks, resume=resume,
            on_chunk=on_chunk, progress=ctx.progress, desc=f"{self.agent.name} on {self.env.name}",
        )
        primary = self._primary(out.metrics)
        return Result(
            final=final_metrics(out),
            curves=out.metrics,
            steps=out.steps,
            primary=primary,
            hparams=out.hparams,
        )


def _has_wrapper(env, cls) -> bool:
    while env is not None:
        if isinstance(env, cls):
            return True
        env = env.__dict__.get("env")
    return False


def _check_hparams(hparams) -> dict[str, np.ndarray]:
    if not hparams:
        return {}
    if not isinstance(hparams, Mapping):
        raise ConfigError(
            f"OnlineRunner.hparams must be a dict {{name: [values]}}, got {hparams!r}."
        )
    out = {}
    n = None
    for k, v in hparams.items():
        try:
            a = np.asarray(v, np.float32)
        except (TypeError, ValueError):
            raise ConfigError(f"OnlineRunner.hparams[{k!r}] must be a list of numbers, got {v!r}.")
        if a.ndim < 1 or a.size == 0 or not np.all(np.isfinite(a)):
            raise ConfigError(
                f"OnlineRunner.hparams[{k!r}] must be a non-empty list of finite numbers "
                f"(one entry per sweep point), got {v!r}."
            )
        if n is not None and a.shape[0] != n:
            raise ConfigError("OnlineRunner.hparams lists must all have the same length.")
        n = a.shape[0]
        out[k] = a
    return out


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
