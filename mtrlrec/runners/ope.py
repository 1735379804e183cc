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

Estimators: :data:`mtrlrec.eval.ope.ESTIMATORS`. The reward model of DM/DR is
the smoothed empirical click rate of each (item, position), cross-fitted over
``num_folds`` random folds (the paper uses context-based classifiers; on the
10,000-row sample with ~40 clicks a context model has nothing to learn from).
Relative error is :math:`|\hat V - V| / V` (Saito et al. §5). Confidence
intervals and standard errors come from a nonparametric bootstrap of the
behaviour log (one vmapped call for all estimators).

The runner returns, for the estimator named by ``estimator`` (one table row):
``estimate`` and ``ground_truth`` (both in %), ``rel_error``; and for every
estimator ``<name>/estimate`` and ``<name>/rel_error``; ``stderr`` holds the
bootstrap SEs (binomial SE for the ground truth). ``estimator='on_policy'``
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
from mtrlrec.eval import ope
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


def _analyse(campaign, evaluation, data_path, num_mc, num_folds, prior_strength, clip,
             switch_tau, num_bootstrap, alpha, seed, bts_dist="prior", reward_model="empirical"):
    """All estimators for one (campaign, direction); cached so table rows share it."""
    key_ = (campaign, evaluation, data_path, num_mc, num_folds, prior_strength, clip,
            switch_tau, num_bootstrap, alpha, seed, bts_dist, reward_model)
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

    k_fold, k_boot = jax.random.split(jax.random.key(seed + 1))
    n = log.num_rounds
    fold = jax.random.randint(k_fold, (n,), 0, num_folds)
    arrays = (jnp.asarray(policy), jnp.asarray(log.action), jnp.asarray(log.position),
              jnp.asarray(log.pscore), jnp.asarray(log.reward), fold)

    def estimates(counts):
        # the reward model is refitted on every bootstrap replicate, so DM's
        # interval reflects the model's own sampling noise.
        pol, a, k, ps, r, f = arrays
        q_table = ope.empirical_reward_model(
            a, k, r, num_actions=num_actions, num_positions=num_positions,
            prior_strength=prior_strength, fold=f, num_folds=num_folds, return_table=True,
            sample_weight=counts)
        inputs = ope.make_inputs_context_free(pol, a, k, ps, r, q_table, f)
        return ope.estimate(inputs, sample_weight=counts, clip=clip, switch_tau=switch_tau)

    if reward_model == "logistic":
        # a contextual click model, fitted once (cross-fitted); the bootstrap
        # keeps it fixed (refitting 1,000 times is too slow on a CPU), so DM's
        # interval omits the model's own sampling noise.
        features = jnp.asarray(log.context())
        lparams = ope.fit_logistic_reward_model(
            features, arrays[1], arrays[2], arrays[4], num_actions=num_actions,
            num_positions=num_positions, fold=fold, num_folds=num_folds)
        fixed = ope.logistic_inputs(lparams, features, arrays[0], arrays[1], arrays[2],
                                    arrays[3], arrays[4], fold)

        def estimates(counts):  # noqa: F811
            return ope.estimate(fixed, sample_weight=counts, clip=clip, switch_tau=switch_tau)

    full = jax.jit(estimates)(jnp.ones(n, jnp.float32))
    samples = ope.bootstrap_map(estimates, k_boot, n, num_bootstrap)
    boot = ope.summarize_bootstrap(full, samples, alpha)
    weights = np.asarray(policy)[log.action, log.position] / log.pscore
    # position-aware view (item-position model): one value per slot
    q_full = ope.empirical_reward_model(
        arrays[1], arrays[2], arrays[4], num_actions=num_actions, num_positions=num_positions,
        prior_strength=prior_strength, fold=fold, num_folds=num_folds, return_table=True)
    by_pos = ope.estimate_by_position(
        ope.make_inputs_context_free(arrays[0], arrays[1], arrays[2], arrays[3], arrays[4],
                                     q_full, fold),
        num_positions, clip=clip, switch_tau=switch_tau)
    truth_by_pos = np.array([truth_log.reward[truth_log.position == k].mean()
                             for k in range(num_positions)])
    truth = truth_log.on_policy_value()
    truth_se = math.sqrt(truth * (1 - truth) / truth_log.num_rounds)
    out = {"truth": truth, "truth_se": truth_se, "unsupported": share,
           "max_weight": float(weights.max()), "n": n,
           "by_position": {k: np.asarray(v, np.float64) for k, v in by_pos.items()},
           "truth_by_position": truth_by_pos}
    for name, b in boot.items():
        samples = np.asarray(b.samples, np.float64)
        rel = np.abs(samples - truth) / truth
        out[name] = {
            "estimate": float(b.estimate), "se": float(b.se), "low": float(b.low),
            "high": float(b.high), "rel_error": abs(float(b.estimate) - truth) / truth,
            "rel_se": float(rel.std(ddof=1)),
            "rel_low": float(np.quantile(rel, alpha / 2)),
            "rel_high": float(np.quantile(rel, 1 - alpha / 2)),
        }
    _RESULTS[key_] = out
    return out


