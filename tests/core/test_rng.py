"""``mtrlrec.core.rng`` reproduces ``jax.random`` bit for bit (the committed tables rely on it)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.core import rng


@pytest.fixture(scope="module")
def keys():
    return jax.random.split(jax.random.PRNGKey(11), 512)


def test_fold_in_matches_jax(keys):
    data = jnp.arange(512) * 3 + 1
    ours = jax.jit(jax.vmap(rng.fold_in))(keys, data)
    ref = jax.vmap(jax.random.fold_in)(keys, data)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))
    for d in (0, 7, 2 ** 31 + 5):  # Python ints, including above int32
        np.testing.assert_array_equal(np.asarray(rng.fold_in(keys[0], d)),
                                      np.asarray(jax.random.fold_in(keys[0], d)))


@pytest.mark.parametrize("shape", [(), (2,), (3, 4)])
def test_uniform_matches_jax(keys, shape):
    ours = jax.jit(jax.vmap(lambda k: rng.uniform(k, shape)))(keys)
    ref = jax.vmap(lambda k: jax.random.uniform(k, shape))(keys)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))


def test_typed_and_other_keys():
    typed = jax.random.key(3)
    np.testing.assert_array_equal(
        np.asarray(jax.random.key_data(rng.fold_in(typed, 5))),
        np.asarray(jax.random.key_data(jax.random.fold_in(typed, 5))))
    np.testing.assert_array_equal(np.asarray(rng.uniform(typed, (3,))),
                                  np.asarray(jax.random.uniform(typed, (3,))))
    rbg = jax.random.key(3, impl="rbg")  # not Threefry: handed to jax.random
    np.testing.assert_array_equal(
        np.asarray(jax.random.key_data(rng.fold_in(rbg, 5))),
        np.asarray(jax.random.key_data(jax.random.fold_in(rbg, 5))))
