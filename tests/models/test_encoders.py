"""Encoders: shapes, padding invariance, determinism, bad input, a tiny overfit."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mtrlrec.core.errors import ConfigError
from mtrlrec.models import encoders as E

KINDS = ["mean", "gru", "transformer", "bert", "cnn"]
# Right- and left-padded versions of the same two histories, plus extra padding.
IDS_R = jnp.array([[3, 5, 7, 0, 0, 0], [2, 0, 0, 0, 0, 0]], jnp.int32)
IDS_L = jnp.array([[0, 0, 0, 3, 5, 7], [0, 0, 0, 0, 0, 2]], jnp.int32)
IDS_MID = jnp.array([[0, 3, 5, 7, 0, 0], [0, 0, 2, 0, 0, 0]], jnp.int32)


def _model(kind, pooling="last"):
    return E.SequenceEncoder(num_items=9, features=8, kind=kind, hidden=8, num_layers=1, num_heads=2,
                             max_len=6, pooling=pooling)


@pytest.fixture(scope="module")
def encoded():
    out = {}
    for kind in KINDS:
        m = _model(kind)
        p = jax.jit(m.init)(jax.random.PRNGKey(0), IDS_R)
        out[kind] = (m, p, jax.jit(m.apply))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_shapes_padding_and_determinism(encoded, kind):
    m, p, apply = encoded[kind]
    a = apply(p, IDS_R)
    assert a.shape == (2, 8) and a.dtype == jnp.float32
    # Padding (left, right or both) changes nothing.
    np.testing.assert_allclose(a, apply(p, IDS_L), atol=1e-5)
    np.testing.assert_allclose(a, apply(p, IDS_MID), atol=1e-5)
    # Same key, same parameters, same output; another key, different parameters.
    p2 = jax.jit(m.init)(jax.random.PRNGKey(0), IDS_R)
    np.testing.assert_array_equal(a, apply(p2, IDS_R))
    p3 = jax.jit(m.init)(jax.random.PRNGKey(1), IDS_R)
    assert not np.allclose(a, apply(p3, IDS_R))


def test_order_matters_for_sequence_models(encoded):
    for kind in ["gru", "transformer"]:
        m, p, apply = encoded[kind]
        rev = jnp.array([[7, 5, 3, 0, 0, 0], [2, 0, 0, 0, 0, 0]], jnp.int32)
        assert not np.allclose(apply(p, IDS_R)[0], apply(p, rev)[0], atol=1e-4)


def test_causal_transformer_ignores_future():
    m = E.TransformerEncoder(num_layers=1, num_heads=2, max_len=6, causal=True)
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 6, 4))
    mask = jnp.ones((1, 6), bool)
    p = jax.jit(m.init)(jax.random.PRNGKey(1), x, mask)
    apply = jax.jit(m.apply)
    y1 = apply(p, x, mask)
    y2 = apply(p, x.at[:, 4:].set(9.0), mask)
    np.testing.assert_allclose(y1[:, :4], y2[:, :4], atol=1e-5)
    assert not np.allclose(y1[:, 4:], y2[:, 4:])


def test_pooling_and_fusion():
    x = jnp.arange(12.0).reshape(1, 4, 3)
    mask = jnp.array([[False, True, True, False]])
    np.testing.assert_allclose(E.pool(x, mask, "last"), x[:, 2])
    np.testing.assert_allclose(E.pool(x, mask, "mean"), (x[:, 1] + x[:, 2]) / 2)
    a, b, c = jnp.ones((2, 3)), 2 * jnp.ones((2, 3)), 3 * jnp.ones((2, 3))
    assert E.FeatureFusion("concat").apply({}, [a, b]).shape == (2, 6)
    np.testing.assert_allclose(E.FeatureFusion("sum").apply({}, [a, b]), 3 * a)
    np.testing.assert_allclose(E.FeatureFusion("dot").apply({}, [a, b, c]), [[6.0, 9.0, 18.0]] * 2)
    f = E.FeatureFusion("attention")
    p = f.init(jax.random.PRNGKey(0), [a, b])
    out = f.apply(p, [a, b])  # convex combination of a and b
    assert out.shape == (2, 3) and np.all((out >= 1 - 1e-6) & (out <= 2 + 1e-6))
    ap = E.AttentionPooling()
    pa = ap.init(jax.random.PRNGKey(0), x, mask)
    y = ap.apply(pa, x, mask)
    assert np.all((y >= x[:, 1] - 1e-5) & (y <= x[:, 2] + 1e-5))


def test_id_embedding_padding_row_is_zero():
    m = E.IdEmbedding(5, 4)
    p = m.init(jax.random.PRNGKey(0), jnp.array([1]))
    e = m.apply(p, jnp.array([0, 1, 4]))
    np.testing.assert_array_equal(e[0], 0.0)
    assert np.abs(e[1]).sum() > 0


def test_mlp_and_cnn_shapes():
    m = E.MLP(hidden=(5, 4), output=2, dropout=0.5)
    x = jnp.ones((3, 6))
    p = m.init(jax.random.PRNGKey(0), x)
    assert m.apply(p, x).shape == (3, 2)
    y = m.apply(p, x, True, rngs={"dropout": jax.random.PRNGKey(2)})
    assert y.shape == (3, 2)


def test_bad_input_errors():
    m = _model("mean")
    p = jax.jit(m.init)(jax.random.PRNGKey(0), IDS_R)
    with pytest.raises(ConfigError, match=r"SequenceEncoder.ids: id 10 is out of the vocabulary \[0, 10\)"):
        m.apply(p, IDS_R.at[0, 0].set(10))
    with pytest.raises(ConfigError, match="out of the vocabulary"):
        m.apply(p, IDS_R.at[0, 0].set(-1))
    with pytest.raises(ConfigError, match="SequenceEncoder.ids: 1 empty histories"):
        m.apply(p, IDS_R.at[1].set(0))
    with pytest.raises(ConfigError, match=r"SequenceEncoder.ids must be \[batch, length\]"):
        m.apply(p, IDS_R[0])
    with pytest.raises(ConfigError, match="SequenceEncoder.kind"):
        _model("lstm").init(jax.random.PRNGKey(0), IDS_R)
    with pytest.raises(ConfigError, match=r"FeatureFusion\(method='sum'\).features must share the embedding dimension, got dimensions \[3, 4\]"):
        E.FeatureFusion("sum").apply({}, [jnp.ones((2, 3)), jnp.ones((2, 4))])
    with pytest.raises(ConfigError, match="divisible by num_heads"):
        E.TransformerEncoder(num_heads=3).init(jax.random.PRNGKey(0), jnp.ones((1, 2, 4)), jnp.ones((1, 2), bool))
    with pytest.raises(ConfigError, match="max_len"):
        E.TransformerEncoder(max_len=2).init(jax.random.PRNGKey(0), jnp.ones((1, 3, 4)), jnp.ones((1, 3), bool))
    with pytest.raises(ConfigError, match="MLP.act"):
        E.MLP(act="nope").init(jax.random.PRNGKey(0), jnp.ones((1, 2)))


def test_tiny_overfit_next_item():
    """A 1-layer Transformer memorises 4 histories -> next item (loss near 0)."""
    ids = jnp.array([[1, 2, 3], [3, 2, 0], [4, 0, 0], [2, 4, 1]], jnp.int32)
    target = jnp.array([4, 1, 2, 3])
    model = E.NextItemModel(E.SequenceEncoder(num_items=4, features=16, kind="transformer", num_layers=1,
                                              num_heads=2, max_len=3))
    params = jax.jit(model.init)(jax.random.PRNGKey(0), ids)
    opt = optax.adam(0.03)
    state = opt.init(params)

    def loss(p):
        return optax.softmax_cross_entropy_with_integer_labels(model.apply(p, ids), target).mean()

    def step(carry, _):
        p, s = carry
        l, g = jax.value_and_grad(loss)(p)
        u, s = opt.update(g, s)
        return (optax.apply_updates(p, u), s), l

    (params, _), losses = jax.jit(lambda c: jax.lax.scan(step, c, None, length=150))((params, state))
    assert float(losses[-1]) < 0.05 < float(losses[0])
    logits = jax.jit(model.apply)(params, ids)
    assert np.all(np.asarray(logits[:, 0]) < -1e8)  # padding never predicted
    np.testing.assert_array_equal(np.argmax(logits, -1), target)
