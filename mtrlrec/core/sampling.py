r"""Exact Gamma and Beta samplers that spend few random bits per draw.

``jax.random.beta`` / ``jax.random.gamma`` are exact but, on CPU, slow inside a
vmapped bandit loop: each draw runs its own rejection loop on fresh keys. Thompson
sampling needs 2K Gamma draws per pull, so the sampler is its bottleneck.

This module implements Marsaglia & Tsang's (2000, "A simple method for
generating gamma variables", ACM TOMS 26(3), §2-§4) method with

* counter-mode random words: word ``i`` of a call is a hash of ``i`` under the
  call's key (:func:`counter_words`), so every proposal has fixed words and a
  call's draws do not depend on how calls are batched;
* Box–Muller pairs: the two Gamma draws of a pair (the :math:`G_a, G_b` of one
  Beta draw) take the cosine and the sine normal of the same two words, and one
  word each for the acceptance test: 2 words per Gamma draw, and no gather or
  concatenation in the first round, which XLA compiles into a few plain
  loops; the cosine and sine are short polynomials (:func:`_sincos_2pi`);
* an exact fallback: a rejected draw is re-proposed from fresh words, the
  first waiting draw of each half per iteration of a ``lax.while_loop``,
  until all are accepted. Under ``vmap`` the loop runs until every call of
  the batch is done: a Thompson-sampling step over 1,000 runs pays the first
  round and 1-3 cheap iterations.

The output is exactly Gamma-distributed up to float32 rounding, not an
approximation.

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

import math

import jax
import jax.numpy as jnp

from mtrlrec.core import rng

_TWO_PI = 6.283185307179586
_INV_2_32 = 2.0 ** -32
SOURCES = ("hash", "threefry")


def _uniform_open(bits: jax.Array) -> jax.Array:
    """Maps uint32 words to floats in the open interval (0, 1)."""
    # (bits + 0.5) / 2^32 rounded to float32 can hit 1.0 for the top ~128 words:
    # clamp below 1 so log(1 - u) and log(u) stay finite.
    u = (bits.astype(jnp.float32) + 0.5) * jnp.float32(_INV_2_32)
    return jnp.minimum(u, jnp.float32(1.0 - 2.0 ** -24))


def _lowbias32(x: jax.Array) -> jax.Array:
    """Wellons' ``lowbias32`` integer hash (a bijection of uint32 with low bias)."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def key_words(key: jax.Array) -> jax.Array:
    """The two uint32 words that key :func:`counter_words`, from a PRNG key.

    A Threefry key is two words; one made by ``split`` or ``fold_in`` (as every
    key of the online loops is) is two uniformly random words, so they are used
    as they are, with no Threefry call (a raw seed key such as ``PRNGKey(0)``
    works too: the counter hash mixes it). Other key implementations are hashed
    down by ``jax.random.bits``.
    """
    words = rng.threefry_words(key)
    return words if words is not None else jax.random.bits(key, (2,), jnp.uint32)


def counter_words(kw: jax.Array, ctr: jax.Array, source: str = "hash") -> jax.Array:
    r"""uint32 words number ``ctr`` of the streams keyed by ``kw [..., 2]`` (broadcast).

    ``source='hash'``: :math:`h(h(\mathrm{ctr} \oplus k_0) + k_1)` with :math:`h`
    = lowbias32, a bijection of the counter for a fixed key, so the words of one
    stream are distinct. ``source='threefry'``: Threefry-2x32 in counter mode,
    word ``ctr`` of ``jax.random.bits(key, (N,))`` (the generator behind
    ``jax.random``), kept as a reference; about 3.5x dearer per word on CPU.
    """
    ctr = ctr.astype(jnp.uint32)
    k0, k1 = kw[..., 0], kw[..., 1]
    if source == "hash":
        return _lowbias32(_lowbias32(ctr ^ k0) + k1)
    if source == "threefry":
        y0, y1 = rng.threefry2x32(k0, k1, jnp.zeros_like(ctr), ctr)
        return y0 ^ y1
    raise ValueError(f"unknown bit source {source!r}; expected one of {SOURCES}.")


def random_bits(key: jax.Array, n: int, source: str = "hash") -> jax.Array:
    """``[n]`` uint32 random words (``source='threefry'``: ``jax.random.bits``)."""
    if source == "threefry":
        return jax.random.bits(key, (n,), jnp.uint32)
    if source != "hash":
        raise ValueError(f"unknown bit source {source!r}; expected one of {SOURCES}.")
    k = jax.random.bits(key, (2,), jnp.uint32)
    return counter_words(k, jnp.arange(n, dtype=jnp.uint32))


