r"""Off-policy evaluation on the Open Bandit Dataset, following Saito et al. 2021 §5.

Protocol (Saito et al., arXiv:2008.07146, §5 "Benchmark experiments", in-sample
case; obp docs "Evaluation of OPE"): OBD logged the same campaign with two
policies at the same time, so each log is the *ground truth* for the other
policy. For a campaign (``all``, ``men``, ``women``):

* ``evaluation='bts'``: estimate the value of Bernoulli TS from the uniform-random
  log; the ground truth is the mean click of the BTS log.
* ``evaluation='random'``: estimate the value of the random policy from the BTS
  log; the ground truth is the mean click of the random log.

The evaluation policies' action distributions come from the policies
themselves: uniform :math:`1/A` at every position for random; for Bernoulli TS,
a Monte-Carlo estimate over the production Beta prior shipped by obp
(``obp/policy/conf/prior_bts.yaml``): draw :math:`\theta_a \sim
\mathrm{Beta}(\alpha_a, \beta_a)` for every item, show the top three in
decreasing order at positions 0, 1, 2, and count (obp's
``BernoulliTS.compute_batch_action_dist``, 100,000 draws by default).

Estimators: :func:`mtrlrec.eval.ope.obp_estimators` (IPW, SNIPW, DM, DR, SNDR,
switch-DR over a τ grid, DR-os over a λ grid, DR with clipped weights), with
obp 0.4.1's defaults. Reward models of DM and the DR family: obp's per-position
logistic regression on the user and item features (Saito et al. §5; obp's
``RegressionModel``), cross-fitted over ``num_folds`` shuffled folds, and the
smoothed empirical click rate of each (item, position).

obp's statistic (its evaluation-of-OPE protocol, ``examples/obd``): resample the
behaviour log with replacement, refit the reward model, estimate, and take
the relative error :math:`|\hat V_b - V| / V` against the on-policy truth
(``OffPolicyEvaluation.evaluate_performance_of_estimators(metric='relative-ee')``);
report its mean over the resamples (``rel_ee``, ± its SD across resamples).
The point estimate's relative error on the full log is ``rel_error``.

The runner returns, for the estimator named by ``estimator`` (one table row):
``estimate`` and ``ground_truth`` (both in %), ``rel_error``, ``rel_ee`` (and
``empirical_rel_ee`` with the empirical reward model); and for every estimator
``<name>/estimate``, ``<name>/rel_error``, ``<name>/rel_ee`` (``empirical/<name>/...``
for the second model); ``stderr`` holds the bootstrap SEs (SD across resamples
for rel-ee; binomial SE for the ground truth). ``estimator='on_policy'``
reports the evaluation log's own click rate (ground truth itself), to compare
with the paper's full-data CTRs.
"""

from __future__ import annotations

import functools
import math

import gin
import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core.errors import ConfigError, check_float, check_int
from mtrlrec.data import obd
from mtrlrec.eval import ope, reward_models
from mtrlrec.train.result import Result, RunContext


