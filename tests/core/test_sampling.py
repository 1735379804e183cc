"""The exact Beta/Gamma sampler against analytic moments and NumPy's sampler."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from mtrlrec.core import sampling

# Parameter values: small (< 1, boosted), near 1, moderate, large (posterior-like).
A = np.array([0.3, 0.7, 1.0, 1.0, 2.5, 5.0, 17.0, 120.0, 3000.0, 1.0, 40.0, 0.5], np.float32)
B = np.array([0.4, 2.0, 1.0, 9.0, 2.5, 1.0, 60.0, 80.0, 7000.0, 250.0, 1.0, 0.5], np.float32)
N = 4000  # draws per parameter pair


@pytest.fixture(scope="module")
def draws():
    """``{source: [N, P]}`` Beta draws, one vmapped call per bit source."""
    keys = jax.random.split(jax.random.PRNGKey(0), N)
    out = {}
    for source in ("hash", "threefry"):
        f = jax.jit(jax.vmap(lambda k: sampling.beta(k, A, B, source)))
        out[source] = np.asarray(f(keys), np.float64)
    return out


@pytest.mark.parametrize("source", ["hash", "threefry"])
def test_beta_moments(draws, source):
    x = draws[source]
    a, b = A.astype(np.float64), B.astype(np.float64)
    mean = a / (a + b)
    var = a * b / ((a + b) ** 2 * (a + b + 1))
    # SE of the sample mean and of the sample variance (normal-theory bound via
    # the fourth central moment estimated from the draws).
    se_mean = np.sqrt(var / N)
    m4 = np.mean((x - x.mean(0)) ** 4, axis=0)
    se_var = np.sqrt(np.maximum(m4 - var ** 2, 0) / N)
    assert np.all(np.abs(x.mean(0) - mean) <= 5 * se_mean), (x.mean(0), mean)
    assert np.all(np.abs(x.var(0) - var) <= 5 * se_var + 1e-12), (x.var(0), var)
    assert np.all((x >= 0) & (x <= 1)) and np.all(np.isfinite(x))


@pytest.mark.parametrize("source", ["hash", "threefry"])
def test_beta_two_sample_against_numpy(draws, source):
    """Kolmogorov–Smirnov two-sample test per parameter pair, Bonferroni at 1e-3."""
    rng = np.random.default_rng(1)
    pvals = []
    for j in range(A.size):
        ref = rng.beta(float(A[j]), float(B[j]), N)
        pvals.append(stats.ks_2samp(draws[source][:, j], ref).pvalue)
    assert min(pvals) > 1e-3 / A.size, pvals


def test_gamma_mean_and_variance():
    alpha = jnp.asarray([0.2, 1.0, 3.3, 50.0], jnp.float32)
    keys = jax.random.split(jax.random.PRNGKey(3), N)
    g = np.asarray(jax.jit(jax.vmap(lambda k: sampling.standard_gamma(k, alpha)))(keys),
                   np.float64)
    a = np.asarray(alpha, np.float64)
    assert np.all(np.abs(g.mean(0) - a) <= 5 * np.sqrt(a / N))
    # Var of Gamma(a) is a; the SE of the sample variance uses m4 = 3a² + 6a.
    assert np.all(np.abs(g.var(0) - a) <= 5 * np.sqrt((3 * a ** 2 + 6 * a - a ** 2) / N))


def test_threefry_words_are_jax_random_bits():
    """The 'threefry' source is word ``ctr`` of ``jax.random.bits`` (counter mode)."""
    key = jax.random.PRNGKey(9)
    ctr = jnp.asarray([0, 1, 5, 63], jnp.uint32)
    words = sampling.counter_words(sampling.key_words(key), ctr, "threefry")
    np.testing.assert_array_equal(np.asarray(words),
                                  np.asarray(jax.random.bits(key, (64,), jnp.uint32))[np.asarray(ctr)])


def test_sincos_polynomial_accuracy():
    u = np.concatenate([np.linspace(0, 1, 200_001),
                        np.random.default_rng(0).random(100_000)]).astype(np.float32)
    cos, sin = jax.jit(sampling._sincos_2pi)(u)
    theta = 2 * np.pi * u.astype(np.float64)
    assert np.abs(np.asarray(cos) - np.cos(theta)).max() < 2e-7
    assert np.abs(np.asarray(sin) - np.sin(theta)).max() < 2e-7


def test_bit_sources_and_errors():
    bits = np.asarray(sampling.random_bits(jax.random.PRNGKey(0), 10_000, "hash"))
    assert bits.dtype == np.uint32 and len(np.unique(bits)) == bits.size
    # Each bit is set about half the time.
    frac = np.unpackbits(bits.view(np.uint8)).mean()
    assert abs(frac - 0.5) < 5 * 0.5 / np.sqrt(bits.size * 32)
    with pytest.raises(ValueError, match="unknown bit source"):
        sampling.random_bits(jax.random.PRNGKey(0), 4, "mt19937")


def test_hash_sampler_does_not_depend_on_batching():
    """A call's draws depend on its key and parameters only, not on the vmapped batch."""
    a = jnp.asarray([1.0, 1.0, 3.0, 0.5], jnp.float32)
    b = jnp.asarray([1.0, 9.0, 2.0, 0.5], jnp.float32)
    keys = jax.random.split(jax.random.PRNGKey(5), 64)
    batched = np.asarray(jax.jit(jax.vmap(lambda k: sampling.beta(k, a, b)))(keys))
    single = jax.jit(lambda k: sampling.beta(k, a, b))
    one_by_one = np.stack([np.asarray(single(keys[i])) for i in range(4)])
    np.testing.assert_allclose(one_by_one, batched[:4], rtol=1e-5, atol=1e-6)
    nested = jax.jit(jax.vmap(jax.vmap(lambda k, s: sampling.beta(k, a * s, b), in_axes=(0, None)),
                              in_axes=(None, 0)))(keys[:8], jnp.asarray([1.0, 2.0]))
    np.testing.assert_allclose(np.asarray(nested[0]), batched[:8], rtol=1e-5, atol=1e-6)
