"""``flat_vmap`` batches an elementwise function by flattening, with the same values."""

import jax
import jax.numpy as jnp
import numpy as np

from mtrlrec.core.layout import flat_vmap


def _fn(a, b):
    return jnp.log1p(a) * b - jnp.expm1(-a)


def test_flat_vmap_matches_plain_vmap():
    f = flat_vmap(_fn)
    a = jnp.linspace(0.1, 2.0, 60).reshape(6, 10)
    b = jnp.arange(10.0)
    expect = np.asarray(jax.vmap(_fn, (0, None))(a, b))
    np.testing.assert_allclose(np.asarray(jax.jit(jax.vmap(f, (0, None)))(a, b)), expect,
                               rtol=1e-6)
    # Nested vmaps (a sweep axis over the runs axis) and a batched second argument.
    a3 = jnp.stack([a, 2 * a])
    nested = jax.vmap(jax.vmap(f, (0, None)), (0, None))(a3, b)
    np.testing.assert_allclose(np.asarray(nested[1]),
                               np.asarray(jax.vmap(_fn, (0, None))(2 * a, b)), rtol=1e-6)
    both = jax.vmap(f)(a, a)
    np.testing.assert_allclose(np.asarray(both), np.asarray(_fn(a, a)), rtol=1e-6)
    assert np.asarray(f(a[0], b)).shape == (10,)  # unbatched call is fn itself
