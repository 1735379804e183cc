"""Host-side validation of logged data and policies for off-policy evaluation.

Every check runs before compilation and raises one :class:`ConfigError` line
naming the field and the first bad row (propensities of 0 or > 1, actions
outside the catalogue, positions out of range, a slate size that differs from
the policy's), or warns when the evaluation policy is not covered.
"""

from __future__ import annotations

import warnings

import numpy as np

from mtrlrec.core.errors import ConfigError


class OPESupportWarning(UserWarning):
    """The evaluation policy puts mass on actions the behaviour policy never takes."""



def check_logged(
    action,
    reward,
    pscore,
    position=None,
    *,
    num_actions: int,
    num_positions: int = 1,
    name: str = "logged data",
) -> None:
    """Validates a log on the host; raises :class:`ConfigError` naming the first bad row.

    Checks: equal lengths, actions in ``0 .. num_actions-1``, positions in
    ``0 .. num_positions-1``, propensities in (0, 1], finite rewards.
    """
    action = np.asarray(action)
    pscore = np.asarray(pscore)
    reward = np.asarray(reward)
    n = action.shape[0] if action.ndim else 0
    if action.ndim != 1 or pscore.shape != (n,) or reward.shape[:1] != (n,):
        raise ConfigError(
            f"{name}: action [n], pscore [n] and reward [n, ...] must share n, got shapes "
            f"{action.shape}, {pscore.shape}, {reward.shape}."
        )
    bad = np.flatnonzero((action < 0) | (action >= num_actions))
    if bad.size:
        raise ConfigError(
            f"{name}: row {bad[0]}: action {action[bad[0]]} outside the item range 0..{num_actions - 1}."
        )
    bad = np.flatnonzero(~(pscore > 0) | ~(pscore <= 1))
    if bad.size:
        raise ConfigError(
            f"{name}: row {bad[0]}: propensity {pscore[bad[0]]} must be in (0, 1] "
            "(0 or negative propensities make importance weights undefined)."
        )
    if not np.all(np.isfinite(reward)):
        bad = np.flatnonzero(~np.all(np.isfinite(reward.reshape(n, -1)), axis=1))
        raise ConfigError(f"{name}: row {bad[0]}: reward must be finite.")
    if position is not None:
        position = np.asarray(position)
        if position.shape != (n,):
            raise ConfigError(f"{name}: position must have shape ({n},), got {position.shape}.")
        bad = np.flatnonzero((position < 0) | (position >= num_positions))
        if bad.size:
            raise ConfigError(
                f"{name}: row {bad[0]}: position {position[bad[0]]} outside 0..{num_positions - 1}."
            )


def check_action_dist(action_dist, *, name: str = "evaluation policy", atol: float = 1e-4) -> None:
    """Checks ``action_dist [n, A, P]``: non-negative, sums to 1 over actions for every (row, position).

    Raises:
      ConfigError: naming the first row/position whose distribution is invalid.
    """
    d = np.asarray(action_dist, np.float64)
    if d.ndim != 3:
        raise ConfigError(f"{name}: action_dist must have shape [n, num_actions, num_positions], got {d.shape}.")
    if np.any(~np.isfinite(d)) or np.any(d < 0):
        i = np.argwhere(~np.isfinite(d) | (d < 0))[0]
        raise ConfigError(f"{name}: action_dist[{i[0]}, {i[1]}, {i[2]}] = {d[tuple(i)]} is not a probability.")
    s = d.sum(axis=1)
    bad = np.argwhere(np.abs(s - 1.0) > atol)
    if bad.size:
        i, k = bad[0]
        raise ConfigError(
            f"{name}: action distribution at row {i}, position {k} sums to {s[i, k]:.6f}, not 1."
        )


def unsupported_mass(action_dist, behavior_dist) -> float:
    r"""Share of :math:`\\pi_e`'s mass on actions with :math:`\\pi_b = 0`, averaged over rows and positions.

    Args:
      action_dist: ``[n, A, P]`` (or ``[A, P]``) evaluation policy.
      behavior_dist: same shape (broadcastable), behaviour policy.
    """
    e = np.asarray(action_dist, np.float64)
    b = np.asarray(behavior_dist, np.float64)
    return float(np.mean(np.sum(np.where(np.broadcast_to(b, e.shape) <= 0, e, 0.0), axis=-2)))


def check_support(action_dist, behavior_dist, *, name: str = "evaluation policy", tol: float = 1e-9) -> float:
    r"""Warns (:class:`OPESupportWarning`) when :math:`\\pi_e` puts mass where :math:`\\pi_b` has none.

    Without support, IPS, SNIPS, DR, SNDR and switch-DR are biased: the
    unsupported actions are never logged, so their reward never enters the
    weighted terms (IPS and DR miss exactly :math:`\\mathbb{E}[\\sum_{a:\\pi_b=0}
    \\pi_e(a) q(x,a)]`; the self-normalised ones renormalise over the supported
    part). Only DM, whose reward model extrapolates, can account for them, and
    only as well as the model does.

    Returns:
      The unsupported share (0 when fully supported).
    """
    share = unsupported_mass(action_dist, behavior_dist)
    if share > tol:
        warnings.warn(
            f"{name} puts {100 * share:.2f}% of its mass on actions the behaviour policy never "
            "takes: IPS, SNIPS, DR, SNDR and switch-DR are biased (they cannot see those "
            "actions' rewards); DM is unbiased only if its reward model is right there.",
            OPESupportWarning,
            stacklevel=2,
        )
    return share


def check_slate_log(slates, pscore, reward, *, num_items: int, slate_size: int,
                    name: str = "slate log") -> None:
    """Validates a logged slate log ``slates [n, K]``, ``pscore [n]`` or ``[n, K]``, ``reward [n, K]``.

    Raises:
      ConfigError: slate size different from the policy's ``slate_size``, items
        outside ``0 .. num_items-1``, propensities not in (0, 1], rewards of
        another shape or not finite; the message names the field and the row.
    """
    slates = np.asarray(slates)
    pscore = np.asarray(pscore)
    reward = np.asarray(reward)
    if slates.ndim != 2:
        raise ConfigError(f"{name}: slates must have shape [n, slate_size], got {slates.shape}.")
    n, k = slates.shape
    if k != slate_size:
        raise ConfigError(f"{name}: slate size {k} differs from the policy's slate_size {slate_size}.")
    bad = np.argwhere((slates < 0) | (slates >= num_items))
    if bad.size:
        i, j = bad[0]
        raise ConfigError(f"{name}: slates[{i}, {j}] = {slates[i, j]} outside the item range 0..{num_items - 1}.")
    if pscore.shape not in ((n,), (n, k)):
        raise ConfigError(f"{name}: pscore must have shape ({n},) or ({n}, {k}), got {pscore.shape}.")
    bad = np.argwhere(~(pscore > 0) | ~(pscore <= 1))
    if bad.size:
        i = tuple(int(v) for v in bad[0])
        where = ", ".join(map(str, i))
        raise ConfigError(f"{name}: pscore[{where}] = {pscore[i]} must be in (0, 1].")
    if reward.shape != (n, k):
        raise ConfigError(f"{name}: reward must have shape ({n}, {k}) (one per slot), got {reward.shape}.")
    if not np.all(np.isfinite(reward)):
        i = np.argwhere(~np.isfinite(reward))[0]
        raise ConfigError(f"{name}: reward[{i[0]}, {i[1]}] must be finite.")


__all__ = ["OPESupportWarning", "check_action_dist", "check_logged", "check_slate_log",
           "check_support", "unsupported_mass"]
