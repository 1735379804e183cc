r"""Policy and value networks of the policy-gradient agents, and slate sampling.

Networks (``flax.linen``; one user per call, the agents ``vmap`` over users):

* :class:`SlatePolicyNet` for slate environments (observations
  ``{'user': u [D], 'doc': d [m, D]}``, :class:`~mtrlrec.envs.slate.SlateEnv`).
  An item encoder conditioned on the user state,
  ``h_i = MLP([u; d_i; u ⊙ d_i])`` (:class:`~mtrlrec.models.encoders.MLP`),
  feeds the item softmax of :class:`~mtrlrec.models.heads.ItemSoftmaxPolicy`,
  ``p_i = softmax_i(h_i W + b)`` (the softmax policy of Chen et al., WSDM 2019,
  with the candidates as the action set). The critic reads ``[u; mean_i h_i]`` and has
  one value head per feedback task, ``V_t(s)`` ``[num_tasks]``; the agent forms
  the scalarised value ``Σ_t w_t V_t``. An optional second softmax over the same
  ``h_i`` with its gradient stopped (``behaviour`` head, Chen et al.'s estimated
  behaviour policy) estimates
  the policy that wrote a log, without pulling the shared encoder towards it.
* :class:`TabularPolicyNet` for context-free item sets (``Discrete(A)`` actions and
  a constant observation, e.g. the top-K toy): logits, behaviour logits and
  values are free parameters.

Both return ``{'log_probs': [m], 'values': [num_tasks], 'behaviour_log_probs': [m]}``
(the last only with ``behaviour_head=True``).

Slates by sequential sampling without replacement: the first position takes
item ``a_1 ~ p``, position ``j`` takes ``a_j`` from ``p`` renormalised over the
items not yet chosen (Plackett–Luce),

.. math::

    \log \pi(a_1..a_k \mid s) = \sum_{j=1}^{k}
        \Big(\ell_{a_j} - \log \sum_{i \notin \{a_1..a_{j-1}\}} e^{\ell_i}\Big),

sampled in one shot as the top ``k`` of ``ℓ_i + Gumbel`` noise, which has exactly
this distribution (Kool, van Hoof & Welling, ICML 2019, §2.2). Greedy (evaluation)
slates are the top ``k`` logits.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtrlrec.models.encoders import MLP
from mtrlrec.models.heads import ItemSoftmaxPolicy


class SlatePolicyNet(nn.Module):
    """Item softmax policy conditioned on the user, per-task critic, optional behaviour head.

    Attributes:
      hidden: units of the item encoder (and of the critic torso).
      num_tasks: value heads (one per feedback task; 1 for a scalar reward).
      behaviour_head: add the stopped-gradient behaviour softmax.
    """

    hidden: Sequence[int] = (64,)
    num_tasks: int = 1
    behaviour_head: bool = False

    @nn.compact
    def __call__(self, obs) -> dict[str, jax.Array]:
        """obs ``{'user': [D], 'doc': [m, D]}`` -> log-probs ``[m]``, values ``[num_tasks]``."""
        u = jnp.asarray(obs["user"], jnp.float32)
        d = jnp.asarray(obs["doc"], jnp.float32)
        ub = jnp.broadcast_to(u, d.shape[:-1] + u.shape[-1:])
        h = MLP(tuple(self.hidden), name="item_encoder")(jnp.concatenate([ub, d, ub * d], -1))
        out = {"log_probs": ItemSoftmaxPolicy(name="policy")(h)}
        critic_in = jnp.concatenate([u, jnp.mean(h, axis=0)], -1)
        out["values"] = MLP(tuple(self.hidden), output=self.num_tasks, name="critic")(critic_in)
        if self.behaviour_head:
            out["behaviour_log_probs"] = ItemSoftmaxPolicy(name="behaviour")(
                jax.lax.stop_gradient(h))
        return out


class TabularPolicyNet(nn.Module):
    """Context-free items: logits ``θ [A]`` (zeros: uniform), values ``[num_tasks]``."""

    num_items: int
    num_tasks: int = 1
    behaviour_head: bool = False

    @nn.compact
    def __call__(self, obs) -> dict[str, jax.Array]:
        del obs  # a constant observation
        a = self.num_items
        logits = self.param("logits", nn.initializers.zeros, (a,))
        out = {"log_probs": jax.nn.log_softmax(logits),
               "values": self.param("values", nn.initializers.zeros, (self.num_tasks,))}
        if self.behaviour_head:
            out["behaviour_log_probs"] = jax.nn.log_softmax(
                self.param("behaviour_logits", nn.initializers.zeros, (a,)))
        return out


def sample_slate(key: jax.Array, log_probs: jax.Array, k: int) -> jax.Array:
    """``k`` distinct items ``[k]`` int32, sampled sequentially without replacement.

    Top ``k`` of ``log_probs + Gumbel``: the Plackett–Luce order (module docstring).
    """
    g = jax.random.gumbel(key, log_probs.shape, jnp.float32)
    return jax.lax.top_k(log_probs + g, k)[1].astype(jnp.int32)


def greedy_slate(log_probs: jax.Array, k: int) -> jax.Array:
    """The ``k`` most probable items ``[k]``, most probable first."""
    return jax.lax.top_k(log_probs, k)[1].astype(jnp.int32)


def slate_log_prob(log_probs: jax.Array, slate: jax.Array) -> jax.Array:
    r"""``log π(a_1..a_k)`` of an ordered slate under sequential sampling without replacement.

    Args:
      log_probs: ``[m]`` item log-probabilities ``ℓ`` (normalised or not).
      slate: ``[k]`` distinct item indices.

    Returns:
      scalar ``Σ_j ℓ_{a_j} − log Σ_{i ∉ a_{<j}} e^{ℓ_i}``.
    """
    chosen = log_probs[slate]  # [k]
    taken = jax.nn.one_hot(slate, log_probs.shape[0], dtype=jnp.bool_)  # [k, m]
    before = jnp.cumsum(taken, axis=0) - taken  # items taken at positions < j
    masked = jnp.where(before > 0, -jnp.inf, log_probs[None, :])  # [k, m]
    return jnp.sum(chosen - jax.nn.logsumexp(masked, axis=-1))


def entropy(log_probs: jax.Array) -> jax.Array:
    """Entropy ``−Σ_i p_i log p_i`` of the item softmax over the last axis."""
    p = jnp.exp(log_probs)
    return -jnp.sum(jnp.where(p > 0, p * log_probs, 0.0), axis=-1)


def topk_multiplier(pi: jax.Array, k) -> jax.Array:
    r"""``λ_K(s, a) = K (1 − π(a|s))^{K−1}`` (Chen et al., WSDM 2019, top-K correction)."""
    return k * (1.0 - pi) ** (k - 1)


__all__ = ["SlatePolicyNet", "TabularPolicyNet", "entropy", "greedy_slate", "sample_slate",
           "slate_log_prob", "topk_multiplier"]
