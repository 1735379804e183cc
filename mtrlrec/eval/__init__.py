"""Evaluation: ranking metrics, off-policy estimators, statistics for A/B tests.

* :mod:`mtrlrec.eval.ranking` — precision/recall/HR/NDCG@k (pessimistic ties),
  MRR, catalogue coverage, intra-list diversity.
* :mod:`mtrlrec.eval.ope` — IPS, SNIPS, DM, DR, SNDR, switch-DR, DR-os, clipping,
  obp's estimator grid, position-wise variants and bootstrap resampling.
* :mod:`mtrlrec.eval.reward_models` — reward models for DM/DR: empirical click
  rates, obp's per-position logistic regression (cross-fitted), a contextual
  logistic model.
* :mod:`mtrlrec.eval.ope_checks` — one-line input checks of logs, policies and
  slate logs; the support warning.
* :mod:`mtrlrec.eval.slate_ope` — slate estimators: standard, independent and
  reward-interaction IPS, pseudo-inverse.
* :mod:`mtrlrec.eval.stats` — mean ± SE, confidence intervals, Welch's test,
  sample sizes and power.

The runners that use them (off-policy evaluation on OBD, slate OPE on the
simulator, simulated A/B tests) are in :mod:`mtrlrec.runners`.
"""