@gin.configurable
class OBDOPERunner:
    """Evaluates one policy of OBD off-policy from the other policy's log (Saito et al. §5).

    Args:
      campaign: ``'all'``, ``'men'`` or ``'women'``.
      evaluation: the policy to evaluate, ``'bts'`` (from the random log) or
        ``'random'`` (from the BTS log).
      estimator: which estimator this row reports as ``estimate``/``rel_error``:
        one of :data:`mtrlrec.eval.ope.ESTIMATORS` or ``'on_policy'``.
      data_path: None for the committed sample, else an OBD directory
        (``mtrlrec data obd`` output or the full dataset).
      num_mc: Monte-Carlo draws for the BTS action distribution.
      num_folds: cross-fitting folds of the reward model.
      prior_strength: shrinkage pseudo-count of the reward model.
      clip: importance-weight clipping threshold (None: no clipping).
      switch_tau: threshold τ of switch-DR.
      num_bootstrap: bootstrap replicates.
      alpha: 1 - confidence level of the intervals.
      reward_model: the DM/DR model: ``'empirical'`` (smoothed click rate per
        item and position, refitted on every bootstrap replicate) or
        ``'logistic'`` (L2 logistic regression on the user features, item and
        position, :func:`mtrlrec.eval.ope.fit_logistic_reward_model`; fitted
        once, fixed in the bootstrap).
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
        clip: float | None = None,
        switch_tau: float = 100.0,
        num_bootstrap: int = 1000,
        alpha: float = 0.05,
        bts_dist: str = "prior",
        reward_model: str = "empirical",
    ):
        if campaign not in obd.CAMPAIGNS:
            raise ConfigError(f"OBDOPERunner.campaign must be one of {obd.CAMPAIGNS}, got {campaign!r}.")
        if evaluation not in obd.POLICIES:
            raise ConfigError(f"OBDOPERunner.evaluation must be one of {obd.POLICIES}, got {evaluation!r}.")
        if estimator not in ope.ESTIMATORS + ("on_policy",):
            raise ConfigError(
                f"OBDOPERunner.estimator must be one of {ope.ESTIMATORS + ('on_policy',)}, got {estimator!r}."
            )
        self.campaign, self.evaluation, self.estimator = campaign, evaluation, estimator
        self.data_path = None if data_path is None else str(data_path)
        self.num_mc = check_int("OBDOPERunner.num_mc", num_mc, min_value=1000)
        self.num_folds = check_int("OBDOPERunner.num_folds", num_folds, min_value=1)
        self.prior_strength = check_float("OBDOPERunner.prior_strength", prior_strength, low=0.0)
        self.clip = math.inf if clip is None else check_float("OBDOPERunner.clip", clip, low=0.0, low_open=True)
        self.switch_tau = check_float("OBDOPERunner.switch_tau", switch_tau, low=0.0)
        self.num_bootstrap = check_int("OBDOPERunner.num_bootstrap", num_bootstrap, min_value=2)
        self.alpha = check_float("OBDOPERunner.alpha", alpha, low=0.0, high=1.0, low_open=True, high_open=True)
        if bts_dist not in ("prior", "logged"):
            raise ConfigError(f"OBDOPERunner.bts_dist must be 'prior' or 'logged', got {bts_dist!r}.")
        self.bts_dist = bts_dist
        if reward_model not in ("empirical", "logistic"):
            raise ConfigError(
                f"OBDOPERunner.reward_model must be 'empirical' or 'logistic', got {reward_model!r}.")
        self.reward_model = reward_model

    def analyse(self, seed: int = 0) -> dict:
        """All estimators' estimates, CIs and relative errors (cached per process)."""
        return _analyse(self.campaign, self.evaluation, self.data_path, self.num_mc,
                        self.num_folds, self.prior_strength, self.clip, self.switch_tau,
                        self.num_bootstrap, self.alpha, seed, self.bts_dist, self.reward_model)

    def __call__(self, ctx: RunContext) -> Result:
        res = self.analyse(ctx.seed)
        truth = res["truth"]
        final, stderr = {}, {}
        for name in ope.ESTIMATORS:
            final[f"{name}/estimate"] = np.array([100 * res[name]["estimate"]])
            stderr[f"{name}/estimate"] = np.array(100 * res[name]["se"])
            final[f"{name}/rel_error"] = np.array([res[name]["rel_error"]])
            stderr[f"{name}/rel_error"] = np.array(res[name]["rel_se"])
        final["ground_truth"] = np.array([100 * truth])
        stderr["ground_truth"] = np.array(100 * res["truth_se"])
        if self.estimator == "on_policy":
            final["estimate"], stderr["estimate"] = final["ground_truth"], stderr["ground_truth"]
            final["rel_error"], stderr["rel_error"] = np.array([0.0]), np.array(0.0)
        else:
            for k in ("estimate", "rel_error"):
                final[k] = final[f"{self.estimator}/{k}"]
                stderr[k] = stderr[f"{self.estimator}/{k}"]
        behavior = "random" if self.evaluation == "bts" else "bts"
        pct = int(round(100 * (1 - self.alpha)))
        lines = [
            f"Value of **{self.evaluation}** on campaign **{self.campaign}**, estimated from "
            f"the {behavior} log ({res['n']} rows); ground truth = mean click of the "
            f"{self.evaluation} log = {100 * truth:.4f} % ± {100 * res['truth_se']:.4f} (SE). "
            f"Largest importance weight {res['max_weight']:.1f}; unsupported mass "
            f"{100 * res['unsupported']:.2f} %.",
            "",
            f"| estimator | estimate (%) | {pct}% CI | relative error | {pct}% CI |",
            "|---|---|---|---|---|",
        ]
        for name in ope.ESTIMATORS:
            e = res[name]
            lines.append(
                f"| {name} | {100 * e['estimate']:.4f} | [{100 * e['low']:.4f}, {100 * e['high']:.4f}] "
                f"| {e['rel_error']:.3f} | [{e['rel_low']:.3f}, {e['rel_high']:.3f}] |"
            )
        pos = [
            "",
            "Per position (item-position model; the slate's value is their sum), in %:",
            "",
            "| position | truth | " + " | ".join(ope.ESTIMATORS) + " |",
            "|---" * (len(ope.ESTIMATORS) + 2) + "|",
        ]
        for k, t in enumerate(res["truth_by_position"]):
            cells = " | ".join(f"{100 * res['by_position'][e][k]:.4f}" for e in ope.ESTIMATORS)
            pos.append(f"| {k} | {100 * t:.4f} | {cells} |")
        return Result(final=final, stderr=stderr, primary=None,
                      tables={f"OPE {self.evaluation} from {behavior} ({self.campaign})": "\n".join(lines + pos)})


__all__ = ["OBDOPERunner", "bts_action_dist", "logged_action_dist"]
