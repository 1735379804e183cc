r"""Multi-task networks: shared-bottom, OMoE, MMoE and PLE with task towers.

All models map ``x [B, D_in]`` to per-task outputs ``[B, T, out]`` (``out`` =
1 for a click/conversion logit or a regression value).

* Shared-bottom (Caruana 1997; Ma et al., KDD 2018, §4.1 Fig. 1a):
  ``y_t = tower_t(f(x))`` with one shared MLP ``f``.
* One-gate MoE, OMoE (Ma et al. §4.2, Eq. 5; Fig. 1b):
  ``y_t = tower_t(Σ_i g(x)_i f_i(x))``, ``g(x) = softmax(W_g x)``, one gate for
  all tasks.
* Multi-gate MoE, MMoE (Ma et al. §4.3, Eq. 6–7; Fig. 1c):
  ``f^t(x) = Σ_i g^t(x)_i f_i(x)``, ``g^t(x) = softmax(W_{gt} x)``, one gate per task.
* Progressive Layered Extraction, PLE (Tang et al., RecSys 2020, §4.3, Eq. 2–6):
  per level, task-specific experts ``E_t`` and shared experts ``E_s``; the task
  gate of task t mixes ``[E_t; E_s]`` and the shared gate mixes all experts,
  and the next level takes the mixtures as inputs.

Experts are vmapped MLPs (one batched matmul for all experts), so the models are
jit/vmap friendly. Losses: :func:`multitask_loss` combines per-task losses with
fixed weights or uncertainty weighting (Kendall, Gal & Cipolla, CVPR 2018,
Eq. 7–8): ``L = Σ_t exp(-s_t) L_t + s_t`` with learned ``s_t = log σ_t²``
(the factor 1/2 of the regression case is absorbed in ``s_t``); GradNorm (Chen
et al., ICML 2018) keeps task weights in the training state and moves them after
every step (:func:`gradnorm_weights_update`, :func:`gradnorm_step`).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import gin
import jax
import jax.numpy as jnp
import optax

from mtrlrec.core.errors import ConfigError, check_float, check_floats, check_int
from mtrlrec.models.encoders import MLP, activation


class Experts(nn.Module):
    """``num_experts`` independent MLPs applied to the same input.

    ``x [B, D]`` -> ``[B, E, hidden[-1]]``.
    """

    num_experts: int
    hidden: Sequence[int]
    act: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        batched = nn.vmap(
            MLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=None,
            out_axes=-2,
            axis_size=self.num_experts,
        )
        return batched(hidden=tuple(self.hidden), act=self.act, name="mlp")(x)


class Gate(nn.Module):
    """``g(x) = softmax(W_g x)`` over ``num_experts`` (Ma et al. Eq. 7). ``[B, D] -> [B, E]``."""

    num_experts: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.softmax(nn.Dense(self.num_experts, name="w_g")(x), axis=-1)


class Towers(nn.Module):
    """One MLP tower per task on per-task inputs ``[B, T, D]`` -> ``[B, T, out]``."""

    num_tasks: int
    hidden: Sequence[int] = (8,)
    out: int = 1
    act: str = "relu"

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        batched = nn.vmap(
            MLP,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=-2,
            out_axes=-2,
            axis_size=self.num_tasks,
        )
        return batched(hidden=tuple(self.hidden), output=self.out, act=self.act, name="tower")(h)


def _check_common(name: str, num_tasks: int, tower: Sequence[int], out: int) -> None:
    check_int(f"{name}.num_tasks", num_tasks, min_value=1)
    check_int(f"{name}.out", out, min_value=1)
    for i, u in enumerate(tower):
        check_int(f"{name}.tower[{i}]", u, min_value=1)


class SharedBottom(nn.Module):
    """Shared-bottom network: ``y_t = tower_t(MLP_bottom(x))``. ``[B, D] -> [B, T, out]``."""

    num_tasks: int = 2
    bottom: Sequence[int] = (113,)
    tower: Sequence[int] = (8,)
    out: int = 1
    act: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        h = MLP(tuple(self.bottom), act=self.act, name="bottom")(x)
        h = jnp.broadcast_to(h[..., None, :], h.shape[:-1] + (self.num_tasks, h.shape[-1]))
        return Towers(self.num_tasks, self.tower, self.out, self.act, name="towers")(h)


class MixtureOfExperts(nn.Module):
    """OMoE (``num_gates=1``) or MMoE (``num_gates=num_tasks``). ``[B, D] -> [B, T, out]``.

    ``f^t(x) = Σ_i g^t(x)_i f_i(x)`` (Ma et al. Eq. 6); with one gate every task
    gets the same mixture (Eq. 5).
    """

    num_tasks: int = 2
    num_experts: int = 8
    expert: Sequence[int] = (16,)
    tower: Sequence[int] = (8,)
    multi_gate: bool = True
    out: int = 1
    act: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        e = Experts(self.num_experts, tuple(self.expert), self.act, name="experts")(x)  # [B, E, H]
        num_gates = self.num_tasks if self.multi_gate else 1
        g = jnp.stack([Gate(self.num_experts, name=f"gate{t}")(x) for t in range(num_gates)], -2)
        h = jnp.einsum("...ge,...eh->...gh", g, e)  # [B, G, H]
        h = jnp.broadcast_to(h, h.shape[:-2] + (self.num_tasks, h.shape[-1]))
        return Towers(self.num_tasks, self.tower, self.out, self.act, name="towers")(h)


class PLE(nn.Module):
    r"""Progressive Layered Extraction (Tang et al., RecSys 2020, §4.3).

    Level k has ``task_experts`` experts per task and ``shared_experts`` shared
    ones. Task t's gate mixes its own and the shared experts (Eq. 2–4); the
    shared gate mixes all experts (Eq. 6) and feeds the shared experts of level
    k+1. The last level has no shared gate; towers read the task mixtures.
    ``[B, D] -> [B, T, out]``.
    """

    num_tasks: int = 2
    num_levels: int = 1
    task_experts: int = 4
    shared_experts: int = 4
    expert: Sequence[int] = (16,)
    tower: Sequence[int] = (8,)
    out: int = 1
    act: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        T = self.num_tasks
        task_in = [x] * T
        shared_in = x
        for k in range(self.num_levels):
            last = k == self.num_levels - 1
            shared_e = Experts(self.shared_experts, tuple(self.expert), self.act, name=f"l{k}_shared")(shared_in)
            task_e = [
                Experts(self.task_experts, tuple(self.expert), self.act, name=f"l{k}_task{t}")(task_in[t])
                for t in range(T)
            ]
            outs = []
            for t in range(T):
                cand = jnp.concatenate([task_e[t], shared_e], axis=-2)
                g = Gate(cand.shape[-2], name=f"l{k}_gate{t}")(task_in[t])
                outs.append(jnp.einsum("...e,...eh->...h", g, cand))
            if not last:
                cand = jnp.concatenate(task_e + [shared_e], axis=-2)
                g = Gate(cand.shape[-2], name=f"l{k}_gate_shared")(shared_in)
                shared_in = jnp.einsum("...e,...eh->...h", g, cand)
            task_in = outs
        h = jnp.stack(task_in, axis=-2)
        return Towers(T, self.tower, self.out, self.act, name="towers")(h)


@gin.configurable("MultiTaskModel")
def make_multitask_model(
    kind: str = "mmoe",
    num_tasks: int = 2,
    num_experts: int = 8,
    expert_units: int = 16,
    tower_units: int = 8,
    bottom_units: int = 113,
    ple_levels: int = 1,
    ple_task_experts: int = 4,
    ple_shared_experts: int = 4,
    out: int = 1,
) -> nn.Module:
    """Builds a multi-task model by name (Gin: ``MultiTaskModel.kind = 'mmoe'``).

    ``kind``: 'shared_bottom', 'omoe', 'mmoe' or 'ple'. Defaults are the MMoE
    synthetic setting (Ma et al. §5.2): 8 experts of 16 ReLU units, towers of 8,
    shared-bottom of 113 units.
    """
    name = "MultiTaskModel"
    check_int(f"{name}.num_tasks", num_tasks, min_value=1)
    for arg, v in [("num_experts", num_experts), ("expert_units", expert_units), ("tower_units", tower_units),
                   ("bottom_units", bottom_units), ("ple_levels", ple_levels), ("out", out),
                   ("ple_task_experts", ple_task_experts), ("ple_shared_experts", ple_shared_experts)]:
        check_int(f"{name}.{arg}", v, min_value=1)
    if kind == "shared_bottom":
        return SharedBottom(num_tasks, (bottom_units,), (tower_units,), out)
    if kind in ("omoe", "mmoe"):
        return MixtureOfExperts(num_tasks, num_experts, (expert_units,), (tower_units,), kind == "mmoe", out)
    if kind == "ple":
        return PLE(num_tasks, ple_levels, ple_task_experts, ple_shared_experts, (expert_units,), (tower_units,), out)
    raise ConfigError(f"{name}.kind must be 'shared_bottom', 'omoe', 'mmoe' or 'ple', got {kind!r}.")


def count_params(params) -> int:
    """Number of scalar parameters in a pytree."""
    return int(sum(x.size for x in jax.tree.leaves(params)))


_LOSSES = ("mse", "bce", "ce")


def task_losses(preds: jax.Array, targets: jax.Array, kinds: Sequence[str], mask: jax.Array | None = None) -> jax.Array:
    r"""Per-task mean losses ``[T]``.

    Args:
      preds: ``[B, T]`` (or ``[B, T, 1]``): regression values ('mse') or logits ('bce').
      targets: ``[B, T]`` floats (0/1 for 'bce').
      kinds: T names: 'mse' (``(y - ŷ)²``) or 'bce' (``-y log σ(z) - (1-y) log(1-σ(z))``).
      mask: optional ``[B, T]`` weights (e.g. conversion labelled only after a click).
    """
    if preds.ndim == targets.ndim + 1:
        preds = preds[..., 0]
    cols = []
    for t, k in enumerate(kinds):
        p, y = preds[..., t], targets[..., t]
        if k == "mse":
            cols.append((p - y) ** 2)
        elif k == "bce":
            cols.append(optax.sigmoid_binary_cross_entropy(p, y))
        else:
            raise ConfigError(f"task loss kinds must be 'mse' or 'bce', got {k!r} for task {t}.")
    losses = jnp.stack(cols, -1)
    if mask is None:
        return losses.mean(0)
    return (losses * mask).sum(0) / jnp.maximum(mask.sum(0), 1.0)


def check_task_weights(where: str, weights, num_tasks: int) -> tuple[float, ...]:
    """Validates ``weights`` (one non-negative float per task)."""
    return check_floats(where, weights, length=num_tasks, low=0.0)


def multitask_loss(
    losses: jax.Array, weights: jax.Array, balancing: str = "fixed", log_vars: jax.Array | None = None
) -> jax.Array:
    r"""Combines per-task losses ``[T]``.

    ``fixed``: ``Σ_t w_t L_t``. ``uncertainty`` (Kendall et al. 2018, Eq. 7):
    ``Σ_t w_t (exp(-s_t) L_t + s_t)`` with learned ``s_t`` (``log_vars [T]``).
    """
    if balancing == "fixed":
        return jnp.sum(weights * losses)
    if balancing == "uncertainty":
        return jnp.sum(weights * (jnp.exp(-log_vars) * losses + log_vars))
    raise ConfigError(f"balancing must be 'fixed', 'uncertainty' or 'gradnorm', got {balancing!r}.")


def gradnorm_weights_update(
    weights: jax.Array,
    grad_norms: jax.Array,
    losses: jax.Array,
    initial_losses: jax.Array,
    alpha: float = 1.5,
    lr: float = 0.025,
) -> jax.Array:
    r"""One GradNorm step on the task weights (Chen et al., ICML 2018, §3, Eq. 1–2).

    With ``G_t = ‖∇_W w_t L_t‖`` (``grad_norms``, the norms of the *weighted*
    task gradients w.r.t. the last shared layer), ``Ḡ = mean_t G_t``,
    ``r_t = (L_t/L_t(0)) / mean_t(L_t/L_t(0))``:
    ``L_grad = Σ_t |G_t − Ḡ r_t^α|`` with the target treated as constant;
    ``∂L_grad/∂w_t = sign(G_t − target_t) G_t / w_t``. The weights are then
    renormalised to sum to T.
    """
    ratio = losses / jnp.maximum(initial_losses, 1e-12)
    r = ratio / jnp.maximum(ratio.mean(), 1e-12)
    target = jax.lax.stop_gradient(grad_norms.mean() * r**alpha)
    grad = jnp.sign(grad_norms - target) * grad_norms / jnp.maximum(weights, 1e-12)
    w = jnp.maximum(weights - lr * grad, 1e-3)
    return w * (weights.shape[0] / w.sum())


# ----------------------------------------------------------------------------- GradNorm in training


def shared_layer(params) -> str:
    """Name of the last shared layer of a multi-task model's parameters (GradNorm's ``W``).

    Shared-bottom: ``bottom``; OMoE/MMoE: ``experts``; PLE: the shared experts of
    the last level (``l{L-1}_shared``).
    """
    root = params.get("params", params)
    if "bottom" in root:
        return "bottom"
    if "experts" in root:
        return "experts"
    shared = sorted((k for k in root if k.endswith("_shared")), key=lambda k: int(k[1:].split("_")[0]))
    if shared:
        return shared[-1]
    raise ConfigError(f"GradNorm: no shared layer among the model's parameters {sorted(root)}.")


def gradnorm_init(num_tasks: int) -> dict:
    """GradNorm's training state: weights ``w_t = 1``, initial losses ``L_t(0)``, a started flag.

    All leaves are float32 so the state can ride in the parameter pytree (it gets
    zero gradients and is overwritten by :func:`gradnorm_step` after every step).
    """
    return {"weights": jnp.ones(num_tasks), "initial": jnp.zeros(num_tasks), "started": jnp.float32(0.0)}


def gradnorm_grad_norms(per_task_losses, shared) -> jax.Array:
    """``‖∇_W L_t‖`` for every task ``[T]``: ``per_task_losses(W) -> [T]``, ``W`` a pytree."""
    jac = jax.jacrev(per_task_losses)(jax.lax.stop_gradient(shared))  # leaves [T, ...]
    sq = sum(jnp.sum(j.reshape(j.shape[0], -1) ** 2, axis=1) for j in jax.tree.leaves(jac))
    return jnp.sqrt(sq)


def gradnorm_step(state: dict, losses: jax.Array, grad_norms: jax.Array, alpha: float = 1.5,
                  lr: float = 0.025) -> dict:
    r"""Next GradNorm state after one training step (Chen et al. 2018, Eq. 1–2).

    Args:
      state: from :func:`gradnorm_init`.
      losses: ``L_t`` of this step ``[T]`` (the first call records them as ``L_t(0)``).
      grad_norms: ``‖∇_W L_t‖`` of the *unweighted* task losses ``[T]``; GradNorm's
        ``G_t = w_t ‖∇_W L_t‖``.
      alpha, lr: GradNorm's asymmetry α and the step size on ``w``.

    The weights stay positive and sum to T. A task whose weighted gradient is
    larger than the target ``Ḡ r_t^α`` (e.g. a task with larger-scale targets)
    loses weight; a task that trains slower (larger ``L_t/L_t(0)``) gains weight.
    """
    losses = jax.lax.stop_gradient(losses)
    initial = jnp.where(state["started"] > 0, state["initial"], losses)
    g = state["weights"] * jax.lax.stop_gradient(grad_norms)
    w = gradnorm_weights_update(state["weights"], g, losses, initial, alpha, lr)
    return {"weights": w, "initial": initial, "started": jnp.float32(1.0)}


@gin.configurable("MultiTaskLoss")
class MultiTaskLoss:
    """Per-task losses and their combination, configured once (validated before tracing).

    ``MultiTaskLoss.kinds = ['bce', 'bce']`` (click, conversion),
    ``MultiTaskLoss.weights = [1.0, 5.0]``, ``MultiTaskLoss.balancing =
    'fixed' | 'uncertainty'``. Call with ``preds [B, T]``, ``targets [B, T]``,
    optional ``mask [B, T]`` and, for uncertainty weighting, ``log_vars [T]``
    (trainable parameters of the caller). Returns ``(total, per_task [T])``.
    """

    def __init__(self, kinds: Sequence[str] = ("bce", "bce"), weights: Sequence[float] | None = None,
                 balancing: str = "fixed"):
        kinds = tuple(kinds)
        if not kinds:
            raise ConfigError("MultiTaskLoss.kinds is empty.")
        for i, k in enumerate(kinds):
            if k not in ("mse", "bce"):
                raise ConfigError(f"MultiTaskLoss.kinds[{i}] must be 'mse' or 'bce', got {k!r}.")
        if balancing not in ("fixed", "uncertainty"):
            raise ConfigError(f"MultiTaskLoss.balancing must be 'fixed' or 'uncertainty', got {balancing!r}.")
        self.kinds = kinds
        self.weights = check_task_weights("MultiTaskLoss.weights", weights if weights is not None
                                          else [1.0] * len(kinds), len(kinds))
        self.balancing = balancing

    @property
    def num_tasks(self) -> int:
        return len(self.kinds)

    def __call__(self, preds, targets, mask=None, log_vars=None):
        per_task = task_losses(preds, targets, self.kinds, mask)
        if self.balancing == "uncertainty" and log_vars is None:
            log_vars = jnp.zeros(self.num_tasks)
        return multitask_loss(per_task, jnp.asarray(self.weights), self.balancing, log_vars), per_task
