r"""Flax (linen) encoders for users, items and interaction histories.

Conventions shared by every module here:

* Item/user/feature ids are ``int32``; id ``0`` is padding when a module has
  ``padding_idx=0`` (the default for item sequences), so a catalogue of ``N``
  items uses a vocabulary of ``N + 1`` ids ``0..N``.
* A history is ``ids [B, L]`` with ``mask = ids != 0``; padding may sit on the
  left or the right. Every sequence encoder is *padding invariant*: adding or
  moving padding changes no output at real positions, because masked steps keep
  the recurrent carry (GRU), are excluded as attention keys (Transformer), are
  zeroed before convolution (CNN), and positions are counted over real tokens
  only (``pos = cumsum(mask) - 1``).
* Shapes and dimension mismatches are checked while tracing (before
  compilation) and raise :class:`~mtrlrec.core.errors.ConfigError` naming the
  module and argument. Value checks (ids out of the vocabulary, empty
  histories) run on concrete arrays (eager calls and data loaders, see
  :func:`check_ids` and :func:`check_histories`); inside ``jit`` they cannot
  raise, so loaders validate the data once before training.

References: GRU4Rec (Hidasi et al., ICLR 2016, §3.1), SASRec (Kang & McAuley,
ICDM 2018, §III.A–C), BERT4Rec (Sun et al., CIKM 2019) for bidirectional
encoders, AutoInt-style attention fusion (Song et al., CIKM 2019, §4.3).
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core.errors import ConfigError

_ACTIVATIONS: dict[str, Callable] = {
    "relu": nn.relu,
    "gelu": nn.gelu,
    "tanh": jnp.tanh,
    "sigmoid": nn.sigmoid,
    "elu": nn.elu,
    "swish": nn.swish,
    "identity": lambda x: x,
}


def activation(name: str, where: str = "activation") -> Callable:
    """Returns the activation function called ``name`` or raises naming ``where``."""
    if name not in _ACTIVATIONS:
        raise ConfigError(f"{where} must be one of {sorted(_ACTIVATIONS)}, got {name!r}.")
    return _ACTIVATIONS[name]


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def check_ids(where: str, ids, vocab_size: int) -> None:
    """Raises if any id is outside ``[0, vocab_size)``.

    Args:
      where: 'Module.argument' named in the message.
      ids: integer array of any shape (NumPy or a concrete JAX array).
      vocab_size: number of embeddings (including the padding id).
    """
    if not _is_concrete(ids):
        return
    a = np.asarray(ids)
    if a.size == 0:
        return
    if not np.issubdtype(a.dtype, np.integer):
        raise ConfigError(f"{where} must hold integer ids, got dtype {a.dtype}.")
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi >= vocab_size:
        bad = lo if lo < 0 else hi
        raise ConfigError(
            f"{where}: id {bad} is out of the vocabulary [0, {vocab_size}) "
            f"(vocabulary size {vocab_size}; id 0 is padding)."
        )


def check_histories(where: str, ids, padding_idx: int = 0) -> None:
    """Raises if some row of ``ids [B, L]`` holds padding only (an empty history)."""
    if not _is_concrete(ids):
        return
    a = np.asarray(ids)
    if a.ndim < 1 or a.shape[-1] == 0:
        raise ConfigError(f"{where}: histories have length 0 (shape {a.shape}).")
    empty = np.all(a == padding_idx, axis=-1)
    if np.any(empty):
        rows = np.argwhere(empty)[:5].tolist()
        raise ConfigError(
            f"{where}: {int(empty.sum())} empty histories (padding only), e.g. rows {rows}; "
            "every user needs at least one interaction."
        )


class IdEmbedding(nn.Module):
    """Embedding table for users, items or a categorical feature.

    ``e = E[ids] * (ids != padding_idx)`` so the padding id embeds to zeros.

    Attributes:
      num_embeddings: vocabulary size V (ids ``0..V-1``, padding included).
      features: embedding dimension D.
      padding_idx: id embedded as zeros, or None.
      name_for_errors: prefix of error messages.
    """

    num_embeddings: int
    features: int
    padding_idx: int | None = 0
    embedding_init: Callable = nn.initializers.normal(stddev=0.02)
    name_for_errors: str = "IdEmbedding"

    def setup(self):
        if self.num_embeddings < 1 or self.features < 1:
            raise ConfigError(
                f"{self.name_for_errors}: num_embeddings and features must be >= 1, got "
                f"{self.num_embeddings} and {self.features}."
            )
        self.table = nn.Embed(self.num_embeddings, self.features, embedding_init=self.embedding_init)

    def __call__(self, ids: jax.Array) -> jax.Array:
        """ids ``[...]`` int -> embeddings ``[..., D]`` float32."""
        if not jnp.issubdtype(jnp.asarray(ids).dtype, jnp.integer):
            raise ConfigError(f"{self.name_for_errors}.ids must be integers, got {jnp.asarray(ids).dtype}.")
        check_ids(f"{self.name_for_errors}.ids", ids, self.num_embeddings)
        e = self.table(ids)
        if self.padding_idx is not None:
            e = e * (ids != self.padding_idx)[..., None].astype(e.dtype)
        return e

    def all(self) -> jax.Array:
        """The whole table ``[V, D]`` (padding row zeroed), e.g. for full-catalogue scores."""
        w = self.table.embedding
        if self.padding_idx is not None:
            w = w.at[self.padding_idx].set(0.0)
        return w


class MLP(nn.Module):
    """Multi-layer perceptron ``h_{l+1} = act(W_l h_l + b_l)`` with optional dropout.

    Attributes:
      hidden: units of each hidden layer.
      output: units of a final linear layer (None: no extra layer).
      act: activation name ('relu', 'gelu', 'tanh', ...).
      dropout: dropout rate after each hidden layer (active when ``train``).
      activate_final: apply the activation after the last hidden layer when
        ``output`` is None (True) or not.
    """

    hidden: Sequence[int] = (64,)
    output: int | None = None
    act: str = "relu"
    dropout: float = 0.0
    activate_final: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """x ``[..., D_in]`` -> ``[..., hidden[-1] or output]``."""
        f = activation(self.act, "MLP.act")
        for i, units in enumerate(self.hidden):
            x = nn.Dense(units)(x)
            last = i == len(self.hidden) - 1 and self.output is None
            if not last or self.activate_final:
                x = f(x)
            if self.dropout > 0:
                x = nn.Dropout(self.dropout, deterministic=not train)(x)
        if self.output is not None:
            x = nn.Dense(self.output)(x)
        return x


class FeatureFusion(nn.Module):
    r"""Fuses a list of feature embeddings ``[..., D_i]`` into one vector.

    Methods:
      * ``concat``: ``[e_1; ...; e_n]`` -> ``[..., Σ D_i]``.
      * ``sum``: ``Σ_i e_i`` -> ``[..., D]`` (all D_i equal).
      * ``dot``: pairwise inner products ``<e_i, e_j>`` for ``i < j`` ->
        ``[..., n(n-1)/2]`` (factorisation-machine interactions; all D_i equal).
      * ``attention``: the fusion layer ``a_i = softmax_i(qᵀ tanh(W e_i + b))``,
        ``h = Σ_i a_i e_i`` -> ``[..., D]`` (all D_i equal).
    """

    method: str = "concat"

    @nn.compact
    def __call__(self, features: Sequence[jax.Array]) -> jax.Array:
        if self.method not in ("concat", "sum", "dot", "attention"):
            raise ConfigError(
                f"FeatureFusion.method must be 'concat', 'sum', 'dot' or 'attention', got {self.method!r}."
            )
        if len(features) == 0:
            raise ConfigError("FeatureFusion.features is empty.")
        if self.method == "concat":
            return jnp.concatenate(features, axis=-1)
        dims = [f.shape[-1] for f in features]
        if len(set(dims)) != 1:
            raise ConfigError(
                f"FeatureFusion(method={self.method!r}).features must share the embedding "
                f"dimension, got dimensions {dims}; use method='concat' or project them first."
            )
        x = jnp.stack(features, axis=-2)  # [..., n, D]
        if self.method == "sum":
            return x.sum(-2)
        if self.method == "dot":
            n = x.shape[-2]
            gram = jnp.einsum("...id,...jd->...ij", x, x)
            iu, ju = np.triu_indices(n, k=1)
            return gram[..., iu, ju]
        d = dims[0]
        scores = nn.Dense(1, use_bias=False, name="query")(jnp.tanh(nn.Dense(d, name="proj")(x)))
        a = jax.nn.softmax(scores[..., 0], axis=-1)
        return jnp.einsum("...n,...nd->...d", a, x)


def positions_from_mask(mask: jax.Array) -> jax.Array:
    """Position of each real token among the real tokens: ``cumsum(mask) - 1`` (0 on padding)."""
    return jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=-1) - 1, 0)


def pool(x: jax.Array, mask: jax.Array, method: str = "last") -> jax.Array:
    """Pools a sequence ``x [B, L, D]`` with ``mask [B, L]`` into ``[B, D]``.

    ``last``: the last real position (works for left and right padding);
    ``mean``: ``Σ_t m_t x_t / max(Σ_t m_t, 1)``. (Attention pooling has
    parameters: :class:`AttentionPooling`.)
    """
    m = mask.astype(x.dtype)
    if method == "mean":
        return (x * m[..., None]).sum(-2) / jnp.maximum(m.sum(-1, keepdims=True), 1.0)
    if method == "last":
        L = x.shape[-2]
        idx = jnp.max(jnp.where(mask, jnp.arange(L), 0), axis=-1)
        return jnp.take_along_axis(x, idx[..., None, None], axis=-2)[..., 0, :]
    raise ConfigError(f"pooling must be 'last', 'mean' or 'attention', got {method!r}.")


class AttentionPooling(nn.Module):
    """``a_t = softmax_t(qᵀ tanh(W x_t))`` over real positions, ``h = Σ_t a_t x_t``."""

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        s = nn.Dense(1, use_bias=False)(jnp.tanh(nn.Dense(x.shape[-1])(x)))[..., 0]
        s = jnp.where(mask, s, -1e9)
        a = jax.nn.softmax(s, axis=-1) * mask
        return jnp.einsum("...t,...td->...d", a, x)


class Pooling(nn.Module):
    """Pooling by name: 'last', 'mean' or 'attention'."""

    method: str = "last"

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        if self.method == "attention":
            return AttentionPooling()(x, mask)
        return pool(x, mask, self.method)


class CNNEncoder(nn.Module):
    """1-D convolutional feature extractor over a sequence (Caser/TextCNN style).

    For each kernel size k: ``c = relu(conv_k(x ⊙ m))``, then max over real
    positions; the outputs of all kernel sizes are concatenated.

    Input ``x [B, L, D]``, ``mask [B, L]`` -> ``[B, features * len(kernel_sizes)]``.
    """

    features: int = 32
    kernel_sizes: Sequence[int] = (2, 3)

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array) -> jax.Array:
        m = mask[..., None].astype(x.dtype)
        # Compact the real tokens to the left so that left/right padding give the same windows.
        x = _compact_left(x * m, mask)
        mc = _compact_left(m, mask)
        outs = []
        for k in self.kernel_sizes:
            c = nn.relu(nn.Conv(self.features, kernel_size=(k,), padding="SAME")(x))
            c = jnp.where(mc > 0, c, -1e9)
            outs.append(jnp.max(c, axis=-2))
        return jnp.concatenate(outs, axis=-1)


def _compact_left(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Moves real positions of ``x [B, L, ...]`` to the front, keeping their order."""
    L = mask.shape[-1]
    # Stable sort key: real tokens first by position, padding after.
    key = jnp.where(mask, jnp.arange(L), L + jnp.arange(L))
    order = jnp.argsort(key, axis=-1)
    return jnp.take_along_axis(x, order[..., None], axis=-2)


