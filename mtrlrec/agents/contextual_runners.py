r"""Runners of the contextual-bandit, ads and pricing experiments.

:func:`run_contextual` is a configuration of the one engine
(:func:`mtrlrec.train.loop.run`): windows of ``block`` steps (the agent's
``learn_every`` for periodic learners), returned as per-window sums, with an
optional batch of environment-parameter points run side by side as an
env-param sweep (``env.<field>``, common random numbers across points), e.g.
the five δ of the wheel bandit. Every seed and every point is one compiled
call.

Runners (``Experiment.runner = @WheelRunner()`` etc.):

* :class:`WheelRunner`: the wheel-bandit table of Riquelme et al. (ICLR 2018):
  cumulative regret at T normalised by the uniform policy's, in percent.
  The uniform policy's expected regret is exact
  (:func:`mtrlrec.envs.contextual.wheel_uniform_regret`), so the normaliser
  has no sampling error.
* :class:`AdsRunner`: CTR, CVR, conversions per impression, regret.
* :class:`PricingRunner`: revenue regret against the documented optimum
  (segment-aware, context-free, and budget-constrained LP), spend.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import gin
import numpy as np

from mtrlrec.core.agent import Agent
from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError, check_int
from mtrlrec.train import loop
from mtrlrec.envs.contextual import WheelBandit, check_wheel_delta, wheel_uniform_regret


def run_contextual(env: Environment, agent: Agent, *, num_steps: int, num_seeds: int,
                   seed: int = 0, env_sweep: Mapping[str, Sequence[float]] | None = None,
                   block: int | None = None) -> dict[str, np.ndarray]:
    """Runs ``agent`` on ``env`` on the loop; returns per-window sums of every metric.

    Args:
      env: the environment.
      agent: the agent; periodic learners' windows are ``learn_every`` long.
      num_steps: steps per seed, a multiple of the block length.
      num_seeds: independent runs (vmapped).
      seed: base seed; seed i uses ``fold_in(PRNGKey(seed), i)``.
      env_sweep: optional ``{field: [P values]}`` of env params run side by
        side (an env-param sweep of the loop); the sums then have a leading ``[P]``.
      block: window length for agents that do not learn periodically
        (default: ``num_steps // 50`` or the largest divisor below it).

    Returns:
      name -> ``[S, B]`` (or ``[P, S, B]``) sums over each of ``B`` windows
      (``agent/*``: the mean per ``learn`` call), plus ``'_block'``,
      ``'_compile_seconds'`` and ``'_seconds'`` (execution after compilation).
    """
    num_steps = check_int("num_steps", num_steps, min_value=1)
    if agent.learn_every > 1:
        block = agent.learn_every
    elif block is None:
        block = loop.choose_num_chunks(num_steps, max(num_steps // 50, 1))
    if num_steps % block:
        raise ConfigError(
            f"num_steps={num_steps} must be a multiple of the block length {block} "
            f"(the agent's train_every).")
    hparams = {f"env.{k}": v for k, v in (env_sweep or {}).items()}
    out = loop.run(env, agent, num_steps=num_steps, num_seeds=num_seeds, seed=seed,
                   log_every=block, hparams=hparams or None, num_chunks=1)
    sums = {k: v if k.startswith("agent/") else v * block for k, v in out.metrics.items()}
    sums["_block"] = np.asarray(block)
    sums["_compile_seconds"] = np.asarray(out.compile_seconds)
    sums["_seconds"] = np.asarray(out.seconds)
    return sums


def _result(**kw):
    from mtrlrec.train.result import Result

    return Result(**kw)


def _log_curves(ctx, steps, curves):
    """Writes the seed-mean of each curve ``[S, L]`` at every x of ``steps``."""
    if ctx is None or getattr(ctx, "writer", None) is None:
        return
    for i, s in enumerate(steps):
        ctx.writer.scalars(int(s), {k: float(np.mean(v[..., i])) for k, v in curves.items()})


# --------------------------------------------------------------------------
# Wheel bandit
# --------------------------------------------------------------------------


@gin.configurable
class WheelRunner:
    """Normalised cumulative regret on the wheel bandit for several δ at once.

    ``final['normalized_regret/<δ>']`` ``[S]`` is
    :math:`100 \\cdot R_T / (T\\,\\bar\\rho_U(\\delta))`, where
    :math:`\\bar\\rho_U` is the uniform policy's exact expected regret per
    round, so the uniform policy scores 100 in expectation (the paper's scale).

    Args:
      agent: the agent.
      deltas: δ values, each in (0, 1).
      num_steps: horizon T.
      block: curve resolution for agents without periodic learning.
      env: an optional configured ``WheelBandit`` (its δ is replaced by ``deltas``).
    """

    def __init__(self, agent: Agent = gin.REQUIRED,
                 deltas: Sequence[float] = (0.5, 0.7, 0.9, 0.95, 0.99),
                 num_steps: int = 5000, block: int | None = None,
                 env: WheelBandit | None = None):
        self.agent = agent
        if isinstance(deltas, (int, float)):
            deltas = [deltas]
        self.deltas = tuple(check_wheel_delta(f"WheelRunner.deltas[{i}]", d)
                            for i, d in enumerate(deltas))
        if not self.deltas:
            raise ConfigError("WheelRunner.deltas must not be empty.")
        self.num_steps = check_int("WheelRunner.num_steps", num_steps, min_value=1)
        self.block = block
        self.env = env if env is not None else WheelBandit()

    def __call__(self, ctx) -> Any:
        p = self.env.default_params()
        deltas = np.asarray(self.deltas, np.float32)
        out = run_contextual(self.env, self.agent, num_steps=self.num_steps,
                             num_seeds=ctx.num_seeds, seed=ctx.seed,
                             env_sweep={"delta": deltas}, block=self.block)
        block = int(out["_block"])
        cum = np.cumsum(out["regret"], axis=-1)  # [P, S, B]
        steps = (np.arange(cum.shape[-1]) + 1) * block
        u = wheel_uniform_regret(deltas, float(p.mu_1), float(p.mu_2), float(p.mu_3))
        final, curves = {}, {}
        for i, d in enumerate(self.deltas):
            key = f"normalized_regret/{d:g}"
            curves[key] = 100.0 * cum[i] / (steps[None, :] * u[i])
            final[key] = curves[key][:, -1]
            final[f"cumulative_regret/{d:g}"] = cum[i][:, -1]
        final["seconds"] = np.full(ctx.num_seeds, float(out["_seconds"]))
        _log_curves(ctx, steps, curves)
        return _result(final=final, curves=curves, steps=steps,
                       primary=f"normalized_regret/{self.deltas[0]:g}")


# --------------------------------------------------------------------------
# Ads and pricing
# --------------------------------------------------------------------------

ADS_METRICS = ("ctr", "cvr", "conversions")
PRICING_METRICS = ("revenue", "spend", "pooled_regret", "constrained_regret",
                   "budget_violation")


def _not_applicable(names, num_seeds, have=()):
    """NaN columns for the other domain's metrics, so one table can hold ads and
    pricing rows (the bench harness needs every column in every row)."""
    return {n: np.full(num_seeds, np.nan) for n in names if n not in have}



@gin.configurable
class AdsRunner:
    """Runs an agent on an ads environment; reports CTR, CVR and conversions.

    ``final``: ``ctr`` (clicks / impressions), ``cvr`` (conversions / clicks),
    ``conversions`` (per impression), ``expected_ctr`` and
    ``expected_conversions`` (the same from the model's probabilities, lower
    variance), and ``regret`` (cumulative, for the env's objective weights).

    Args:
      env: an ads environment (``AdPlacement``).
      agent: the agent.
      num_steps: impressions per seed.
    """

    def __init__(self, env: Environment = gin.REQUIRED, agent: Agent = gin.REQUIRED,
                 num_steps: int = 10_000):
        self.env, self.agent = env, agent
        self.num_steps = check_int("AdsRunner.num_steps", num_steps, min_value=1)

    def __call__(self, ctx) -> Any:
        out = run_contextual(self.env, self.agent, num_steps=self.num_steps,
                             num_seeds=ctx.num_seeds, seed=ctx.seed)
        t = self.num_steps
        clicks = out["click"].sum(-1)
        conv = out["conversion"].sum(-1)
        block = int(out["_block"])
        steps = (np.arange(out["regret"].shape[-1]) + 1) * block
        curves = {"cumulative_regret": np.cumsum(out["regret"], -1),
                  "ctr": out["click"] / block, "conversions": out["conversion"] / block}
        final = {
            "ctr": clicks / t,
            "cvr": conv / np.maximum(clicks, 1.0),
            "conversions": conv / t,
            "expected_ctr": out["expected_click"].sum(-1) / t,
            "expected_conversions": out["expected_conversion"].sum(-1) / t,
            "regret": out["regret"].sum(-1),
        }
        final.update(_not_applicable(PRICING_METRICS, ctx.num_seeds))
        _log_curves(ctx, steps, curves)
        return _result(final=final, curves=curves, steps=steps, primary="cumulative_regret")


@gin.configurable
class PricingRunner:
    """Runs an agent on ``DynamicPricing``; reports revenue regret and spend.

    ``final``: ``regret`` (cumulative, vs the segment-aware optimum V*),
    ``revenue`` (expected margin per round), ``spend`` (expected discount
    spend per round), ``pooled_regret`` (:math:`T V_0 - \\sum_t R`, vs the best
    single arm), and with a budget ``constrained_regret``
    (:math:`T V^*_b - \\sum_t R`) and ``budget_violation``
    (spend per round minus b).

    Args:
      env: a ``DynamicPricing`` environment.
      agent: the agent.
      num_steps: rounds per seed.
    """

    def __init__(self, env: Environment = gin.REQUIRED, agent: Agent = gin.REQUIRED,
                 num_steps: int = 10_000):
        self.env, self.agent = env, agent
        self.num_steps = check_int("PricingRunner.num_steps", num_steps, min_value=1)
        if not hasattr(env, "optimum"):
            raise ConfigError(f"PricingRunner.env must be a DynamicPricing env, got {env}.")

    def __call__(self, ctx) -> Any:
        out = run_contextual(self.env, self.agent, num_steps=self.num_steps,
                             num_seeds=ctx.num_seeds, seed=ctx.seed)
        opt = self.env.optimum()
        t = self.num_steps
        rev = out["expected_revenue"].sum(-1)
        spend = out["expected_spend"].sum(-1)
        block = int(out["_block"])
        steps = (np.arange(out["regret"].shape[-1]) + 1) * block
        curves = {"cumulative_regret": np.cumsum(out["regret"], -1)}
        final = {
            "regret": out["regret"].sum(-1),
            "revenue": rev / t,
            "spend": spend / t,
            "pooled_regret": t * opt["pooled_value"] - rev,
            "infeasible": out["infeasible"].sum(-1) / t,
        }
        if "constrained_value" in opt:
            final["constrained_regret"] = t * opt["constrained_value"] - rev
            final["budget_violation"] = spend / t - self.env.max_discount_spend
        if "agent/lambda" in out:
            final["lambda"] = out["agent/lambda"][..., -1]
        final.update(_not_applicable(ADS_METRICS + ("constrained_regret", "budget_violation"),
                                     ctx.num_seeds, final))
        _log_curves(ctx, steps, curves)
        return _result(final=final, curves=curves, steps=steps, primary="cumulative_regret")
