r"""Exact Gamma and Beta samplers that spend few random bits per draw.

``jax.random.beta`` / ``jax.random.gamma`` are exact but, on CPU, slow inside a
vmapped bandit loop: each draw runs its own rejection loop on fresh keys. Thompson
sampling needs 2K Gamma draws per pull, so the sampler is its bottleneck.

This module implements Marsaglia & Tsang's (2000, "A simple method for
generating gamma variables", ACM TOMS 26(3), §2-§4) method with

* one batch of proposals for all draws at once: the normals come from
  Box–Muller pairs (two 32-bit words give two normals), the acceptance uniform
  from one more word, so a proposal costs 2 words;
* an exact fallback: draws whose proposal was rejected are re-proposed in a
  ``lax.while_loop`` until all are accepted (under ``vmap`` the loop runs until
  every element of the batch is accepted), so the output is exactly
  Gamma-distributed (up to float32 rounding), not an approximation.

Marsaglia–Tsang for shape :math:`\alpha \ge 1`: with :math:`d = \alpha - 1/3`,
:math:`c = 1/\sqrt{9d}`, propose :math:`x \sim \mathcal N(0,1)`,
:math:`v = (1 + c x)^3`; accept :math:`d v` when :math:`v > 0` and

.. math:: \log u < x^2/2 + d - d v + d \log v, \qquad u \sim U(0, 1).

For :math:`\alpha < 1`, :math:`G_\alpha = G_{\alpha+1} U^{1/\alpha}` (Marsaglia
& Tsang §6). :math:`\mathrm{Beta}(a, b) = G_a / (G_a + G_b)`.

The acceptance rate is at least 0.95 for :math:`\alpha \ge 1` and tends to 1
as :math:`\alpha` grows, so with Thompson sampling's growing posterior counts
almost every draw costs one proposal.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import custom_batching

_TWO_PI = 6.283185307179586
_INV_2_32 = 2.0 ** -32


def _uniform_open(bits: jax.Array) -> jax.Array:
    """Maps uint32 words to floats in the open interval (0, 1)."""
    # (bits + 0.5) / 2^32 rounded to float32 can hit 1.0 for the top ~128 words:
    # clamp below 1 so log(1 - u) and log(u) stay finite.
    u = (bits.astype(jnp.float32) + 0.5) * jnp.float32(_INV_2_32)
    return jnp.minimum(u, jnp.float32(1.0 - 2.0 ** -24))


def _normals(bits: jax.Array) -> jax.Array:
    """Box–Muller: ``[2, n]`` uint32 words -> ``[2n]`` standard normals."""
    u1 = _uniform_open(bits[0])
    u2 = _uniform_open(bits[1])
    r = jnp.sqrt(-2.0 * jnp.log(u1))
    theta = jnp.float32(_TWO_PI) * u2
    return jnp.concatenate([r * jnp.cos(theta), r * jnp.sin(theta)])


def _lowbias32(x: jax.Array) -> jax.Array:
    """Wellons' ``lowbias32`` integer hash (a bijection of uint32 with low bias)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def random_bits(key: jax.Array, n: int, source: str = "hash") -> jax.Array:
    r"""``[n]`` uint32 random words.

    ``source='threefry'`` is ``jax.random.bits``. ``source='hash'`` spends one
    threefry call for two 32-bit keys and expands them with a counter hash,
    :math:`w_i = h(h(i \oplus k_0) + k_1)` with :math:`h` = lowbias32, about 3.5x
    cheaper per word on CPU; the words of one call are distinct (h is a
    bijection) and calls are keyed independently by threefry.
    """
    if source == "threefry":
        return jax.random.bits(key, (n,), jnp.uint32)
    if source != "hash":
        raise ValueError(f"unknown bit source {source!r}; expected 'hash' or 'threefry'.")
    k = jax.random.bits(key, (2,), jnp.uint32)
    i = jnp.arange(n, dtype=jnp.uint32)
    return _lowbias32(_lowbias32(i ^ k[0]) + k[1])


def _propose(key: jax.Array, d: jax.Array, c: jax.Array, source: str):
    """One Marsaglia–Tsang proposal for each of the ``n`` flat shapes; 2 words per draw."""
    n = d.shape[0]
    half = (n + 1) // 2
    bits = random_bits(key, 2 * half + n, source)
    x = _normals(bits[: 2 * half].reshape(2, half))[:n]
    u = _uniform_open(bits[2 * half:])
    return _mt_accept(x, u, d, c)


