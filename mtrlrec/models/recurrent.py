r"""Recurrent policies for meta-RL: the RL² actor-critic (Duan et al. 2016, §2.2, §3).

:class:`RL2Network` is one GRU step shared by acting and learning:

.. math::

    h_t = \mathrm{GRU}(h_{t-1}, x_t), \qquad
    \pi(\cdot \mid h_t) = \mathrm{softmax}(W_\pi h_t + b_\pi), \qquad
    V(h_t) = w_V^\top h_t + b_V,

with :math:`x_t` the RL² input (``mtrlrec.envs.meta.RL2Inputs``: previous
action one-hot, reward, termination flag). Shapes: ``h [B, H]``, ``x [B, D]``,
logits ``[B, K]``, value ``[B]``. :func:`unroll` re-runs the GRU over a stored
rollout ``x [T, B, D]`` from the hidden state at its start, resetting ``h`` to
zero after the steps where a trial ended (``resets [T, B]``), exactly as the
learner did while acting, so the gradient is backpropagation through time over
the rollout (truncated at its start when a trial is longer than a rollout).

``models/encoders.py``'s ``GRUEncoder`` encodes padded histories in one call
and has no single-step interface with an external carry, hence this module.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class RL2Network(nn.Module):
    """GRU cell with a policy head (``num_actions`` logits) and a value head.

    Attributes:
      hidden_size: H, GRU units (256 in the replication quoted by the spec).
      num_actions: K.
    """

    hidden_size: int
    num_actions: int

    @nn.compact
    def __call__(self, h: jax.Array, x: jax.Array):
        """``(h [B, H], x [B, D]) -> (h' [B, H], logits [B, K], value [B])``."""
        h, _ = nn.GRUCell(self.hidden_size, name="gru")(h, x)
        # Small initial logits: the untrained policy is near-uniform (exploration).
        logits = nn.Dense(self.num_actions, name="policy",
                          kernel_init=nn.initializers.orthogonal(0.01))(h)
        value = nn.Dense(1, name="value", kernel_init=nn.initializers.orthogonal(1.0))(h)
        return h, logits, value[..., 0]


def unroll(net: RL2Network, params, h0: jax.Array, xs: jax.Array, resets: jax.Array):
    """Re-runs the policy over a rollout.

    Args:
      net: the network.
      params: its parameters.
      h0: ``[B, H]`` hidden state before the first step.
      xs: ``[T, B, D]`` inputs seen at each step.
      resets: ``[T, B]`` bool, a trial ended after step t (``h`` zeroed before t + 1).

    Returns:
      ``(logits [T, B, K], values [T, B], h_T [B, H])`` with ``h_T`` after the last reset.
    """

    def step(h, inp):
        x, reset = inp
        h, logits, value = net.apply(params, h, x)
        h_next = jnp.where(reset[:, None], jnp.zeros_like(h), h)
        return h_next, (logits, value)

    h_last, (logits, values) = jax.lax.scan(step, h0, (xs, resets))
    return logits, values, h_last


__all__ = ["RL2Network", "unroll"]