def bts_action_dist(
    key: jax.Array,
    alpha: jax.Array,
    beta: jax.Array,
    num_positions: int = 3,
    num_samples: int = 100_000,
    chunk: int = 10_000,
) -> jax.Array:
    r"""Monte-Carlo action distribution of Bernoulli TS showing a ranked list.

    :math:`\pi(a, k) \approx \frac1S \sum_{s} \mathbb{1}[a \text{ is the } k\text{-th largest of } \theta^{(s)}]`,
    :math:`\theta^{(s)}_a \sim \mathrm{Beta}(\alpha_a, \beta_a)`.

    Args:
      key: PRNG key.
      alpha, beta: ``[A]`` Beta parameters.
      num_positions: P, the list length.
      num_samples: S (rounded up to a multiple of ``chunk``).
      chunk: draws per scan step (memory ``chunk × A``).

    Returns:
      ``[A, P]`` float32; every column sums to 1.
    """
    alpha = jnp.asarray(alpha, jnp.float32)
    beta = jnp.asarray(beta, jnp.float32)
    num_actions = alpha.shape[0]
    chunk = min(chunk, num_samples)
    steps = -(-num_samples // chunk)

    def body(counts, k):
        theta = jax.random.beta(k, alpha, beta, shape=(chunk, num_actions))
        top = jax.lax.top_k(theta, num_positions)[1]  # [chunk, P]
        onehot = jax.nn.one_hot(top, num_actions, dtype=jnp.float32)  # [chunk, P, A]
        return counts + jnp.sum(onehot, axis=0).T, None

    counts, _ = jax.lax.scan(
        body, jnp.zeros((num_actions, num_positions), jnp.float32), jax.random.split(key, steps)
    )
    return counts / (steps * chunk)


_bts_action_dist_jit = jax.jit(bts_action_dist, static_argnames=("num_positions", "num_samples", "chunk"))


@functools.lru_cache(maxsize=16)
def _bts_policy(campaign: str, data_path: str | None, num_mc: int, seed: int) -> np.ndarray:
    alpha, beta = obd.load_bts_prior(campaign, data_path)
    dist = _bts_action_dist_jit(jax.random.key(seed), alpha, beta, num_positions=3, num_samples=num_mc)
    return np.asarray(dist)


def logged_action_dist(log: obd.OBDLog, smoothing: float = 0.0) -> np.ndarray:
    """``[A, P]`` empirical frequency of each item at each position in a log (+ ``smoothing`` pseudo-counts)."""
    counts = np.full((log.num_actions, log.num_positions), smoothing, np.float64)
    np.add.at(counts, (log.action, log.position), 1.0)
    return (counts / counts.sum(axis=0, keepdims=True)).astype(np.float32)


_RESULTS: dict = {}


def _analyse(campaign, evaluation, data_path, num_mc, num_folds, prior_strength, switch_taus,
             os_lambdas, clip_lambdas, num_bootstrap, alpha, seed, bts_dist="prior",
             reward_model="obp_logistic", logistic_C=100.0):
    """All estimators for one (campaign, direction); cached so table rows share it.

    For each reward model (``reward_model`` first, then the empirical one), every
    estimator of :func:`mtrlrec.eval.ope.obp_estimators` on the full log and on
    ``num_bootstrap`` resamples of it, the reward model refitted on each resample
    (obp's protocol: ``sample_bootstrap_bandit_feedback`` then
    ``RegressionModel.fit_predict`` then ``evaluate_performance_of_estimators``).
    """
    key_ = (campaign, evaluation, data_path, num_mc, num_folds, prior_strength, switch_taus,
            os_lambdas, clip_lambdas, num_bootstrap, alpha, seed, bts_dist, reward_model, logistic_C)
    if key_ in _RESULTS:
        return _RESULTS[key_]
    behavior = "random" if evaluation == "bts" else "bts"
    log = obd.load(behavior, campaign, data_path)
    truth_log = obd.load(evaluation, campaign, data_path)
    num_actions, num_positions = log.num_actions, log.num_positions
    ope.check_logged(log.action, log.reward, log.pscore, log.position,
                     num_actions=num_actions, num_positions=num_positions,
                     name=f"OBD {behavior}/{campaign}")
    if evaluation == "bts":
        if bts_dist == "prior":
            policy = _bts_policy(campaign, data_path, num_mc, seed)
        else:  # the BTS log's own (item, position) frequencies
            policy = logged_action_dist(truth_log)
        if policy.shape != (num_actions, num_positions):
            raise ConfigError(
                f"the BTS prior of campaign {campaign} has {policy.shape[0]} items, the log "
                f"{num_actions}."
            )
        behavior_dist = np.full_like(policy, 1.0 / num_actions)
    else:
        policy = np.full((num_actions, num_positions), 1.0 / num_actions, np.float32)
        # BTS gives every item a positive probability, but the log only tells us
        # where it was seen: (item, position) cells never logged count as unsupported.
        behavior_dist = logged_action_dist(log, smoothing=0.0)
    ope.check_action_dist(policy[None], name=f"{evaluation} policy ({campaign})", atol=1e-3)
    share = ope.check_support(policy, behavior_dist, name=f"{evaluation} policy ({campaign})")
    specs = ope.obp_estimators(switch_taus, os_lambdas, clip_lambdas)

    n = log.num_rounds
    fold = jnp.asarray(reward_models.kfold_ids(seed + 1, n, num_folds))
    k_boot = jax.random.key(seed + 2)
    pol, a, k, ps, r = (jnp.asarray(policy), jnp.asarray(log.action), jnp.asarray(log.position),
                        jnp.asarray(log.pscore), jnp.asarray(log.reward))

    def empirical(counts):
        q_table = reward_models.empirical_reward_model(
            a, k, r, num_actions=num_actions, num_positions=num_positions,
            prior_strength=prior_strength, fold=fold, num_folds=num_folds, return_table=True,
            sample_weight=counts)
        inputs = ope.make_inputs_context_free(pol, a, k, ps, r, q_table, fold)
        return ope.estimate_specs(inputs, specs, sample_weight=counts)

    x, ac = jnp.asarray(log.context()), jnp.asarray(log.action_context())
    full_lr = reward_models.fit_obp_logistic(
        x, ac, a, log.position, r, num_positions=num_positions, fold=fold, num_folds=num_folds, C=logistic_C)

    def obp_logistic(counts):
        # refitted on every resample, warm-started at the full-data fit
        params = reward_models.fit_obp_logistic(
            x, ac, a, log.position, r, num_positions=num_positions, fold=fold, num_folds=num_folds,
            C=logistic_C, sample_weight=counts, init=full_lr, iters=4)
        inputs = reward_models.obp_logistic_inputs(params, x, ac, pol, a, k, ps, r, fold)
        return ope.estimate_specs(inputs, specs, sample_weight=counts)

    if reward_model == "logistic":
        lparams = reward_models.fit_logistic_reward_model(
            x, a, k, r, num_actions=num_actions, num_positions=num_positions, fold=fold,
            num_folds=num_folds)
        fixed = reward_models.logistic_inputs(lparams, x, pol, a, k, ps, r, fold)

        def adam_logistic(counts):  # fitted once, fixed in the bootstrap
            return ope.estimate_specs(fixed, specs, sample_weight=counts)

    models = {"empirical": empirical, "obp_logistic": obp_logistic}
    if reward_model == "logistic":
        models["logistic"] = adam_logistic
    truth = truth_log.on_policy_value()
    truth_se = math.sqrt(truth * (1 - truth) / truth_log.num_rounds)
    ones = jnp.ones(n, jnp.float32)
    per_model = {}
    for m in dict.fromkeys((reward_model, "empirical")):
        fn = models[m]
        full = jax.jit(fn)(ones)
        samples = ope.bootstrap_map(fn, k_boot, n, num_bootstrap, batch_size=8)
        boot = ope.summarize_bootstrap(full, samples, alpha)
        res = {}
        for sp in specs:
            b = boot[sp.name]
            smp = np.asarray(b.samples, np.float64)
            rel = np.abs(smp - truth) / truth  # obp's relative-ee on each resample
            res[sp.name] = {
                "estimate": float(b.estimate), "se": float(b.se), "low": float(b.low),
                "high": float(b.high), "rel_error": abs(float(b.estimate) - truth) / truth,
                "rel_ee": float(np.nanmean(rel)), "rel_ee_sd": float(np.nanstd(rel, ddof=1)),
                "rel_low": float(np.nanquantile(rel, alpha / 2)),
                "rel_high": float(np.nanquantile(rel, 1 - alpha / 2)),
            }
        per_model[m] = res
    weights = np.asarray(policy)[log.action, log.position] / log.pscore
    # position-aware view (item-position model): one value per slot, empirical model
    q_full = reward_models.empirical_reward_model(
        a, k, r, num_actions=num_actions, num_positions=num_positions,
        prior_strength=prior_strength, fold=fold, num_folds=num_folds, return_table=True)
    by_pos = ope.estimate_by_position(
        ope.make_inputs_context_free(pol, a, k, ps, r, q_full, fold), num_positions,
        switch_tau=100.0)
    truth_by_pos = np.array([truth_log.reward[truth_log.position == j].mean()
                             for j in range(num_positions)])
    out = {"truth": truth, "truth_se": truth_se, "unsupported": share,
           "max_weight": float(weights.max()), "n": n, "specs": specs, "models": per_model,
           "primary": reward_model,
           "by_position": {j: np.asarray(v, np.float64) for j, v in by_pos.items()},
           "truth_by_position": truth_by_pos}
    _RESULTS[key_] = out
    return out


@gin.configurable
class OBDOPERunner:
    """Evaluates one policy of OBD off-policy from the other policy's log (Saito et al. §5).

    Args:
      campaign: ``'all'``, ``'men'`` or ``'women'``.
      evaluation: the policy to evaluate, ``'bts'`` (from the random log) or
        ``'random'`` (from the BTS log).
      estimator: which estimator this row reports as ``estimate``/``rel_error``/``rel_ee``:
        a name of :func:`mtrlrec.eval.ope.obp_estimators` (``ipw``, ``snipw``, ``dm``,
        ``dr``, ``sndr``, ``switch_dr_t<τ>``, ``dr_os_l<λ>``, ``dr_clip_l<λ>``) or
        ``'on_policy'``.
      data_path: None for the committed sample, else an OBD directory
        (``mtrlrec data obd`` output or the full dataset).
      num_mc: Monte-Carlo draws for the BTS action distribution.
      num_folds: cross-fitting folds of the reward model (obp's examples: 3).
      prior_strength: shrinkage pseudo-count of the empirical reward model.
      switch_taus, os_lambdas, clip_lambdas: the grids of switch-DR's τ, DR-os's
        λ and the clipping λ of DR (obp's defaults τ = 1 and λ = 0 first).
      num_bootstrap: bootstrap resamples (obp's protocol; the reward model is
        refitted on each).
      alpha: 1 - confidence level of the intervals.
      reward_model: the DM/DR model of the row's cells: ``'obp_logistic'``
        (obp's ``RegressionModel`` with ``LogisticRegression(C)``: one logistic
        regression per position on the user features and the item's features,
        cross-fitted, refitted on every resample), ``'empirical'`` (smoothed
        click rate per item and position) or ``'logistic'`` (one Adam-fitted
        logistic model with per-item context effects, fixed in the bootstrap).
        The empirical model's relative error is always reported beside it.
      logistic_C: sklearn's C of the per-position logistic regressions (default 100, our setting).
      bts_dist: how the BTS evaluation policy's action distribution is obtained:
        ``'prior'`` (Monte Carlo over obp's production prior, as the paper) or
        ``'logged'`` (the item-position frequencies of the BTS log itself, a
        diagnostic: the sample's BTS log is far from the prior's distribution).
    """

    def __init__(
        self,
        campaign: str = "all",
        evaluation: str = "bts",
        estimator: str = "dr",
        data_path: str | None = None,
        num_mc: int = 100_000,
        num_folds: int = 3,
        prior_strength: float = 10.0,
        switch_taus=(1.0, 10.0, 100.0, 1000.0),
        os_lambdas=(0.0, 1.0, 100.0, 10_000.0),
        clip_lambdas=(10.0, 100.0, 1000.0),
        num_bootstrap: int = 1000,
        alpha: float = 0.05,
        bts_dist: str = "prior",
        reward_model: str = "obp_logistic",
        logistic_C: float = 100.0,
    ):
        if campaign not in obd.CAMPAIGNS:
            raise ConfigError(f"OBDOPERunner.campaign must be one of {obd.CAMPAIGNS}, got {campaign!r}.")
        if evaluation not in obd.POLICIES:
            raise ConfigError(f"OBDOPERunner.evaluation must be one of {obd.POLICIES}, got {evaluation!r}.")
        self.switch_taus = tuple(float(t) for t in switch_taus)
        self.os_lambdas = tuple(float(t) for t in os_lambdas)
        self.clip_lambdas = tuple(float(t) for t in clip_lambdas)
        names = tuple(sp.name for sp in ope.obp_estimators(
            self.switch_taus, self.os_lambdas, self.clip_lambdas)) + ("on_policy",)
        if estimator not in names:
            raise ConfigError(f"OBDOPERunner.estimator must be one of {names}, got {estimator!r}.")
        self.campaign, self.evaluation, self.estimator = campaign, evaluation, estimator
        self.data_path = None if data_path is None else str(data_path)
        self.num_mc = check_int("OBDOPERunner.num_mc", num_mc, min_value=1000)
        self.num_folds = check_int("OBDOPERunner.num_folds", num_folds, min_value=1)
        self.prior_strength = check_float("OBDOPERunner.prior_strength", prior_strength, low=0.0)
        self.num_bootstrap = check_int("OBDOPERunner.num_bootstrap", num_bootstrap, min_value=2)
        self.alpha = check_float("OBDOPERunner.alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
        self.logistic_C = check_float("OBDOPERunner.logistic_C", logistic_C, low=0.0, low_open=True)
        if bts_dist not in ("prior", "logged"):
            raise ConfigError(f"OBDOPERunner.bts_dist must be 'prior' or 'logged', got {bts_dist!r}.")
        self.bts_dist = bts_dist
        if reward_model not in ("obp_logistic", "empirical", "logistic"):
            raise ConfigError(
                "OBDOPERunner.reward_model must be 'obp_logistic', 'empirical' or 'logistic', "
                f"got {reward_model!r}.")
        self.reward_model = reward_model

    def analyse(self, seed: int = 0) -> dict:
        """All estimators' estimates, CIs and relative errors (cached per process)."""
        return _analyse(self.campaign, self.evaluation, self.data_path, self.num_mc,
                        self.num_folds, self.prior_strength, self.switch_taus, self.os_lambdas,
                        self.clip_lambdas, self.num_bootstrap, self.alpha, seed, self.bts_dist,
                        self.reward_model, self.logistic_C)

    def __call__(self, ctx: RunContext) -> Result:
        if self.estimator == "on_policy":  # the log's own click rate: no estimation
            truth_log = obd.load(self.evaluation, self.campaign, self.data_path)
            truth = truth_log.on_policy_value()
            se = math.sqrt(truth * (1 - truth) / truth_log.num_rounds)
            zero = np.array([0.0])
            return Result(
                final={"estimate": np.array([100 * truth]), "ground_truth": np.array([100 * truth]),
                       "rel_error": zero, "rel_ee": zero, "empirical_rel_ee": zero},
                stderr={"estimate": np.array(100 * se), "ground_truth": np.array(100 * se)},
                primary=None,
                tables={f"On-policy CTR of the {self.evaluation} log ({self.campaign})":
                        truth_log.rejection_report()})
        res = self.analyse(ctx.seed)
        truth = res["truth"]
        final, stderr = {}, {}
        for m, by_name in res["models"].items():
            pre = "" if m == res["primary"] else f"{m}/"
            for name, e in by_name.items():
                final[f"{pre}{name}/estimate"] = np.array([100 * e["estimate"]])
                stderr[f"{pre}{name}/estimate"] = np.array(100 * e["se"])
                final[f"{pre}{name}/rel_error"] = np.array([e["rel_error"]])
                final[f"{pre}{name}/rel_ee"] = np.array([e["rel_ee"]])
                stderr[f"{pre}{name}/rel_ee"] = np.array(e["rel_ee_sd"])
        final["ground_truth"] = np.array([100 * truth])
        stderr["ground_truth"] = np.array(100 * res["truth_se"])
        final["estimate"] = final[f"{self.estimator}/estimate"]
        stderr["estimate"] = stderr[f"{self.estimator}/estimate"]
        final["rel_error"] = final[f"{self.estimator}/rel_error"]
        final["rel_ee"] = final[f"{self.estimator}/rel_ee"]
        stderr["rel_ee"] = stderr[f"{self.estimator}/rel_ee"]
        emp = "" if res["primary"] == "empirical" else "empirical/"
        final["empirical_rel_ee"] = final[f"{emp}{self.estimator}/rel_ee"]
        stderr["empirical_rel_ee"] = stderr[f"{emp}{self.estimator}/rel_ee"]
        behavior = "random" if self.evaluation == "bts" else "bts"
        pct = int(round(100 * (1 - self.alpha)))
        lines = [
            f"Value of **{self.evaluation}** on campaign **{self.campaign}**, estimated from "
            f"the {behavior} log ({res['n']} rows); ground truth = mean click of the "
            f"{self.evaluation} log = {100 * truth:.4f} % ± {100 * res['truth_se']:.4f} (SE). "
            f"Largest importance weight {res['max_weight']:.1f}; unsupported mass "
            f"{100 * res['unsupported']:.2f} %. rel-ee: obp's relative error, mean ± SD over "
            f"{self.num_bootstrap} bootstrap resamples (reward model refitted on each).",
        ]
        for m, by_name in res["models"].items():
            lines += ["", f"Reward model: {m}", "",
                      f"| estimator | estimate (%) | {pct}% CI | relative error | rel-ee (bootstrap) |",
                      "|---|---|---|---|---|"]
            for sp in res["specs"]:
                e = by_name[sp.name]
                lines.append(
                    f"| {sp.label} | {100 * e['estimate']:.4f} | [{100 * e['low']:.4f}, "
                    f"{100 * e['high']:.4f}] | {e['rel_error']:.3f} | {e['rel_ee']:.3f} ± "
                    f"{e['rel_ee_sd']:.3f} |")
        pos_names = ("ipw", "snipw", "dm", "dr", "sndr", "switch_dr")
        pos = [
            "",
            "Per position (item-position model; empirical reward model; switch-DR τ = 100), in %:",
            "",
            "| position | truth | " + " | ".join(pos_names) + " |",
            "|---" * (len(pos_names) + 2) + "|",
        ]
        for j, t in enumerate(res["truth_by_position"]):
            cells = " | ".join(f"{100 * res['by_position'][e][j]:.4f}" for e in pos_names)
            pos.append(f"| {j} | {100 * t:.4f} | {cells} |")
        return Result(final=final, stderr=stderr, primary=None,
                      tables={f"OPE {self.evaluation} from {behavior} ({self.campaign})": "\n".join(lines + pos)})


__all__ = ["OBDOPERunner", "bts_action_dist", "logged_action_dist"]