def _words(kw, ctr):
    """uint32 words :math:`h(h(ctr \\oplus k_0) + k_1)` for counters ``ctr`` under keys ``kw [..., 2]``."""
    return _lowbias32(_lowbias32(ctr ^ kw[..., 0]) + kw[..., 1])

def _proposal(kw, elem, rnd, n, d, c):
    """MT proposal of element ``elem`` in round ``rnd``; deterministic in (kw, elem, rnd)."""
    base = ((rnd.astype(jnp.uint32) * jnp.uint32(n) + elem.astype(jnp.uint32)) * jnp.uint32(3))
    u1 = _uniform_open(_words(kw, base))
    u2 = _uniform_open(_words(kw, base + jnp.uint32(1)))
    u = _uniform_open(_words(kw, base + jnp.uint32(2)))
    x = jnp.sqrt(-2.0 * jnp.log(u1)) * jnp.cos(jnp.float32(_TWO_PI) * u2)
    return _mt_accept(x, u, d, c)

def _mt_accept(x, u, d, c):
    """Marsaglia–Tsang: the candidate :math:`d v^3`, :math:`v = 1 + c x`, and whether ``u`` accepts it."""
    v = 1.0 + c * x
    v3 = v * v * v
    ok = v > 0.0
    acc = ok & (jnp.log(u) < 0.5 * x * x + d - d * v3 + 3.0 * d * jnp.log(jnp.where(ok, v, 1.0)))
    return d * v3, acc

def _round0(kw, d, c, n):
    """First proposals of all elements: Box-Muller pairs (j, j + n/2) share words."""
    half = (n + 1) // 2
    j = jnp.arange(half, dtype=jnp.uint32) * jnp.uint32(3)
    k = kw[:, None, :]
    u1 = _uniform_open(_words(k, j))
    u2 = _uniform_open(_words(k, j + jnp.uint32(1)))
    r = jnp.sqrt(-2.0 * jnp.log(u1)); th = jnp.float32(_TWO_PI) * u2
    x = jnp.concatenate([r * jnp.cos(th), r * jnp.sin(th)], axis=1)[:, :n]
    u = _uniform_open(_words(k, jnp.arange(n, dtype=jnp.uint32) * jnp.uint32(3) + jnp.uint32(2)))
    return _mt_accept(x, u, d, c)

