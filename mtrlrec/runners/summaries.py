r"""Papers' own numbers: summary functions ``(LoopOutput, env) -> Result``.

A table's experiments run on the one engine (``Experiment.runner =
@OnlineRunner()``); what a paper reports is computed afterwards from the loop's
output by one of these, bound as ``OnlineRunner.summary = @wheel_summary``:

* :func:`regret_summary`: cumulative regret at T, its slope against ln t over
  the last decade (compare with the Lai–Robbins constant), the fraction of
  optimal pulls; with a sweep (``OnlineRunner.hparams``), the value with the
  lowest mean regret at T is reported, tuned on the same runs (the "tuned"
  rows of Chapelle & Li 2011, §3). ``benchmarks/tables/chapelle_li.toml``.
* :func:`wheel_summary`: the wheel bandit of Riquelme et al. (ICLR 2018):
  regret at T over the uniform policy's exact expected regret, ×100, for each
  δ of the sweep ``OnlineRunner.hparams = {'env.delta': [...]}``.
  ``benchmarks/tables/wheel_bandit.toml``.
* :func:`ads_summary` and :func:`pricing_summary`: CTR, CVR, conversions;
  revenue regret against the documented optimum, spend, budget violation.
  ``benchmarks/tables/pricing_ads.toml``.

The loop's metrics are window means; ``window_sums`` turns them back into sums.
"""

from __future__ import annotations

import math

import gin
import numpy as np

from mtrlrec.core.env import Environment
from mtrlrec.core.errors import ConfigError
from mtrlrec.envs.contextual import wheel_uniform_regret
from mtrlrec.eval import regret as regret_lib
from mtrlrec.train.loop import LoopOutput
from mtrlrec.train.result import Result


def window_sums(out: LoopOutput, name: str) -> np.ndarray:
    """``[..., L]`` per-window sums of a metric (the loop logs window means)."""
    return np.asarray(out.metrics[name], np.float64) * float(out.steps[0])


def _need(out: LoopOutput, names, summary: str) -> None:
    missing = [n for n in names if n not in out.metrics]
    if missing:
        raise ConfigError(f"OnlineRunner.summary = @{summary} needs the metrics {missing}, "
                          f"which this environment does not report.")


