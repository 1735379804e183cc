"""Evaluation: ranking metrics, off-policy estimators, statistics for A/B tests.

* :mod:`mtrlrec.eval.ranking` — precision/recall/HR/NDCG@k (pessimistic ties),
  MRR, catalogue coverage, intra-list diversity.
* :mod:`mtrlrec.eval.ope` — IPS, SNIPS, DM, DR, SNDR, switch-DR, clipping,
  position-wise variants and bootstrap confidence intervals.
* :mod:`mtrlrec.eval.stats` — mean ± SE, confidence intervals, Welch's test,
  sample sizes and power.

The runners that use them (off-policy evaluation on OBD, simulated A/B tests)
are in :mod:`mtrlrec.runners`.
"""
