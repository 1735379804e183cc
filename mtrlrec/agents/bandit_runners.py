r"""Runners for bandit experiments and tables.

* :class:`BanditRegretRunner`: one agent on one bandit, every seed in one
  compiled call; reports the cumulative regret at T, the slope of regret
  against ln t over the last decade, and (optionally) tunes a hyperparameter
  over a vmapped sweep, keeping the best point (the "tuned" rows of
  Chapelle & Li 2011, §3).
* :class:`LaiRobbinsRunner`: the analytic Lai & Robbins (1985) row,
  :math:`C(\mu)\ln T` and its slope :math:`C(\mu)`.
* :class:`ParameterStudyRunner`: Sutton & Barto (2018, §2.10, Figure 2.6):
  average reward over the first 1,000 steps on the 10-armed Gaussian testbed as
  a function of each method's hyperparameter, each method's values swept in one
  compiled call of the loop, drawn as the book's figure.
"""

from __future__ import annotations

import io
import math
from typing import Any, Mapping, Sequence

import gin
import jax
import numpy as np

from mtrlrec.agents import bandits as agents
from mtrlrec.core.agent import Agent
from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_int
from mtrlrec.envs import bandits as envs
from mtrlrec.eval import regret as regret_lib
from mtrlrec.train import loop
from mtrlrec.train.result import Result, RunContext


def _check_sweep(name: str, hparams: Mapping[str, Sequence[float]] | None) -> dict:
    if not hparams:
        return {}
    out = {}
    for k, v in dict(hparams).items():
        arr = np.asarray(v, np.float32)
        if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
            raise ConfigError(f"{name}[{k!r}] must be a non-empty list of numbers, got {v!r}.")
        out[k] = arr
    if len({a.size for a in out.values()}) != 1:
        raise ConfigError(f"{name} lists must have equal lengths, got "
                          f"{ {k: a.size for k, a in out.items()} }.")
    return out