def fast_normals(key: jax.Array, n: int) -> jax.Array:
    """``[n]`` standard normals by Box–Muller from hashed counter words
    (:func:`random_bits`: one threefry call per draw of ``n``, several times
    cheaper on CPU than ``jax.random.normal``). Used by agents and environments."""
    half = (n + 1) // 2
    bits = random_bits(key, 2 * half).reshape(2, half)
    u1 = (bits[0].astype(jnp.float32) + 0.5) * jnp.float32(2.0**-32)
    u2 = (bits[1].astype(jnp.float32) + 0.5) * jnp.float32(2.0**-32)
    r = jnp.sqrt(-2.0 * jnp.log(jnp.minimum(u1, jnp.float32(1.0 - 2.0**-24))))
    theta = jnp.float32(2.0 * math.pi) * u2
    return jnp.concatenate([r * jnp.cos(theta), r * jnp.sin(theta)])[:n]


def _mt_accept(x, u, d, c):
    """Marsaglia–Tsang: the candidate :math:`d v^3`, :math:`v = 1 + c x`, and whether ``u`` accepts it."""
    v = 1.0 + c * x
    v3 = v * v * v
    ok = v > 0.0
    acc = ok & (jnp.log(u) < 0.5 * x * x + d - d * v3 + 3.0 * d * jnp.log(jnp.where(ok, v, 1.0)))
    return d * v3, acc


def _sincos_2pi(u: jax.Array) -> tuple[jax.Array, jax.Array]:
    r""":math:`(\cos 2\pi u, \sin 2\pi u)` for ``u`` in [0, 1], to about 1 float32 ulp.

    Quarter-turn reduction and the Cephes ``sinf``/``cosf`` minimax polynomials
    on :math:`[-\pi/4, \pi/4]`: a few multiply-adds; XLA's CPU ``cos`` and
    ``sin`` (general range reduction) took 3.3x as long for the pair (measured
    in a scan over 20,000 draws, 2026-11-25).
    """
    x = 4.0 * u
    k = jnp.round(x)
    phi = (x - k) * jnp.float32(_TWO_PI / 4.0)
    z = phi * phi
    s = phi + phi * z * (-1.6666654611e-1 + z * (8.3321608736e-3 + z * -1.9515295891e-4))
    c = 1.0 - 0.5 * z + z * z * (4.166664568298827e-2 + z * (-1.388731625493765e-3
                                                          + z * 2.443315711809948e-5))
    q = k.astype(jnp.int32) & 3  # quarter turns: rotate (c, s) by q * 90 degrees
    cos = jnp.where(q == 0, c, jnp.where(q == 1, -s, jnp.where(q == 2, -c, s)))
    sin = jnp.where(q == 0, s, jnp.where(q == 1, c, jnp.where(q == 2, -s, -c)))
    return cos, sin


def _box_muller(w1, w2):
    """Two words -> the cosine and the sine standard normal of one Box–Muller pair."""
    r = jnp.sqrt(-2.0 * jnp.log(_uniform_open(w1)))
    cos, sin = _sincos_2pi(_uniform_open(w2))
    return r * cos, r * sin


def _gamma_pairs(kw, a1, a2, source):
    """Exact Gamma draws for two ``[n]`` vectors of shapes ``>= 1``, one call.

    Draw ``j`` of ``a1`` and draw ``j`` of ``a2`` are a Box–Muller pair: the
    first round reads words ``4j .. 4j + 3`` of the call's stream (the pair, then
    one acceptance word each). A rejected draw is marked -1; retry ``i``
    re-proposes the first waiting draw of each half, again as a pair, from
    words ``6n + 4i ..`` (``[4n, 6n)`` is left to the ``alpha < 1`` boost),
    until none waits. The words depend only on the call's key, so under
    ``vmap`` each call gets the draws it would get alone; the batched loop runs
    until the unluckiest call is done (usually 1-3 retries).

    Written for XLA's CPU backend: the halves stay separate arrays (stacked
    into one, the first round ran 1.8x slower) and rejection is marked in the
    value rather than in a second output (XLA recomputed the normals in a
    second fusion for it).
    """
    n = a1.shape[0]
    words = lambda ctr, k: counter_words(kw, ctr + jnp.uint32(k), source)  # noqa: E731
    d1, d2 = a1 - 1.0 / 3.0, a2 - 1.0 / 3.0
    c1, c2 = jax.lax.rsqrt(9.0 * d1), jax.lax.rsqrt(9.0 * d2)

    def propose(ctr, d1, c1, d2, c2):
        x1, x2 = _box_muller(words(ctr, 0), words(ctr, 1))
        g1, ok1 = _mt_accept(x1, _uniform_open(words(ctr, 2)), d1, c1)
        g2, ok2 = _mt_accept(x2, _uniform_open(words(ctr, 3)), d2, c2)
        return jnp.where(ok1, g1, -1.0), jnp.where(ok2, g2, -1.0)

    g1, g2 = propose(jnp.arange(n, dtype=jnp.uint32) * jnp.uint32(4), d1, c1, d2, c2)
    slots = jnp.arange(n)

    def retry(carry):
        g1, g2, i = carry
        e1, e2 = jnp.argmin(g1), jnp.argmin(g2)  # a waiting draw if any (-1 < accepted)
        p1, p2 = propose(jnp.uint32(6 * n) + jnp.uint32(4) * i, d1[e1], c1[e1], d2[e2], c2[e2])
        g1 = jnp.where((slots == e1) & (g1 < 0.0), p1, g1)
        g2 = jnp.where((slots == e2) & (g2 < 0.0), p2, g2)
        return g1, g2, i + jnp.uint32(1)

    waiting = lambda q: jnp.any(q[0] < 0.0) | jnp.any(q[1] < 0.0)  # noqa: E731
    g1, g2, _ = jax.lax.while_loop(waiting, retry, (g1, g2, jnp.uint32(0)))
    return g1, g2