@gin.configurable
def regret_summary(out: LoopOutput, env: Environment) -> Result:
    """Regret at T and its slope; tuned over the sweep if there is one.

    ``final`` (per seed): ``cumulative_regret`` :math:`\\bar R_T`; ``regret_slope``
    :math:`(\\bar R_T - \\bar R_{T/10}) / \\ln 10`; ``regret_per_log_t``
    :math:`\\bar R_T / \\ln T`; ``regret_over_t``; ``fraction_optimal``; and
    ``tuned/<name>`` for a sweep. ``OnlineRunner.log_every`` must divide T/10.
    """
    _need(out, ("cumulative_regret", "optimal_action"), "regret_summary")
    steps = out.steps
    t_end = int(steps[-1])
    if (t_end // 10) % int(steps[0]):
        raise ConfigError(f"regret_summary: OnlineRunner.log_every={int(steps[0])} must divide "
                          f"T/10 = {t_end // 10} (T = OnlineRunner.num_steps = {t_end}).")
    reg = out.metrics["cumulative_regret"]  # [S, L] or [H, S, L]
    opt = out.metrics["optimal_action"]
    tables, tuned = {}, {}
    if out.hparams:
        means = reg[..., -1].mean(-1)  # [H]
        best = int(np.argmin(means))
        names = list(out.hparams)
        rows = ["| " + " | ".join(names) + " | regret at T (mean ± SE) |",
                "|" + "---|" * (len(names) + 1)]
        for h in range(means.shape[0]):
            se = reg[h, :, -1].std(ddof=1) / math.sqrt(reg.shape[1]) if reg.shape[1] > 1 else 0
            vals = " | ".join(f"{out.hparams[k][h]:g}" for k in names)
            mark = " (best)" if h == best else ""
            rows.append(f"| {vals} | {means[h]:.1f} ± {se:.1f}{mark} |")
        tables["tuning (in-sample, over the sweep)"] = "\n".join(rows)
        tuned = {k: float(v[best]) for k, v in out.hparams.items()}
        reg, opt = reg[best], opt[best]
    final = {
        "cumulative_regret": reg[:, -1],
        "regret_slope": regret_lib.regret_slope(steps, reg, 1.0),
        "regret_per_log_t": reg[:, -1] / math.log(t_end),
        "regret_over_t": reg[:, -1] / t_end,
        "fraction_optimal": opt.mean(-1),
    }
    for k, v in tuned.items():
        final[f"tuned/{k}"] = np.full(reg.shape[0], v)
    return Result(final=final, curves={"cumulative_regret": reg, "optimal_action": opt},
                  steps=steps, primary="cumulative_regret", tables=tables)


@gin.configurable
def wheel_summary(out: LoopOutput, env: Environment) -> Result:
    """Normalised cumulative regret for each δ of the sweep ``{'env.delta': [...]}``.

    ``final['normalized_regret/<δ>']`` ``[S]`` is :math:`100 \\cdot R_T /
    (T\\,\\bar\\rho_U(\\delta))`, where :math:`\\bar\\rho_U` is the uniform
    policy's exact expected regret per round
    (:func:`mtrlrec.envs.contextual.wheel_uniform_regret`), so the uniform policy
    scores 100 in expectation (the paper's scale); and ``cumulative_regret/<δ>``.
    """
    _need(out, ("cumulative_regret",), "wheel_summary")
    if "env.delta" not in out.hparams:
        raise ConfigError("wheel_summary needs the δ values as a sweep: "
                          "OnlineRunner.hparams = {'env.delta': [0.5, 0.7, 0.9, 0.95, 0.99]}.")
    deltas = np.asarray(out.hparams["env.delta"], np.float64)
    p = env.default_params()
    u = wheel_uniform_regret(deltas, float(p.mu_1), float(p.mu_2), float(p.mu_3))
    steps = out.steps
    cum = np.asarray(out.metrics["cumulative_regret"], np.float64)  # [P, S, L]
    final, curves = {}, {}
    for i, d in enumerate(deltas):
        key = f"normalized_regret/{d:g}"
        curves[key] = 100.0 * cum[i] / (steps[None, :] * u[i])
        final[key] = curves[key][:, -1]
        final[f"cumulative_regret/{d:g}"] = cum[i][:, -1]
    return Result(final=final, curves=curves, steps=steps,
                  primary=f"normalized_regret/{deltas[0]:g}")


ADS_METRICS = ("ctr", "cvr", "conversions")
PRICING_METRICS = ("revenue", "spend", "pooled_regret", "constrained_regret",
                   "budget_violation")


def _not_applicable(names, num_seeds, have=()):
    """NaN columns for the other domain's metrics, so one table can hold ads and
    pricing rows (the bench harness needs every column in every row)."""
    return {n: np.full(num_seeds, np.nan) for n in names if n not in have}


@gin.configurable
def ads_summary(out: LoopOutput, env: Environment) -> Result:
    """CTR, CVR and conversions per impression from the ad environment's counts.

    ``final``: ``ctr`` (clicks / impressions), ``cvr`` (conversions / clicks),
    ``conversions`` (per impression), ``expected_ctr`` and
    ``expected_conversions`` (the same from the model's probabilities, lower
    variance), and ``regret`` (cumulative, for the env's objective weights).
    """
    _need(out, ("click", "conversion", "expected_click", "expected_conversion", "regret"),
          "ads_summary")
    t = float(out.steps[-1])
    clicks = window_sums(out, "click").sum(-1)
    conv = window_sums(out, "conversion").sum(-1)
    final = {
        "ctr": clicks / t,
        "cvr": conv / np.maximum(clicks, 1.0),
        "conversions": conv / t,
        "expected_ctr": window_sums(out, "expected_click").sum(-1) / t,
        "expected_conversions": window_sums(out, "expected_conversion").sum(-1) / t,
        "regret": window_sums(out, "regret").sum(-1),
    }
    final.update(_not_applicable(PRICING_METRICS, clicks.shape[-1]))
    curves = {"cumulative_regret": out.metrics["cumulative_regret"],
              "ctr": out.metrics["click"], "conversions": out.metrics["conversion"]}
    return Result(final=final, curves=curves, steps=out.steps, primary="cumulative_regret")


def _check_pricing_env(env: Environment) -> None:
    if not hasattr(env, "optimum"):
        raise ConfigError(f"OnlineRunner.summary = @pricing_summary needs a DynamicPricing env, "
                          f"got {env.name}.")


@gin.configurable
def pricing_summary(out: LoopOutput, env: Environment) -> Result:
    """Revenue regret and spend of a ``DynamicPricing`` run.

    ``final``: ``regret`` (cumulative, vs the segment-aware optimum V*),
    ``revenue`` (expected margin per round), ``spend`` (expected discount spend
    per round), ``pooled_regret`` (:math:`T V_0 - \\sum_t R`, vs the best single
    arm), ``infeasible``, and with a budget ``constrained_regret``
    (:math:`T V^*_b - \\sum_t R`) and ``budget_violation`` (spend per round minus
    b); ``lambda`` (the last window's Lagrange multiplier) for constrained agents.
    """
    _check_pricing_env(env)
    _need(out, ("expected_revenue", "expected_spend", "regret", "infeasible"), "pricing_summary")
    opt = env.optimum()
    t = float(out.steps[-1])
    rev = window_sums(out, "expected_revenue").sum(-1)
    spend = window_sums(out, "expected_spend").sum(-1)
    final = {
        "regret": window_sums(out, "regret").sum(-1),
        "revenue": rev / t,
        "spend": spend / t,
        "pooled_regret": t * opt["pooled_value"] - rev,
        "infeasible": window_sums(out, "infeasible").sum(-1) / t,
    }
    if "constrained_value" in opt:
        final["constrained_regret"] = t * opt["constrained_value"] - rev
        final["budget_violation"] = spend / t - env.max_discount_spend
    if "agent/lambda" in out.metrics:
        final["lambda"] = out.metrics["agent/lambda"][..., -1]
    final.update(_not_applicable(ADS_METRICS + ("constrained_regret", "budget_violation"),
                                 rev.shape[-1], final))
    return Result(final=final, curves={"cumulative_regret": out.metrics["cumulative_regret"]},
                  steps=out.steps, primary="cumulative_regret")


__all__ = ["ads_summary", "pricing_summary", "regret_summary", "wheel_summary", "window_sums"]


# Checked by OnlineRunner before anything compiles.
pricing_summary.check_env = _check_pricing_env
