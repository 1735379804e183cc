r"""Slate off-policy estimators checked on the slate simulator, where the truth is known.

A logging policy and a target policy serve the same kind of users of
:class:`mtrlrec.envs.slate.SlateEnv` (RecSim interest evolution; one step per
user, so each round is a contextual slate bandit). The candidates are split
into K groups of ``items_per_slot`` items, group k feeding slot k, and both
policies are factorised over slots: slot k shows item j of its group with
probability :math:`\mathrm{softmax}_j(\beta\, u \cdot d_j)` (the user's affinity),
:math:`\beta_b` = ``logging_beta`` for the logging policy and :math:`\beta_e` =
``target_beta`` for the target. Slot rewards come from one of three click models:

* ``'multinomial'``: the simulator's own choice model (RecSim's multinomial
  proportional; at most one click per slate, so slots compete: the expected
  slate reward is *not* additive over slots);
* ``'cascade'``: the simulator with :class:`~mtrlrec.envs.choice.ExponentialCascade`
  (the user scans slots in order and clicks at most once: slot k's reward
  depends on slots 1..k, RIPS's assumption);
* ``'independent'``: each slot is clicked independently with the probability
  the simulator gives its item shown alone (``SlateEnv.click_probabilities``):
  additive slate reward, every estimator's assumption holds.

The truth :math:`V(\pi_e)` is the mean slate reward of ``num_truth_users``
fresh users served by the target policy on-policy. ``num_logs`` independent logs
of ``max(log_sizes)`` rounds are drawn from the logging policy; the first n
rounds of each give the estimates at log size n, and over the logs: bias
(mean − truth, ± its SE), SD and RMSE of every estimator of
:mod:`mtrlrec.eval.slate_ope`.
"""

from __future__ import annotations

import functools
import math

import gin
import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core.errors import ConfigError, check_float, check_int
from mtrlrec.envs.choice import ExponentialCascade
from mtrlrec.envs.slate import SlateEnv
from mtrlrec.eval import slate_ope
from mtrlrec.eval.ope_checks import check_slate_log
from mtrlrec.train.result import Result, RunContext

CLICK_MODELS = ("multinomial", "cascade", "independent")


def _env(click_model: str, num_candidates: int, slate_size: int) -> SlateEnv:
    choice = ExponentialCascade() if click_model == "cascade" else None
    return SlateEnv(num_candidates=num_candidates, slate_size=slate_size, choice_model=choice)


def _round(env, params, click_model, slate_size, per_slot, beta_play, beta_b, beta_e, key):
    """One user: the slate drawn with ``beta_play``; per-slot probabilities under both policies; slot rewards."""
    k_reset, k_pick, k_click = jax.random.split(key, 3)
    obs, state = env.reset_env(k_reset, params)
    aff = (obs["doc"] @ obs["user"]).reshape(slate_size, per_slot)  # [K, g]
    pb = jax.nn.softmax(beta_b * aff, axis=1)
    pe = jax.nn.softmax(beta_e * aff, axis=1)
    pick = jax.random.categorical(k_pick, beta_play * aff, axis=1)  # [K]
    action = pick + jnp.arange(slate_size) * per_slot
    slots = jnp.arange(slate_size)
    if click_model == "independent":
        p = env.click_probabilities(obs, params)[action]
        reward = (jax.random.uniform(k_click, (slate_size,)) < p).astype(jnp.float32)
    else:
        reward = env.step_env(k_click, state, action, params)[5]["slate_click"]
    return pb[slots, pick], pe[slots, pick], reward, action


