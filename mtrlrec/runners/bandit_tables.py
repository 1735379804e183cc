r"""Runners of bandit tables that are not one online run.

One agent on one bandit is ``OnlineRunner`` with ``summary = @regret_summary``
(:mod:`mtrlrec.runners.summaries`); these two are different in kind:

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
from typing import Any, Mapping

import gin
import jax
import numpy as np

from mtrlrec.agents import bandits as agents
from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_int
from mtrlrec.envs import bandits as envs
from mtrlrec.eval import regret as regret_lib
from mtrlrec.train import loop
from mtrlrec.train.result import Result, RunContext


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
            sweep, _ = loop.check_sweep({name: values}, agent, self.env, None, True,
                                        owner=f"ParameterStudyRunner.families[{label!r}]")
            self.families[label] = (agent, name, np.asarray(sweep[name]))

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
