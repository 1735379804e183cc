r"""User-state encoders for agents: the observed interest vector, or an encoder of recent clicks.

:class:`UserState` maps an observation to the state vector an agent's networks
condition on:

* ``'observed'``: the simulator's interest vector ``obs['user']`` (RecSim observes it);
* ``'gru'``: :math:`s = h_L`, a GRU over the clicked items' features
  ``obs['history'] [L, D]`` (GRU4Rec, Hidasi et al. 2016, §3.1), padding skipped;
* ``'transformer'``: a causal Transformer (SASRec, Kang & McAuley 2018, §III) over
  the projected history, read at the last click.

The histories come from :class:`mtrlrec.envs.slate_history.ClickHistory`. The encoder
is trained end to end with the agent's loss.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtrlrec.core.errors import ConfigError
from mtrlrec.models.encoders import GRUEncoder, TransformerEncoder, pool

USER_STATES = ("observed", "gru", "transformer")


class UserState(nn.Module):
    """``obs`` (leading batch axis) -> ``[B, D_s]`` user state."""

    kind: str = "observed"
    features: int = 32

    @nn.compact
    def __call__(self, obs) -> jax.Array:
        if self.kind == "observed":
            return obs["user"]
        if self.kind not in USER_STATES:
            raise ConfigError(f"user state must be one of {USER_STATES}, got {self.kind!r}.")
        if "history" not in obs:
            raise ConfigError(f"a {self.kind!r} user state encodes obs['history']: wrap the "
                              "environment in ClickHistory (OnlineRunner.wrappers = [@ClickHistory]).")
        x, mask = obs["history"], obs["history_mask"] > 0
        empty = ~jnp.any(mask, -1, keepdims=True)  # no click yet: a learned start state
        start = self.param("start", nn.initializers.zeros, (self.features,))
        if self.kind == "gru":
            _, s = GRUEncoder(self.features, name="gru")(x, mask)
        else:
            h = nn.Dense(self.features, name="proj")(x)
            h = TransformerEncoder(num_layers=1, num_heads=2, max_len=x.shape[-2],
                                   name="transformer")(h, mask)
            s = pool(h, mask, "last")
        return jnp.where(empty, start, s)
