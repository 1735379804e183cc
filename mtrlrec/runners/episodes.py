r"""One full episode per user: RecSim's evaluation on the engine's evaluation phase.

``OnlineRunner(num_steps=0, num_envs=N, eval_episodes=1)`` serves N fresh users
(per seed) one full episode each, greedily and with learning off, in one
compiled ``while_loop`` (:func:`mtrlrec.train.step.make_eval_fn`): users whose
episode ended are masked, so each contributes exactly one episode, as RecSim's
``EvalRunner`` does (episodes end when the user leaves or at the step cap,
RecSim's ``runner_lib.Runner.max_steps_per_episode`` = 27,000). The
per-user sums it returns give RecSim's statistics (``runner_lib`` / ``utils``
names in brackets):

* ``episode_return`` [AverageEpisodeRewards]: sum of the scalar reward;
* ``episode_length`` [AverageEpisodeLength]: steps;
* ``clicks``: clicks in the episode; ``purchases``, ``returned``;
* ``ctr`` [CTR]: total clicks / total steps (pooled over users, as RecSim);
* ``avg_quality`` [AverageQuality]: mean quality of clicked items, pooled;
* ``truncated``: fraction of episodes cut by a time limit or the step cap.

Gin: ``OnlineRunner.summary = @episode_summary`` (``experiments/slate/``).
"""

from __future__ import annotations

from typing import Any

import gin
import numpy as np

from mtrlrec.core.agent import Agent
from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_int
from mtrlrec.train import loop
from mtrlrec.train.result import Result

PER_EPISODE = ("episode_return", "episode_length", "clicks", "purchases", "returned",
               "truncated")
POOLED = (("ctr", "clicks", "episode_length"), ("avg_quality", "quality_sum", "clicks"))


def user_episode_stats(out: loop.LoopOutput) -> dict[str, np.ndarray]:
    """Per-user statistics ``[..., num_envs]`` of the last evaluation (one episode each)."""
    u = out.eval_users
    if not u:
        raise ConfigError("episode_summary needs an evaluation phase: OnlineRunner.num_steps = 0 "
                          "with OnlineRunner.eval_episodes = 1 (one episode per user).")

    if "reward" not in u:  # a vector reward logs reward/<task>: no return to report
        raise ConfigError(
            "episode_summary needs a scalar reward; this environment returns per-task rewards "
            f"({sorted(k for k in u if k.startswith('reward/'))}): use @slate_task_summary, or "
            "scalarise the reward in the environment (SlateEnv.reward_weights).")

    def get(name):
        return np.asarray(u[name], np.float64) if name in u else np.zeros_like(u["steps"])

    return {
        "episode_return": get("reward"),
        "episode_length": get("steps"),
        "clicks": get("click"),
        "purchases": get("purchase"),
        "returned": get("return"),
        "quality_sum": get("clicked_quality"),
        "truncated": np.maximum(get("truncated") > 0, get("unfinished")).astype(np.float64),
    }