@functools.lru_cache(maxsize=8)
def _simulate(click_model, slate_size, per_slot, beta_b, beta_e, log_sizes, num_logs,
              num_truth_users, seed):
    env = _env(click_model, slate_size * per_slot, slate_size)
    params = env.default_params()
    one = functools.partial(_round, env, params, click_model, slate_size, per_slot)
    n_max = max(log_sizes)
    k_truth, k_logs = jax.random.split(jax.random.key(seed))

    @jax.jit
    def truth_chunk(keys):
        _, _, r, _ = jax.vmap(lambda k: one(beta_e, beta_b, beta_e, k))(keys)
        return jnp.sum(r), jnp.sum(jnp.sum(r, 1) ** 2)

    chunk = 100_000
    s = s2 = 0.0
    n_truth = -(-num_truth_users // chunk) * chunk
    for c in range(n_truth // chunk):
        a, b = truth_chunk(jax.random.split(jax.random.fold_in(k_truth, c), chunk))
        s, s2 = s + float(a), s2 + float(b)
    truth = s / n_truth
    truth_se = math.sqrt(max(s2 / n_truth - truth ** 2, 0.0) / n_truth)

    @jax.jit
    def log_estimates(key):
        pb, pe, r, action = jax.vmap(lambda k: one(beta_b, beta_b, beta_e, k))(jax.random.split(key, n_max))
        out = {n: {name: v for name, (v, _) in slate_ope.slate_estimates(pe[:n], pb[:n], r[:n]).items()}
               for n in log_sizes}
        return out, (pb[:8], r[:8], action[:8])

    per_log = []
    for i in range(num_logs):
        est, (pb0, r0, a0) = log_estimates(jax.random.fold_in(k_logs, i))
        if i == 0:  # the simulated log passes the same checks as a user's
            check_slate_log(np.asarray(a0), np.asarray(pb0), np.asarray(r0),
                            num_items=slate_size * per_slot, slate_size=slate_size)
        per_log.append(jax.tree.map(float, est))
    stats = {}
    for n in log_sizes:
        for name in slate_ope.SLATE_ESTIMATORS:
            v = np.array([e[n][name] for e in per_log])
            bias = v.mean() - truth
            sd = v.std(ddof=1)
            stats[(name, n)] = {
                "mean": v.mean(), "bias": bias, "bias_se": math.sqrt(sd ** 2 / len(v) + truth_se ** 2),
                "sd": sd, "rmse": math.sqrt(np.mean((v - truth) ** 2)),
                # SE of the RMSE by the delta method on the mean squared error
                "rmse_se": float(np.std((v - truth) ** 2, ddof=1) / math.sqrt(len(v))
                                 / (2 * max(math.sqrt(np.mean((v - truth) ** 2)), 1e-12))),
            }
    return truth, truth_se, stats


@gin.configurable
class SlateOPERunner:
    """One cell of the slate OPE table: an estimator at a log size under a click model.

    Args:
      click_model: ``'multinomial'``, ``'cascade'`` or ``'independent'`` (module doc).
      estimator: one of :data:`mtrlrec.eval.slate_ope.SLATE_ESTIMATORS` or ``'truth'``.
      log_size: rounds per log (must be one of ``log_sizes``).
      log_sizes: every log size simulated (the rows of a table share one simulation).
      slate_size: K slots; items_per_slot: candidates per slot.
      logging_beta, target_beta: inverse temperatures of the two policies.
      num_logs: independent logs (replications) for bias, SD and RMSE.
      num_truth_users: on-policy users for the truth.
    """

    def __init__(self, click_model: str = "independent", estimator: str = "pi", log_size: int = 1000,
                 log_sizes=(300, 1000, 3000, 10_000), slate_size: int = 3, items_per_slot: int = 4,
                 logging_beta: float = 0.0, target_beta: float = 3.0, num_logs: int = 200,
                 num_truth_users: int = 1_000_000):
        n = type(self).__name__
        if click_model not in CLICK_MODELS:
            raise ConfigError(f"{n}.click_model must be one of {CLICK_MODELS}, got {click_model!r}.")
        if estimator not in slate_ope.SLATE_ESTIMATORS + ("truth",):
            raise ConfigError(f"{n}.estimator must be one of {slate_ope.SLATE_ESTIMATORS + ('truth',)}, "
                              f"got {estimator!r}.")
        self.log_sizes = tuple(check_int(f"{n}.log_sizes", s, min_value=2) for s in log_sizes)
        self.log_size = check_int(f"{n}.log_size", log_size, min_value=2)
        if self.log_size not in self.log_sizes:
            raise ConfigError(f"{n}.log_size {log_size} must be one of {n}.log_sizes {self.log_sizes}.")
        self.click_model, self.estimator = click_model, estimator
        self.slate_size = check_int(f"{n}.slate_size", slate_size, min_value=1)
        self.items_per_slot = check_int(f"{n}.items_per_slot", items_per_slot, min_value=1)
        self.logging_beta = check_float(f"{n}.logging_beta", logging_beta)
        self.target_beta = check_float(f"{n}.target_beta", target_beta)
        self.num_logs = check_int(f"{n}.num_logs", num_logs, min_value=2)
        self.num_truth_users = check_int(f"{n}.num_truth_users", num_truth_users, min_value=1000)

    def __call__(self, ctx: RunContext) -> Result:
        truth, truth_se, stats = _simulate(
            self.click_model, self.slate_size, self.items_per_slot, self.logging_beta,
            self.target_beta, self.log_sizes, self.num_logs, self.num_truth_users, ctx.seed)
        if self.estimator == "truth":
            final = {"estimate": np.array([truth]), "truth": np.array([truth])}
            return Result(final=final, stderr={"estimate": np.array(truth_se), "truth": np.array(truth_se)},
                          primary=None)
        s = stats[(self.estimator, self.log_size)]
        final = {"estimate": np.array([s["mean"]]), "truth": np.array([truth]), "bias": np.array([s["bias"]]),
                 "sd": np.array([s["sd"]]), "rmse": np.array([s["rmse"]])}
        stderr = {"estimate": np.array(s["sd"] / math.sqrt(self.num_logs)), "truth": np.array(truth_se),
                  "bias": np.array(s["bias_se"]), "rmse": np.array(s["rmse_se"])}
        lines = [f"Click model {self.click_model}; truth {truth:.4f} ± {truth_se:.4f} "
                 f"({self.num_truth_users:,} on-policy users); {self.num_logs} logs.", "",
                 "| estimator | n | mean | bias ± SE | SD | RMSE |", "|---|---|---|---|---|---|"]
        for (name, n), v in sorted(stats.items(), key=lambda t: (t[0][0], t[0][1])):
            lines.append(f"| {name} | {n} | {v['mean']:.4f} | {v['bias']:+.4f} ± {v['bias_se']:.4f} | "
                         f"{v['sd']:.4f} | {v['rmse']:.4f} |")
        return Result(final=final, stderr=stderr, primary=None,
                      tables={f"Slate OPE ({self.click_model})": "\n".join(lines)})


__all__ = ["CLICK_MODELS", "SlateOPERunner"]