def _gamma_flat(kw, d, c, n):
    """kw [B, 2], d, c [B, n] -> [B, n]; global compaction of rejected draws."""
    B = d.shape[0]
    g, done = _round0(kw, d, c, n)
    N = B * n
    M = max(8, N // 16)
    g, done = g.reshape(-1), done.reshape(-1)
    df, cf = d.reshape(-1), c.reshape(-1)
    def outer(carry):
        g, done = carry
        idx = jnp.nonzero(~done, size=M, fill_value=N)[0]
        valid = idx < N
        safe = jnp.minimum(idx, N - 1)
        kwb, el, dd, cc = kw[safe // n], safe % n, df[safe], cf[safe]
        def inner(q):
            gb, okb, r = q
            gn, acc = _proposal(kwb, el, r, n, dd, cc)
            take = (~okb) & acc
            return jnp.where(take, gn, gb), okb | acc, r + 1
        gb, _, _ = jax.lax.while_loop(lambda q: ~jnp.all(q[1]), inner,
                                      (jnp.zeros(M, jnp.float32), ~valid, jnp.ones(M, jnp.int32)))
        slot = jnp.where(valid, idx, N)
        return g.at[slot].set(gb, mode="drop"), done.at[slot].set(True, mode="drop")
    g, done = jax.lax.while_loop(lambda q: ~jnp.all(q[1]), outer, (g, done))
    return g.reshape(B, n)

@custom_batching.custom_vmap
def _gamma_core(kw, d, c):
    """``kw [2]``, ``d, c [n]`` -> ``[n]`` Marsaglia–Tsang draws (batched by ``_rule``)."""
    return _gamma_flat(kw[None], d[None], c[None], d.shape[0])[0]

@_gamma_core.def_vmap
def _rule(axis_size, in_batched, kw, d, c):
    # Under vmap (seeds), compact the rejected draws of the WHOLE batch.
    kb, db, cb = in_batched
    kw = kw if kb else jnp.broadcast_to(kw, (axis_size,) + kw.shape)
    d = d if db else jnp.broadcast_to(d, (axis_size,) + d.shape)
    c = c if cb else jnp.broadcast_to(c, (axis_size,) + c.shape)
    return _gamma_flat(kw, d, c, d.shape[-1]), True


def standard_gamma(
    key: jax.Array, alpha: jax.Array, source: str = "hash", shape_ge_one: bool = False
) -> jax.Array:
    r"""Exact draws :math:`G \sim \mathrm{Gamma}(\alpha, 1)`, one per entry of ``alpha``.

    ``source='hash'`` (default): every draw ``j`` has its own deterministic
    sequence of proposals, whose words are a counter hash of the call's key,
    ``j`` and the round, so results do not depend on how draws are batched.
    All draws get a first proposal (Box–Muller pairs); the rejected ones (a few
    per cent) are gathered into a buffer of ``max(8, N/16)`` slots and
    re-proposed until accepted. Under ``vmap`` a custom batching rule
    (``jax.custom_batching.custom_vmap``) gathers the rejected draws of the
    WHOLE batch of N = batch × n draws, so the fallback costs O(rejected), not a
    full round per batch element.

    ``source='threefry'``: words from ``jax.random.bits``; rejected draws are
    re-proposed in two compacted rounds per call and then a ``while_loop``.

    Args:
      key: PRNG key.
      alpha: shape parameters > 0, any shape ``[...]`` (float32).
      source: random words, 'hash' (fast, default) or 'threefry'
        (``jax.random.bits``); see :func:`random_bits`.
      shape_ge_one: promise (checked by the caller on the host) that every
        ``alpha >= 1``, which skips the ``alpha < 1`` boost and its words.

    Returns:
      ``[...]`` float32 Gamma(alpha, 1) draws.
    """
    alpha = jnp.asarray(alpha, jnp.float32)
    shape = alpha.shape
    a = alpha.reshape(-1)
    n = a.shape[0]
    m1, m2 = max(2, n // 8), max(2, n // 64)
    small = a < 1.0
    a1 = jnp.where(small, a + 1.0, a)
    d = a1 - 1.0 / 3.0
    c = 1.0 / jnp.sqrt(9.0 * d)
    if source == "hash":
        words = jax.random.bits(key, (4,), jnp.uint32)
        g = _gamma_core(words[:2], d, c)
        if not shape_ge_one:
            u = _uniform_open(_words(words[2:], jnp.arange(n, dtype=jnp.uint32)))
            g = g * jnp.where(small, jnp.exp(jnp.log(u) / jnp.where(small, a, 1.0)), 1.0)
        return g.reshape(shape)
    key, k0, k_small = jax.random.split(key, 3)
    if not shape_ge_one:
        # alpha < 1: G_alpha = G_{alpha+1} * U^{1/alpha} (Marsaglia & Tsang §6),
        # computed in log space before the loop (XLA fuses it better there).
        u = _uniform_open(random_bits(k_small, n, source))
        boost = jnp.where(small, jnp.exp(jnp.log(u) / jnp.where(small, a, 1.0)), 1.0)
    g, done = _propose(k0, d, c, source)

    def compacted(m):
        def body(carry):
            g, done, key = carry
            key, k = jax.random.split(key)
            idx = jnp.nonzero(~done, size=m, fill_value=n)[0]  # [m], n = no slot
            valid = idx < n
            g_new, acc = _propose(k, jnp.take(d, idx, mode="clip"),
                                  jnp.take(c, idx, mode="clip"), source)
            slot = jnp.where(valid & acc, idx, n)
            g = g.at[slot].set(g_new, mode="drop")
            done = done.at[slot].set(True, mode="drop")
            return g, done, key

        return body

    carry = compacted(m1)((g, done, key))
    carry = compacted(m2)(carry)
    g, _, _ = jax.lax.while_loop(lambda c: ~jnp.all(c[1]), compacted(m2), carry)
    if not shape_ge_one:
        g = g * boost
    return g.reshape(shape)


def beta(
    key: jax.Array, a: jax.Array, b: jax.Array, source: str = "hash", shape_ge_one: bool = False
) -> jax.Array:
    r"""Exact draws :math:`\mathrm{Beta}(a, b) = G_a / (G_a + G_b)`.

    Args:
      key: PRNG key.
      a, b: parameters > 0 of the same shape ``[...]``.
      source: random words, 'hash' or 'threefry' (see :func:`random_bits`).
      shape_ge_one: promise that all ``a, b >= 1`` (see :func:`standard_gamma`).

    Returns:
      ``[...]`` float32 draws in [0, 1]. Both Gamma draws share one batch of
      proposals (``2 * size`` draws at once).
    """
    a = jnp.asarray(a, jnp.float32)
    b = jnp.broadcast_to(jnp.asarray(b, jnp.float32), a.shape)
    g = standard_gamma(key, jnp.stack([a, b]), source, shape_ge_one)
    ga, gb = g[0], g[1]
    return ga / (ga + gb)