def standard_gamma(
    key: jax.Array, alpha: jax.Array, source: str = "hash", shape_ge_one: bool = False
) -> jax.Array:
    r"""Exact draws :math:`G \sim \mathrm{Gamma}(\alpha, 1)`, one per entry of ``alpha``.

    Draws are made in Box–Muller pairs (entry ``j`` with entry ``j + n/2`` of
    the flattened ``alpha``), see the module docstring.

    Args:
      key: PRNG key.
      alpha: shape parameters > 0, any shape ``[...]`` (float32).
      source: random words, 'hash' (fast, default) or 'threefry'; see
        :func:`counter_words`.
      shape_ge_one: promise (checked by the caller on the host) that every
        ``alpha >= 1``, which skips the ``alpha < 1`` boost and its words.

    Returns:
      ``[...]`` float32 Gamma(alpha, 1) draws.
    """
    alpha = jnp.asarray(alpha, jnp.float32)
    a = alpha.reshape(-1)
    n = a.shape[0]
    half = (n + 1) // 2
    a = jnp.pad(a, (0, 2 * half - n), constant_values=1.0)
    g = _gamma(key, a[:half], a[half:], source, shape_ge_one)
    return jnp.concatenate(g)[:n].reshape(alpha.shape)


def _gamma(key, a1, a2, source, shape_ge_one):
    """Gamma draws for the pairs ``(a1[j], a2[j])``, boosting shapes below 1."""
    if source not in SOURCES:
        raise ValueError(f"unknown bit source {source!r}; expected one of {SOURCES}.")
    kw = key_words(key)
    if shape_ge_one:
        return _gamma_pairs(kw, a1, a2, source)
    n = a1.shape[0]
    out = []
    g12 = _gamma_pairs(kw, jnp.where(a1 < 1.0, a1 + 1.0, a1), jnp.where(a2 < 1.0, a2 + 1.0, a2),
                       source)
    for h, (a, g) in enumerate(zip((a1, a2), g12)):
        ctr = jnp.uint32((4 + h) * n) + jnp.arange(n, dtype=jnp.uint32)
        u = _uniform_open(counter_words(kw, ctr, source))
        small = a < 1.0
        out.append(g * jnp.where(small, jnp.exp(jnp.log(u) / jnp.where(small, a, 1.0)), 1.0))
    return tuple(out)


def beta(
    key: jax.Array, a: jax.Array, b: jax.Array, source: str = "hash", shape_ge_one: bool = False
) -> jax.Array:
    r"""Exact draws :math:`\mathrm{Beta}(a, b) = G_a / (G_a + G_b)`.

    :math:`G_a` and :math:`G_b` of each entry are one Box–Muller pair.

    Args:
      key: PRNG key.
      a, b: parameters > 0 of the same shape ``[...]``.
      source: random words, 'hash' or 'threefry' (see :func:`counter_words`).
      shape_ge_one: promise that all ``a, b >= 1`` (see :func:`standard_gamma`).

    Returns:
      ``[...]`` float32 draws in [0, 1].
    """
    a = jnp.asarray(a, jnp.float32)
    b = jnp.broadcast_to(jnp.asarray(b, jnp.float32), a.shape)
    ga, gb = _gamma(key, a.reshape(-1), b.reshape(-1), source, shape_ge_one)
    return (ga / (ga + gb)).reshape(a.shape)
