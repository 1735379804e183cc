r"""Output heads that agents put on top of encoders.

* :class:`QHeads`: one Q-value head per task, ``Q_t(s, a)`` -> ``[B, T, A]``
  (multi-task DQN; a scalarisation ``Σ_t w_t Q_t`` is applied by the agent).
* :class:`ItemSoftmaxPolicy`: a softmax policy over item representations,
  ``p_i = softmax_i(h_i W + b)`` (optionally conditioned on a context ``s``:
  ``p_i = softmax_i(h_iᵀ W_s s + h_i W + b)``), as used by meta-learned
  softmax recommendation strategies.
* :class:`BanditMLP`: a ReLU torso (``encoder``) with a linear head per arm, the
  network of the neural bandits (Riquelme et al., ICLR 2018, §3).
* :class:`ItemwiseQ`: item-wise, per-task Q-values ``Q_t(s, i)`` of every
  candidate from ``[user; item]`` through an MLP, shared-bottom or MMoE torso
  (the networks of the recommendation DQN and SlateQ agents).
* :class:`SlateItemQ`: the item-wise Q head of SlateQ (Ie et al., IJCAI 2019,
  §4, Eq. 3–4): ``Q̄(s, i) = MLP([s; e_i])`` for every candidate i, from which
  the slate value ``Q(s, A) = Σ_{i∈A} P(i | s, A) Q̄(s, i)`` is formed by the agent.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtrlrec.core.errors import ConfigError
from mtrlrec.models.encoders import MLP
from mtrlrec.models.multitask import MixtureOfExperts, SharedBottom
from mtrlrec.models.state import UserState

TORSOS = ("mlp", "shared_bottom", "mmoe")


class QHeads(nn.Module):
    """Per-task Q heads: ``s [B, D]`` -> ``Q [B, T, A]`` (an MLP per task via vmap)."""

    num_tasks: int
    num_actions: int
    hidden: Sequence[int] = (64,)

    @nn.compact
    def __call__(self, s: jax.Array) -> jax.Array:
        if self.num_tasks < 1 or self.num_actions < 1:
            raise ConfigError(
                f"QHeads: num_tasks and num_actions must be >= 1, got {self.num_tasks}, {self.num_actions}."
            )
        heads = nn.vmap(
            MLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=-2,
            axis_size=self.num_tasks,
        )
        return heads(hidden=tuple(self.hidden), output=self.num_actions, name="q")(s)


class ItemSoftmaxPolicy(nn.Module):
    r"""Softmax over item representations: ``log p_i = z_i − logsumexp_j z_j``.

    ``z_i = h_i W + b`` (``W [D_i]``, ``b`` scalar; b cancels in the softmax but
    is kept for the logits), plus ``h_iᵀ W_s s`` when a context ``s`` is given.

    Args (call):
      items: ``[N, D_i]`` or ``[B, N, D_i]`` item representations.
      context: optional ``[B, D_s]``.
      mask: optional ``[N]``/``[B, N]`` bool of available items.

    Returns:
      log-probabilities ``[N]`` or ``[B, N]`` (masked items get ``-inf``-like values).
    """

    temperature: float = 1.0

    @nn.compact
    def __call__(self, items: jax.Array, context: jax.Array | None = None, mask: jax.Array | None = None):
        if self.temperature <= 0:
            raise ConfigError(f"ItemSoftmaxPolicy.temperature must be > 0, got {self.temperature}.")
        z = nn.Dense(1, name="w")(items)[..., 0]
        if context is not None:
            if items.ndim == 2:
                items = jnp.broadcast_to(items, context.shape[:1] + items.shape)
            proj = nn.Dense(items.shape[-1], use_bias=False, name="w_s")(context)  # [B, D_i]
            z = z + jnp.einsum("bnd,bd->bn", items, proj)
        z = z / self.temperature
        if mask is not None:
            z = jnp.where(mask, z, -1e9)
        return jax.nn.log_softmax(z, axis=-1)


class SlateItemQ(nn.Module):
    """Item-wise Q: ``s [B, D_s]``, ``items [B, N, D_i]`` (or ``[N, D_i]``) -> ``[B, N]``."""

    hidden: Sequence[int] = (64, 32)

    @nn.compact
    def __call__(self, s: jax.Array, items: jax.Array) -> jax.Array:
        if items.ndim == 2:
            items = jnp.broadcast_to(items, s.shape[:1] + items.shape)
        if items.shape[0] != s.shape[0]:
            raise ConfigError(
                f"SlateItemQ: batch sizes differ between state {s.shape} and items {items.shape}."
            )
        x = jnp.concatenate([jnp.broadcast_to(s[:, None, :], items.shape[:2] + s.shape[-1:]), items], -1)
        return MLP(tuple(self.hidden), output=1, name="mlp")(x)[..., 0]


class BanditMLP(nn.Module):
    """ReLU MLP torso with a linear head per arm: returns ``(z [h], values [K])``.

    The torso is the sub-module ``encoder`` (an :class:`mtrlrec.models.encoders.MLP`,
    parameters ``encoder/Dense_i``) and the head ``head``, so a torso pretrained
    on logged data (:class:`mtrlrec.runners.pretrain.BanditPretrainRunner`) loads
    into ``encoder`` through ``PretrainedParams``.
    """

    hidden_sizes: tuple[int, ...]
    num_arms: int

    @nn.compact
    def __call__(self, x):
        z = MLP(hidden=self.hidden_sizes, act="relu", name="encoder")(x)
        return z, nn.Dense(self.num_arms, name="head")(z)


class ItemwiseQ(nn.Module):
    r"""Item-wise, per-task Q-values: ``obs`` (``doc [B, m, D_i]``, ...) -> ``[B, m, T]``.

    Every candidate is scored from :math:`x_i = [s; d_i]`, with :math:`s` the user
    state (:class:`~mtrlrec.models.state.UserState`: the observed interests ``obs['user']``,
    or a GRU/Transformer over ``obs['history']``), by one network
    (RecSim's SlateQ network is the ``'mlp'`` torso with ``hidden = (256, 32)``):

    * ``'mlp'``: :math:`Q(x_i) = W \, \mathrm{MLP}(x_i) + b \in \mathbb R^T`, the tasks
      sharing every hidden layer;
    * ``'shared_bottom'``: a shared bottom of ``hidden[:-1]`` and a tower of
      ``hidden[-1]`` units per task (:class:`~mtrlrec.models.multitask.SharedBottom`);
    * ``'mmoe'``: ``num_experts`` experts of ``hidden[:-1]`` units, a gate per
      task and towers of ``hidden[-1]`` (Ma et al., KDD 2018, Eq. 6–7).
    """

    hidden: Sequence[int] = (256, 32)
    num_tasks: int = 1
    torso: str = "mlp"
    num_experts: int = 4
    user_state: str = "observed"
    state_features: int = 32

    @nn.compact
    def __call__(self, obs) -> jax.Array:
        user = UserState(self.user_state, self.state_features, name="user_state")(obs)
        items = obs["doc"]
        u = jnp.broadcast_to(user[..., None, :], items.shape[:-1] + user.shape[-1:])
        x = jnp.concatenate([u, items], -1)
        if self.torso == "mlp":
            return MLP(tuple(self.hidden), output=self.num_tasks, name="mlp")(x)
        lead, flat = x.shape[:-1], x.reshape(-1, x.shape[-1])
        if len(self.hidden) < 2:
            raise ConfigError(f"ItemwiseQ: the {self.torso!r} torso needs at least two hidden "
                              f"sizes (bottom or experts, then towers), got {tuple(self.hidden)}.")
        if self.torso == "shared_bottom":
            net = SharedBottom(self.num_tasks, tuple(self.hidden[:-1]), (self.hidden[-1],), 1,
                               name="shared_bottom")
        elif self.torso == "mmoe":
            net = MixtureOfExperts(self.num_tasks, self.num_experts, tuple(self.hidden[:-1]),
                                   (self.hidden[-1],), True, 1, name="mmoe")
        else:
            raise ConfigError(f"ItemwiseQ.torso must be one of {TORSOS}, got {self.torso!r}.")
        return net(flat)[..., 0].reshape(lead + (self.num_tasks,))
