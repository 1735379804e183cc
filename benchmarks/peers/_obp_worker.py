"""Runs inside the obp 0.4.1 virtualenv (setup_obp_venv.sh); called by obp_side_by_side.py.

For one (campaign, evaluation policy) it follows the evaluation-of-OPE loop of
obp's OBD example script (examples/obd/evaluate_off_policy_estimators.py:
bootstrap resamples by sample_bootstrap_bandit_feedback(random_state=b), then
evaluate_performance_of_estimators on each), with a logistic-regression reward
model (C=100 is our setting, not obp's example configuration): the behaviour log
from obp's bundled sample, the evaluation policy's action distribution
(BernoulliTS(is_zozotown_prior=True).compute_batch_action_dist or Random),
RegressionModel(LogisticRegression(C=100, max_iter=10000)) fitted with
fit_predict(n_folds=3), OffPolicyEvaluation.estimate_policy_values and
evaluate_performance_of_estimators(metric='relative-ee') on the full log and on
bootstrap resamples (sample_bootstrap_bandit_feedback, model refitted on each).
Everything it used and produced goes to one .npz for the caller to compare.

Usage: python _obp_worker.py CAMPAIGN EVALUATION N_SIM N_BOOT OUT.npz
"""

import sys
import time
import warnings

import numpy as np

warnings.simplefilter("ignore")

from obp.dataset import OpenBanditDataset  # noqa: E402
from obp.ope import (  # noqa: E402
    DirectMethod, DoublyRobust, DoublyRobustWithShrinkage, InverseProbabilityWeighting,
    OffPolicyEvaluation, RegressionModel, SelfNormalizedDoublyRobust,
    SelfNormalizedInverseProbabilityWeighting, SwitchDoublyRobust)
from obp.policy import BernoulliTS, Random  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.model_selection import KFold  # noqa: E402

campaign, evaluation, n_sim, n_boot, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
taus = [float(t) for t in sys.argv[6].split(",")] if len(sys.argv) > 6 else [1.0]
lambdas = [float(t) for t in sys.argv[7].split(",")] if len(sys.argv) > 7 else [0.0]
RANDOM_STATE = 12345
behavior = "random" if evaluation == "bts" else "bts"

t0 = time.time()
dataset = OpenBanditDataset(behavior_policy=behavior, campaign=campaign)
fb = dataset.obtain_batch_bandit_feedback()
if evaluation == "bts":
    policy = BernoulliTS(n_actions=dataset.n_actions, len_list=dataset.len_list,
                         is_zozotown_prior=True, campaign=campaign, random_state=RANDOM_STATE)
else:
    policy = Random(n_actions=dataset.n_actions, len_list=dataset.len_list, random_state=RANDOM_STATE)
if evaluation == "bts":
    dist1 = policy.compute_batch_action_dist(n_sim=n_sim, n_rounds=1)  # [1, A, P], Monte Carlo
else:
    dist1 = policy.compute_batch_action_dist(n_rounds=1)  # exactly 1/A
truth = OpenBanditDataset.calc_on_policy_policy_value_estimate(behavior_policy=evaluation, campaign=campaign)


def fmt(v):
    return f"{v:g}"


estimators = [InverseProbabilityWeighting(estimator_name="ipw"),
              SelfNormalizedInverseProbabilityWeighting(estimator_name="snipw"),
              DirectMethod(estimator_name="dm"), DoublyRobust(estimator_name="dr"),
              SelfNormalizedDoublyRobust(estimator_name="sndr")]
estimators += [SwitchDoublyRobust(tau=t, estimator_name=f"switch_dr_t{fmt(t)}") for t in taus]
estimators += [DoublyRobustWithShrinkage(lambda_=lam, estimator_name=f"dr_os_l{fmt(lam)}") for lam in lambdas]
names = [e.estimator_name for e in estimators]


def run(feedback, seed):
    reg = RegressionModel(n_actions=dataset.n_actions, len_list=dataset.len_list,
                          action_context=dataset.action_context,
                          base_model=LogisticRegression(C=100, max_iter=10000, random_state=RANDOM_STATE))
    q = reg.fit_predict(context=feedback["context"], action=feedback["action"],
                        reward=feedback["reward"], position=feedback["position"],
                        n_folds=3, random_state=seed)
    dist = np.tile(dist1[0], (feedback["n_rounds"], 1, 1))
    ope = OffPolicyEvaluation(bandit_feedback=feedback, ope_estimators=estimators)
    est = ope.estimate_policy_values(action_dist=dist, estimated_rewards_by_reg_model=q)
    rel = ope.evaluate_performance_of_estimators(
        ground_truth_policy_value=truth, action_dist=dist, estimated_rewards_by_reg_model=q,
        metric="relative-ee")
    return q, est, rel


q, est, rel = run(fb, RANDOM_STATE)
fold = np.empty(fb["n_rounds"], np.int32)
for f, (_, test) in enumerate(KFold(n_splits=3, shuffle=True, random_state=RANDOM_STATE).split(fb["context"])):
    fold[test] = f
boot = np.full((n_boot, len(names)), np.nan)
boot_idx = np.zeros((n_boot, fb["n_rounds"]), np.int32)
for b in range(n_boot):
    bf = dataset.sample_bootstrap_bandit_feedback(random_state=b)
    boot_idx[b] = np.random.RandomState(b).choice(np.arange(fb["n_rounds"]), size=fb["n_rounds"], replace=True)
    _, _, rel_b = run(bf, RANDOM_STATE)
    boot[b] = [rel_b[n] for n in names]
np.savez(out, names=np.array(names), action=fb["action"], position=fb["position"],
         reward=fb["reward"], pscore=fb["pscore"], context=fb["context"].astype(np.float64),
         action_context=dataset.action_context.astype(np.float64), action_dist=dist1[0],
         q=q, fold=fold, estimate=np.array([est[n] for n in names], np.float64),
         rel_ee=np.array([rel[n] for n in names], np.float64), boot_rel_ee=boot, boot_idx=boot_idx,
         truth=truth, seconds=time.time() - t0)
print(f"obp worker {campaign}/{evaluation}: {time.time() - t0:.1f} s")