class _MaskedGRUCell(nn.Module):
    features: int

    @nn.compact
    def __call__(self, carry, inputs):
        x, m = inputs
        new, _ = nn.GRUCell(self.features)(carry, x)
        new = jnp.where(m[:, None], new, carry)
        return new, new


class GRUEncoder(nn.Module):
    r"""GRU over an interaction history (GRU4Rec, Hidasi et al. 2016, §3.1).

    ``h_t = GRU(h_{t-1}, x_t)`` on real positions, ``h_t = h_{t-1}`` on padding.
    Input ``x [B, L, D]``, ``mask [B, L]`` -> ``(outputs [B, L, H], last [B, H])``.
    """

    features: int = 128

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array):
        scan = nn.scan(
            _MaskedGRUCell,
            variable_broadcast="params",
            split_rngs={"params": False},
            in_axes=1,
            out_axes=1,
        )
        h0 = jnp.zeros(x.shape[:1] + (self.features,), x.dtype)
        last, outs = scan(self.features, name="gru")(h0, (x, mask))
        return outs, last


class TransformerBlock(nn.Module):
    """Post-LN Transformer block: ``h = LN(x + Drop(MHA(x))); y = LN(h + Drop(W_2 gelu(W_1 h)))``.

    As RecBole 1.2's ``TransformerLayer`` (the SASRec it ships): dropout on the
    attention probabilities (``attn_dropout``) and on each sub-layer's output
    (``dropout``), none inside the feed-forward; exact (erf) GELU; LayerNorm
    ``eps``; weights ``N(0, init_std²)``, zero biases.
    """

    num_heads: int
    mlp_dim: int
    dropout: float = 0.0
    attn_dropout: float | None = None  # None: same as dropout
    eps: float = 1e-12
    init_std: float = 0.02

    @nn.compact
    def __call__(self, x, attn_mask, train: bool = False):
        d = x.shape[-1]
        init = nn.initializers.normal(self.init_std)
        attn_p = self.dropout if self.attn_dropout is None else self.attn_dropout
        a = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads, dropout_rate=attn_p, deterministic=not train, kernel_init=init
        )(x, x, mask=attn_mask)
        a = nn.Dropout(self.dropout, deterministic=not train)(a)
        x = nn.LayerNorm(epsilon=self.eps)(x + a)
        h = nn.Dense(self.mlp_dim, kernel_init=init)(x)
        h = nn.gelu(h, approximate=False)
        h = nn.Dense(d, kernel_init=init)(h)
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        return nn.LayerNorm(epsilon=self.eps)(x + h)