def summarize(stats: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    """Mean and standard error over users of each statistic ``[N]``, and pooled CTR/quality.

    The pooled ratios get a delta-method standard error over users.
    """
    out = {}
    n = len(stats["episode_return"])
    for k in PER_EPISODE:
        v = np.asarray(stats[k], np.float64)
        out[k] = (float(v.mean()), float(v.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0)
    for name, num, den in POOLED:
        x = np.asarray(stats[num], np.float64)
        y = np.asarray(stats[den], np.float64)
        ratio = x.sum() / max(y.sum(), 1e-12)
        resid = (x - ratio * y) / max(y.mean(), 1e-12)
        out[name] = (float(ratio), float(resid.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0)
    return out


@gin.configurable
def episode_summary(out: loop.LoopOutput, env: Environment, se_over: str = "auto") -> Result:
    """RecSim's episode statistics of the last evaluation (one episode per user).

    ``final[m]`` holds the per-seed mean over its users ``[S]`` (pooled ratios
    for ``ctr`` and ``avg_quality``). ``stderr[m]`` is the standard error over
    all ``S × users`` independent episodes (``se_over = 'episodes'``), or over
    the seeds' means (``'seeds'``): a learner trained per seed varies from seed
    to seed more than its users do, so ``'auto'`` takes seeds when the run
    trained and has at least 2 seeds, episodes otherwise.
    """
    if se_over not in ("auto", "episodes", "seeds"):
        raise ConfigError(f"episode_summary.se_over must be 'auto', 'episodes' or 'seeds', "
                          f"got {se_over!r}.")
    per_user = user_episode_stats(out)  # [S, N]
    if per_user["episode_return"].ndim != 2:
        raise ConfigError("episode_summary does not take a hyperparameter sweep "
                          "(OnlineRunner.hparams); run one experiment per setting.")
    flat = {k: v.reshape(-1) for k, v in per_user.items()}
    summary = summarize(flat)
    final, stderr = {}, {}
    for k in PER_EPISODE:
        final[k] = per_user[k].mean(1)
        stderr[k] = np.asarray(summary[k][1])
    for name, num, den in POOLED:
        final[name] = per_user[num].sum(1) / np.maximum(per_user[den].sum(1), 1e-12)
        stderr[name] = np.asarray(summary[name][1])
    seeds = per_user["episode_return"].shape[0]
    if se_over == "auto":
        se_over = "seeds" if seeds >= 2 and len(out.steps) and out.steps[-1] > 0 else "episodes"
    if se_over == "seeds":
        if seeds < 2:
            raise ConfigError("episode_summary.se_over = 'seeds' needs at least 2 seeds (--seeds).")
        # The run's own mean ± SE over seeds of ``final`` (no stderr of ours).
        summary = {k: (float(v.mean()), float(v.std(ddof=1) / np.sqrt(seeds)))
                   for k, v in final.items()}
        stderr = {}
    rows = "\n".join(f"| {k} | {m:.4f} | {s:.4f} |" for k, (m, s) in summary.items())
    episodes = flat["episode_return"].size
    table = ("| statistic | mean | SE |\n|---|---|---|\n" + rows +
             f"\n\n{episodes} episodes, {flat['episode_length'].sum():.0f} user-steps.")
    return Result(final=final, stderr=stderr, primary=None,
                  tables={"Episode statistics": table},
                  stderr_over=("" if se_over == "seeds" else
                               "episodes (seeds × users, one episode each)"))


TASKS = ("click", "purchase", "watch_time", "return")


@gin.configurable
def slate_task_summary(out: loop.LoopOutput, env: Environment,
                       weights: tuple = (1.0, 5.0, 0.0, 0.0)) -> Result:
    """Per-task statistics of the last evaluation (one episode per user) on the multi-task
    slate simulator, whatever reward the agent was trained on.

    Per seed (the table's mean ± SE are over seeds, each a different learner):
    ``ctr`` and ``purchase_rate`` (clicks and purchases per step, pooled over the
    users), ``scalarised_return`` (:math:`\sum_t w_t` times each task's episode
    total, ``weights`` in the order click, purchase, watch time, return; the
    seed's click 1, purchase 5 by default), ``watch_time`` and ``episode_length``
    per episode, and ``returned`` (share of users who come back).
    """
    u = out.eval_users
    if not u or "click" not in u:
        raise ConfigError("slate_task_summary needs an evaluation phase on the slate simulator "
                          "(OnlineRunner.eval_every with eval_episodes = 1).")
    if len(weights) != len(TASKS):
        raise ConfigError(f"slate_task_summary.weights needs {len(TASKS)} values {list(TASKS)}, "
                          f"got {list(weights)}.")
    get = {k: np.asarray(u[k], np.float64) for k in TASKS + ("steps",)}  # [S, N]
    steps = get["steps"].sum(-1)
    final = {
        "ctr": get["click"].sum(-1) / steps,
        "purchase_rate": get["purchase"].sum(-1) / steps,
        "scalarised_return": sum(w * get[k] for w, k in zip(weights, TASKS)).mean(-1),
        "watch_time": get["watch_time"].mean(-1),
        "episode_length": get["steps"].mean(-1),
        "returned": get["return"].mean(-1),
    }
    return Result(final=final, primary=None)


def evaluate_episodes(env: Environment, agent: Agent, *, num_users: int, seed: int = 0,
                      max_steps: int = 27_000, params: Any = None) -> dict[str, np.ndarray]:
    """One episode for each of ``num_users`` fresh users; per-user ``[N]`` statistics.

    The engine's evaluation phase without training (``loop.run(num_steps=0)``).
    """
    num_users = check_int("num_users", num_users, min_value=1)
    out = loop.run(env, agent, num_steps=0, num_seeds=1, num_envs=num_users, seed=seed,
                   env_params=params, evaluation=loop.Evaluation(episodes=1, max_steps=max_steps))
    return {k: v[0] for k, v in user_episode_stats(out).items()}


__all__ = ["episode_summary", "evaluate_episodes", "slate_task_summary", "summarize",
           "user_episode_stats"]