@gin.configurable
class BanditRegretRunner:
    """Cumulative regret of one agent on one bandit (optionally tuned).

    Final metrics (per seed):

    * ``cumulative_regret``: :math:`\\bar R_T`;
    * ``regret_slope``: :math:`(\\bar R_T - \\bar R_{T/10}) / \\ln 10`, regret per
      unit of ln t over the last decade (compare with the Lai–Robbins constant);
    * ``regret_per_log_t``: :math:`\\bar R_T / \\ln T`;
    * ``fraction_optimal``: fraction of optimal pulls over the run;
    * ``regret_over_t``: :math:`\\bar R_T / T`.

    With ``tune`` (a sweep ``{name: [values]}``), all values run in one compiled
    call on common random numbers and the value with the lowest mean regret at T
    is reported (tuned in-sample, as an oracle-tuned baseline); the sweep is
    listed in a table.

    Args:
      env: the bandit (``@BernoulliBandit()``).
      agent: the agent.
      num_steps: horizon T (a multiple of 100).
      log_every: curve resolution (default T/100; T/10 must be a multiple).
      tune: optional sweep to tune over.
    """

    def __init__(self, env: Environment = gin.REQUIRED, agent: Agent = gin.REQUIRED,
                 num_steps: int = 10_000, log_every: int | None = None,
                 tune: Mapping[str, Sequence[float]] | None = None):
        if not isinstance(env, Environment):
            raise ConfigError(f"BanditRegretRunner.env must be an environment, got {env!r}.")
        if not isinstance(agent, Agent):
            raise ConfigError(f"BanditRegretRunner.agent must be an agent, got {agent!r}.")
        self.env, self.agent = env, agent
        self.num_steps = check_int("BanditRegretRunner.num_steps", num_steps, min_value=10)
        if log_every is None:
            log_every = max(1, self.num_steps // 100)
        self.log_every = check_int("BanditRegretRunner.log_every", log_every, min_value=1)
        if self.num_steps % self.log_every or (self.num_steps // 10) % self.log_every:
            raise ConfigError(
                f"BanditRegretRunner.log_every={self.log_every} must divide T/10 = "
                f"{self.num_steps // 10} (T = BanditRegretRunner.num_steps = {self.num_steps})."
            )
        self.tune = _check_sweep("BanditRegretRunner.tune", tune)

    def __call__(self, ctx: RunContext) -> Result:
        out = loop.run(self.env, self.agent, num_steps=self.num_steps, num_seeds=ctx.num_seeds,
                       seed=ctx.seed, log_every=self.log_every, hparams=self.tune or None,
                       progress=ctx.progress, desc=f"{self.agent.name} on {self.env.name}")
        steps = out.steps
        reg = out.metrics["cumulative_regret"]  # [S, L] or [H, S, L]
        opt = out.metrics["optimal_action"]
        tables = {}
        hp = {}
        if self.tune:
            means = reg[..., -1].mean(-1)  # [H]
            best = int(np.argmin(means))
            rows = ["| " + " | ".join(self.tune) + " | regret at T (mean ± SE) |",
                    "|" + "---|" * (len(self.tune) + 1)]
            for h in range(means.shape[0]):
                se = reg[h, :, -1].std(ddof=1) / math.sqrt(reg.shape[1]) if reg.shape[1] > 1 else 0
                vals = " | ".join(f"{self.tune[k][h]:g}" for k in self.tune)
                mark = " (best)" if h == best else ""
                rows.append(f"| {vals} | {means[h]:.1f} ± {se:.1f}{mark} |")
            tables[f"tuning of {self.agent.name}"] = "\n".join(rows)
            hp = {k: v[best:best + 1] for k, v in self.tune.items()}
            reg, opt = reg[best], opt[best]
        final = {
            "cumulative_regret": reg[:, -1],
            "regret_slope": regret_lib.regret_slope(steps, reg, 1.0),
            "regret_per_log_t": reg[:, -1] / math.log(self.num_steps),
            "regret_over_t": reg[:, -1] / self.num_steps,
            "fraction_optimal": opt.mean(-1),
        }
        for k, v in hp.items():
            final[f"tuned/{k}"] = np.full(reg.shape[0], float(v[0]))
        return Result(final=final, curves={"cumulative_regret": reg, "optimal_action": opt},
                      steps=steps, primary="cumulative_regret", tables=tables)


@gin.configurable
class LaiRobbinsRunner:
    """The analytic Lai & Robbins (1985, Theorem 2) lower bound as a table row.

    ``final`` has one entry per metric (shape ``[1]``): ``cumulative_regret`` =
    :math:`C(\\mu)\\ln T`, ``regret_slope`` = ``regret_per_log_t`` = :math:`C(\\mu)`
    with :math:`C(\\mu) = \\sum_{\\mu_i<\\mu^*} (\\mu^*-\\mu_i)/\\mathrm{kl}(\\mu_i,\\mu^*)`.

    Args:
      env: a ``BernoulliBandit`` (its default means are used).
      num_steps: horizon T >= 1.
    """

    def __init__(self, env: Environment = gin.REQUIRED, num_steps: int = 10_000):
        if not isinstance(env, envs.BernoulliBandit):
            raise ConfigError(
                f"LaiRobbinsRunner.env must be a @BernoulliBandit(), got {env!r}."
            )
        self.env = env
        self.num_steps = check_int("LaiRobbinsRunner.num_steps", num_steps, min_value=1)

    def __call__(self, ctx: RunContext) -> Result:
        means = np.asarray(self.env.means, np.float64)
        c = regret_lib.lai_robbins_constant(means)
        bound = float(regret_lib.lai_robbins_bound(means, self.num_steps))
        return Result(final={
            "cumulative_regret": np.array([bound]),
            "regret_slope": np.array([c]),
            "regret_per_log_t": np.array([c]),
        })


# -- Sutton & Barto Figure 2.6 ---------------------------------------------------------


def _default_families():
    p2 = lambda lo, hi: [2.0 ** i for i in range(lo, hi + 1)]  # noqa: E731
    return {
        "ε-greedy": (agents.EpsilonGreedy(0.1), "epsilon", p2(-7, -2)),
        "gradient bandit": (agents.GradientBandit(0.1), "step_size", p2(-5, 2)),
        "UCB": (agents.UCB1(1.0), "c", p2(-4, 2)),
        "greedy with optimistic initialization α = 0.1":
            (agents.OptimisticGreedy(1.0, 0.1), "initial_value", p2(-2, 2)),
    }


@gin.configurable
class ParameterStudyRunner:
    """Sutton & Barto (2018), §2.10, Figure 2.6: a parameter study, one compiled call.

    Every method of ``families`` is run for every value of its hyperparameter
    on ``num_seeds`` tasks of the 10-armed testbed (means drawn from
    ``task_distribution``, default :math:`\\mathcal N(0, 1)`; rewards
    :math:`\\mathcal N(\\mu_a, 1)`) for ``num_steps`` steps; the metric is the
    average reward over those steps. Each method runs on the loop
    (:func:`mtrlrec.train.loop.run`) with its values as a sweep: one compiled
    call per method, a vmap over its values and tasks.

    Args:
      env: the bandit (default ``GaussianBandit(10)``).
      task_distribution: draws each task's means (default Normal(0, 1)).
      num_steps: steps per task (book: 1,000).
      families: optional ``{label: (agent, hparam name, [values])}``; default
        ε-greedy (ε), gradient bandit (α), UCB (c), optimistic greedy (Q₀, α=0.1)
        over powers of two.
    """

    def __init__(self, env: Environment | None = None,
                 task_distribution: envs.BanditTaskDistribution | None = None,
                 num_steps: int = 1000,
                 families: Mapping[str, Any] | None = None):
        self.env = env if env is not None else envs.GaussianBandit(10, noise_std=1.0)
        k = self.env.num_arms
        self.tasks = task_distribution or envs.BanditTaskDistribution(k, "normal", 0.0, 1.0)
        if self.tasks.num_arms != k:
            raise ConfigError(
                f"ParameterStudyRunner.task_distribution has {self.tasks.num_arms} arms, "
                f"the env {k}."
            )
        self.num_steps = check_int("ParameterStudyRunner.num_steps", num_steps, min_value=1)
        fams = families if families is not None else _default_families()
        self.families = {}
        for label, spec in dict(fams).items():
            try:
                agent, name, values = spec
            except (TypeError, ValueError):
                raise ConfigError(
                    f"ParameterStudyRunner.families[{label!r}] must be (agent, name, values), "
                    f"got {spec!r}."
                ) from None
            vals = _check_sweep(f"ParameterStudyRunner.families[{label!r}]", {name: values})
            self.families[label] = (agent, name, vals[name])

    def __call__(self, ctx: RunContext) -> Result:
        base = jax.random.PRNGKey(ctx.seed)
        params = self.tasks.sample(jax.random.fold_in(base, 1_000_003), ctx.num_seeds)
        out = {}
        for label, (agent, name, vals) in self.families.items():
            run = loop.run(self.env, agent, num_steps=self.num_steps, num_seeds=ctx.num_seeds,
                           env_params=params, env_params_per_seed=True, seed=ctx.seed,
                           log_every=self.num_steps, hparams={name: vals},
                           progress=ctx.progress, desc=label)
            out[label] = (run.metrics["reward"][..., 0], run.metrics["optimal_action"][..., 0])
        final, rows = {}, ["| method | parameter | value | average reward (mean ± SE) | "
                           "optimal action % |", "|---|---|---|---|---|"]
        curves_x, curves_y = {}, {}
        for label, (agent, name, vals) in self.families.items():
            avg, opt = np.asarray(out[label][0]), np.asarray(out[label][1])  # [H, S]
            means = avg.mean(-1)
            ses = avg.std(-1, ddof=1) / math.sqrt(avg.shape[-1]) if avg.shape[-1] > 1 else 0 * means
            for h, v in enumerate(vals):
                final[f"avg_reward/{label}/{name}={v:g}"] = avg[h]
                rows.append(f"| {label} | {name} | {v:g} | {means[h]:.3f} ± {ses[h]:.3f} | "
                            f"{100 * opt[h].mean():.1f} |")
            final[f"best_avg_reward/{label}"] = avg[int(np.argmax(means))]
            curves_x[label], curves_y[label] = np.asarray(vals), means
        table = "\n".join(rows)
        png = _plot_study(curves_x, curves_y, self.num_steps)
        if ctx.run_dir is not None:
            (ctx.run_dir / "parameter_study.png").write_bytes(png)
            (ctx.run_dir / "parameter_study.md").write_text(table + "\n")
        ctx.writer.image("parameter_study", png)
        ctx.writer.text("parameter_study", table)
        return Result(final=final, tables={"parameter study (Sutton & Barto Fig. 2.6)": table},
                      images={"parameter_study": png})


def _plot_study(xs: Mapping[str, np.ndarray], ys: Mapping[str, np.ndarray],
                num_steps: int) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    for label in xs:
        ax.plot(xs[label], ys[label], marker="o", ms=3, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("ε   α   c   Q₀")
    ax.set_ylabel(f"average reward over first {num_steps:,} steps")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