class TransformerEncoder(nn.Module):
    r"""Transformer encoder with padding masks (SASRec §III.B–C when causal).

    ``z_0 = LN(x + P[pos])`` with ``pos = cumsum(mask) - 1`` (positions among
    real tokens), then ``num_layers`` blocks. Attention from query t to key s is
    allowed iff ``mask_s`` (and ``s <= t`` when ``causal``). Outputs at padding
    positions are zero.

    Input ``x [B, L, D]``, ``mask [B, L]`` -> ``[B, L, D]``.
    """

    num_layers: int = 2
    num_heads: int = 2
    mlp_dim: int | None = None
    max_len: int = 50
    dropout: float = 0.0
    causal: bool = True
    attn_dropout: float | None = None  # None: same as dropout
    eps: float = 1e-12  # LayerNorm epsilon (RecBole's SASRec: 1e-12)

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array, train: bool = False) -> jax.Array:
        B, L, D = x.shape
        if D % self.num_heads:
            raise ConfigError(
                f"TransformerEncoder: hidden size {D} must be divisible by num_heads={self.num_heads}."
            )
        if L > self.max_len:
            raise ConfigError(f"TransformerEncoder: sequence length {L} > max_len={self.max_len}.")
        pos = positions_from_mask(mask)
        x = x + nn.Embed(self.max_len, D, embedding_init=nn.initializers.normal(0.02), name="pos")(pos)
        x = nn.LayerNorm(epsilon=self.eps)(x)
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
        x = x * mask[..., None]
        attn = mask[:, None, None, :]  # [B, 1, 1, L] keys
        if self.causal:
            # "s <= t" in terms of real-token order equals index order.
            attn = attn & jnp.tril(jnp.ones((L, L), bool))[None, None]
        for i in range(self.num_layers):
            x = TransformerBlock(self.num_heads, self.mlp_dim or 4 * D, self.dropout, self.attn_dropout,
                                 self.eps, name=f"block{i}")(x, attn, train)
            x = x * mask[..., None]
        return x


