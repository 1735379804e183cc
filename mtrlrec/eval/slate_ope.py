r"""Off-policy estimators for slate policies from logged slates, pure JAX.

Setting (Swaminathan et al., NeurIPS 2017, §2; McInerney et al., KDD 2020, §3;
obp 0.4.1 ``obp/ope/estimators_slate.py``): a log of n rounds, each a context
:math:`x_i`, a slate :math:`s_i = (s_{i1}, \dots, s_{iK})` of K slots drawn by a
logging policy :math:`\pi_b`, and a reward per slot :math:`r_{ik}` (a click on
slot k); the slate reward is :math:`r_i = \sum_k r_{ik}`. The value of a target
policy is :math:`V(\pi_e) = \mathbb E_x \mathbb E_{s \sim \pi_e}[\sum_k r_k]`.
Policies here are *factorised over slots*, :math:`\pi(s \mid x) = \prod_k
\pi(s_k \mid x, k)`, so every weight below is a product of the per-slot ratios
:math:`\rho_{ik} = \pi_e(s_{ik} \mid x_i, k) / \pi_b(s_{ik} \mid x_i, k)`:

* standard slate IPS (SIPS; McInerney et al. eq. 2; obp ``SlateStandardIPS``):
  :math:`\hat V = \frac1n \sum_i \big(\prod_k \rho_{ik}\big) r_i` — unbiased
  for any reward, variance exponential in K;
* independent IPS (IIPS; Li et al. 2018, obp ``SlateIndependentIPS``):
  :math:`\hat V = \frac1n \sum_i \sum_k \rho_{ik} r_{ik}` — unbiased when the
  reward of slot k depends only on the item in slot k;
* reward-interaction IPS (RIPS; McInerney et al. 2020 §4, obp
  ``SlateRewardInteractionIPS``): :math:`\hat V = \frac1n \sum_i \sum_k
  \big(\prod_{j \le k} \rho_{ij}\big) r_{ik}` — unbiased when slot k's reward
  depends on the items in slots 1..k only (a cascade);
* pseudo-inverse (PI; Swaminathan et al. 2017 §3, eq. 4 and its product-policy
  form, Example 3): :math:`\hat V = \frac1n \sum_i \big(\sum_k \rho_{ik} - K + 1\big) r_i`
  — unbiased when the expected slate reward is *additive* over slots,
  :math:`\mathbb E[r \mid x, s] = \sum_k \phi_k(x, s_k)`, which needs only the
  slate reward; variance linear in K.

Each estimator returns the estimate and the standard error of the mean of its
per-round terms.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

SLATE_ESTIMATORS = ("sips", "iips", "rips", "pi")
"""Names of :func:`slate_estimates`' outputs."""


def slate_round_terms(pscore_e: jax.Array, pscore_b: jax.Array, slot_reward: jax.Array) -> dict[str, jax.Array]:
    """Per-round terms ``[n]`` of every slate estimator (their mean is the estimate).

    Args:
      pscore_e: ``[n, K]`` target probability of each logged slot's item, :math:`\\pi_e(s_{ik} \\mid x_i, k)`.
      pscore_b: ``[n, K]`` logging probability of the same, in (0, 1].
      slot_reward: ``[n, K]`` reward of each slot.

    Returns:
      name -> ``[n]`` for the names of :data:`SLATE_ESTIMATORS`.
    """
    rho = jnp.asarray(pscore_e, jnp.float32) / jnp.asarray(pscore_b, jnp.float32)
    r = jnp.asarray(slot_reward, jnp.float32)
    k = rho.shape[1]
    total = jnp.sum(r, axis=1)
    cum = jnp.cumprod(rho, axis=1)
    return {
        "sips": cum[:, -1] * total,
        "iips": jnp.sum(rho * r, axis=1),
        "rips": jnp.sum(cum * r, axis=1),
        "pi": (jnp.sum(rho, axis=1) - (k - 1)) * total,
    }


def slate_estimates(pscore_e, pscore_b, slot_reward) -> dict[str, tuple[jax.Array, jax.Array]]:
    """Every slate estimator: name -> (estimate, standard error of the mean of its terms)."""
    terms = slate_round_terms(pscore_e, pscore_b, slot_reward)
    n = next(iter(terms.values())).shape[0]
    return {name: (jnp.mean(t), jnp.std(t, ddof=1) / jnp.sqrt(n)) for name, t in terms.items()}


__all__ = ["SLATE_ESTIMATORS", "slate_estimates", "slate_round_terms"]