class SequenceEncoder(nn.Module):
    """Item-history encoder: ``ids [B, L]`` -> user representation ``[B, D]``.

    ``x = E_items[ids]`` then one of ``mean`` (bag of items), ``gru``,
    ``transformer`` (causal), ``bert`` (bidirectional) or ``cnn``, then pooling
    (a projection to ``features`` keeps the output in the item-embedding space).

    Attributes:
      num_items: catalogue size N (ids 1..N; 0 is padding).
      features: item embedding and output dimension D.
      kind: 'mean', 'gru', 'transformer', 'bert' or 'cnn'.
      hidden: GRU hidden size (GRU4Rec uses 128 for D=64).
      num_layers, num_heads, max_len: Transformer settings.
      dropout: dropout on embeddings and inside the encoder.
      pooling: 'last', 'mean' or 'attention'.
    """

    num_items: int
    features: int = 64
    kind: str = "transformer"
    hidden: int = 128
    num_layers: int = 2
    num_heads: int = 2
    max_len: int = 50
    dropout: float = 0.0
    pooling: str = "last"

    def setup(self):
        if self.kind not in ("mean", "gru", "transformer", "bert", "cnn"):
            raise ConfigError(
                f"SequenceEncoder.kind must be 'mean', 'gru', 'transformer', 'bert' or 'cnn', got {self.kind!r}."
            )
        self.items = IdEmbedding(self.num_items + 1, self.features, name_for_errors="SequenceEncoder")
        self.drop = nn.Dropout(self.dropout)
        if self.kind == "gru":
            self.enc = GRUEncoder(self.hidden)
            self.proj = nn.Dense(self.features)
        elif self.kind in ("transformer", "bert"):
            self.enc = TransformerEncoder(
                self.num_layers, self.num_heads, None, self.max_len, self.dropout, self.kind == "transformer"
            )
        elif self.kind == "cnn":
            self.enc = CNNEncoder(self.features)
            self.proj = nn.Dense(self.features)
        if self.kind != "cnn":
            self.pool = Pooling(self.pooling)

    def __call__(self, ids: jax.Array, train: bool = False) -> jax.Array:
        if ids.ndim != 2:
            raise ConfigError(f"SequenceEncoder.ids must be [batch, length], got shape {ids.shape}.")
        check_histories("SequenceEncoder.ids", ids)
        mask = ids != 0
        x = self._embed(ids, train)
        if self.kind == "mean":
            return self.pool(x, mask)
        if self.kind == "gru":
            outs, _ = self.enc(x, mask)
            outs = self.drop(outs, deterministic=not train)
            return self.proj(self.pool(outs, mask))
        if self.kind == "cnn":
            return self.proj(self.enc(x, mask))
        return self.pool(self.enc(x, mask, train), mask)

    def sequence(self, ids: jax.Array, train: bool = False) -> jax.Array:
        """Causal per-position representations ``[B, L, D]`` (``gru`` and ``transformer`` only).

        Position t only sees the real items up to t, so one pass trains the
        next-item prediction of every position (SASRec §III.E).
        """
        if self.kind not in ("gru", "transformer"):
            raise ConfigError(f"SequenceEncoder.sequence needs kind 'gru' or 'transformer', got {self.kind!r}.")
        mask = ids != 0
        x = self._embed(ids, train)
        if self.kind == "gru":
            outs, _ = self.enc(x, mask)
            return self.proj(self.drop(outs, deterministic=not train))
        return self.enc(x, mask, train)

    def _embed(self, ids: jax.Array, train: bool) -> jax.Array:
        x = self.items(ids)
        if self.kind in ("transformer", "bert"):
            # The Transformer drops out after its own LN(x + P[pos]) (SASRec, RecBole); a
            # second dropout on the item embeddings alone would drop them twice.
            return x
        return self.drop(x, deterministic=not train)

    def item_table(self) -> jax.Array:
        """Item embeddings ``[N + 1, D]`` (row 0 = padding = zeros)."""
        return self.items.all()


class NextItemModel(nn.Module):
    """Scores every item as the next one: ``logits = h Eᵀ`` with ``h = encoder(ids)``.

    Output ``[B, N + 1]``; the padding column is set to ``-1e9`` so it never wins
    a softmax or a ranking. (SASRec §III.D shares the item embedding between
    input and output, as here.)
    """

    encoder: SequenceEncoder

    def __call__(self, ids: jax.Array, train: bool = False) -> jax.Array:
        h = self.encoder(ids, train)
        logits = h @ self.encoder.item_table().T
        return logits.at[:, 0].set(-1e9)

    def represent(self, ids: jax.Array) -> jax.Array:
        """User representation ``[B, D]`` (for agents)."""
        return self.encoder(ids, False)
