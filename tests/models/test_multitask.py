"""Multi-task networks, losses, the synthetic generator and heads."""

import gin
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.core.errors import ConfigError
from mtrlrec.models import heads, multitask, synthetic

X = jax.random.normal(jax.random.PRNGKey(0), (5, 100))


@pytest.fixture(scope="module")
def models():
    out = {}
    for kind in ["shared_bottom", "omoe", "mmoe", "ple"]:
        m = multitask.make_multitask_model(kind=kind)
        out[kind] = (m, jax.jit(m.init)(jax.random.PRNGKey(0), X), jax.jit(m.apply))
    return out


def test_shapes_param_counts_and_determinism(models):
    counts = {}
    for kind, (m, p, apply) in models.items():
        y = apply(p, X)
        assert y.shape == (5, 2, 1) and y.dtype == jnp.float32
        counts[kind] = multitask.count_params(p)
        np.testing.assert_array_equal(y, apply(jax.jit(m.init)(jax.random.PRNGKey(0), X), X))
    # Ma et al. §5.2: 8 experts × 16 units (+ gates), towers of 8, bottom of 113 -> comparable sizes.
    assert counts == {"shared_bottom": 13255, "omoe": 14026, "mmoe": 14834, "ple": 21298}


def test_mmoe_gates_differ_per_task_omoe_shares(models):
    _, p, _ = models["mmoe"]
    assert "gate0" in p["params"] and "gate1" in p["params"]
    _, p, _ = models["omoe"]
    assert "gate0" in p["params"] and "gate1" not in p["params"]
    g = multitask.Gate(8)
    pg = g.init(jax.random.PRNGKey(0), X)
    np.testing.assert_allclose(g.apply(pg, X).sum(-1), 1.0, rtol=1e-6)


def test_losses_and_weights():
    preds = jnp.array([[0.0, 2.0], [1.0, -2.0]])
    targets = jnp.array([[1.0, 1.0], [1.0, 0.0]])
    l = multitask.task_losses(preds, targets, ("mse", "bce"))
    np.testing.assert_allclose(l[0], 0.5)
    np.testing.assert_allclose(l[1], np.mean([np.log1p(np.exp(-2.0)), np.log1p(np.exp(-2.0))]), rtol=1e-6)
    w = jnp.array([1.0, 2.0])
    np.testing.assert_allclose(multitask.multitask_loss(l, w), l[0] + 2 * l[1], rtol=1e-6)
    s = jnp.array([0.5, -0.5])
    np.testing.assert_allclose(
        multitask.multitask_loss(l, w, "uncertainty", s), np.sum(w * (np.exp(-s) * l + s)), rtol=1e-6
    )
    # GradNorm: the task whose weighted gradient is too large loses weight; weights sum to T.
    nw = multitask.gradnorm_weights_update(jnp.ones(2), jnp.array([2.0, 1.0]), jnp.ones(2), jnp.ones(2))
    assert nw[0] < 1.0 < nw[1] and np.isclose(float(nw.sum()), 2.0)
    with pytest.raises(ConfigError, match="MultiTaskLoss.weights must have 2 entries, got 3"):
        multitask.MultiTaskLoss(kinds=["mse", "bce"], weights=[1.0, 1.0, 1.0])
    with pytest.raises(ConfigError, match=r"MultiTaskLoss.weights\[1\] must be >= 0.0"):
        multitask.MultiTaskLoss(kinds=["mse", "bce"], weights=[1.0, -1.0])
    mtl = multitask.MultiTaskLoss(kinds=["mse", "bce"], weights=[1.0, 2.0])
    total, per = mtl(preds, targets)
    np.testing.assert_allclose(total, l[0] + 2 * l[1], rtol=1e-6)
    with pytest.raises(ConfigError, match="'mse' or 'bce'"):
        multitask.task_losses(preds, targets, ("mse", "hinge"))
    with pytest.raises(ConfigError, match="balancing"):
        multitask.multitask_loss(l, w, "dwa")


def test_bad_model_config():
    with pytest.raises(ConfigError, match="MultiTaskModel.kind must be"):
        multitask.make_multitask_model(kind="cgc")
    with pytest.raises(ConfigError, match="MultiTaskModel.num_experts must be >= 1, got 0"):
        multitask.make_multitask_model(num_experts=0)
    gin.parse_config("MultiTaskModel.kind = 'omoe'")
    assert isinstance(multitask.make_multitask_model(), multitask.MixtureOfExperts)


def test_synthetic_generator_correlation():
    """Label correlation rises with p (Ma et al. §3.2, Fig. 2); ‖w_t‖ = c; w_1ᵀw_2 = c² p."""
    tp = synthetic.default_task_params()
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    gen = jax.jit(
        lambda k, p: synthetic.make_dataset(k, p, dim=100, num_train=4000, num_valid=8, num_test=8, tp=tp)
    )
    w = synthetic.sample_weights(keys[0], 0.3, 100, 2.0)
    np.testing.assert_allclose(jnp.linalg.norm(w, axis=1), 2.0, rtol=1e-5)
    np.testing.assert_allclose(w[0] @ w[1], 4.0 * 0.3, rtol=1e-4)
    corr = []
    for p in (0.0, 0.5, 1.0):
        y = gen(keys[1], jnp.float32(p))["y_train"]
        corr.append(np.corrcoef(np.asarray(y).T)[0, 1])
    assert corr[0] < corr[1] < corr[2]
    assert corr[2] > 0.99  # identical tasks up to noise of variance 0.01
    # With 4000 samples the SE of a correlation is about 1/sqrt(4000) = 0.016.
    assert abs(corr[0]) < 5 * 0.016
    with pytest.raises(ConfigError, match=r"MMoESyntheticRunner.correlation must be <= 1.0"):
        synthetic.check_correlation("MMoESyntheticRunner.correlation", 1.5)
    with pytest.raises(ConfigError, match=r"X.alphas must have 10 entries"):
        synthetic.default_task_params(alphas=[1.0], where="X")


def test_mmoe_tiny_overfit():
    """MMoE fits 2 tasks on 16 samples (training loss near zero)."""
    import optax

    m = multitask.MixtureOfExperts(num_tasks=2, num_experts=4, expert=(16,), tower=(8,))
    x = jax.random.normal(jax.random.PRNGKey(1), (16, 4))
    y = jnp.stack([x[:, 0], -x[:, 1]], -1)
    p = jax.jit(m.init)(jax.random.PRNGKey(0), x)
    opt = optax.adam(0.02)

    def loss(p):
        return multitask.task_losses(m.apply(p, x), y, ("mse", "mse")).sum()

    def step(c, _):
        p, s = c
        l, g = jax.value_and_grad(loss)(p)
        u, s = opt.update(g, s)
        return (optax.apply_updates(p, u), s), l

    _, losses = jax.jit(lambda c: jax.lax.scan(step, c, None, length=300))((p, opt.init(p)))
    assert float(losses[-1]) < 0.02 * float(losses[0])


def test_heads():
    s = jnp.ones((3, 4))
    q = heads.QHeads(num_tasks=2, num_actions=5)
    pq = q.init(jax.random.PRNGKey(0), s)
    assert q.apply(pq, s).shape == (3, 2, 5)
    items = jax.random.normal(jax.random.PRNGKey(1), (6, 4))
    pol = heads.ItemSoftmaxPolicy()
    pp = pol.init(jax.random.PRNGKey(0), items)
    lp = pol.apply(pp, items)
    assert lp.shape == (6,)
    np.testing.assert_allclose(jnp.exp(lp).sum(), 1.0, rtol=1e-5)
    # p_i = softmax(h_i W + b) exactly.
    w = pp["params"]["w"]
    np.testing.assert_allclose(lp, jax.nn.log_softmax(items @ w["kernel"][:, 0] + w["bias"][0]), rtol=1e-5)
    mask = jnp.array([True, False, True, True, True, True])
    pc = pol.init(jax.random.PRNGKey(0), items, s)
    lpc = pol.apply(pc, items, s, mask)
    assert lpc.shape == (3, 6) and np.all(np.exp(lpc[:, 1]) < 1e-12)
    sq = heads.SlateItemQ()
    ps = sq.init(jax.random.PRNGKey(0), s, items)
    assert sq.apply(ps, s, items).shape == (3, 6)
    with pytest.raises(ConfigError, match="SlateItemQ: batch sizes differ"):
        sq.apply(ps, s, jnp.ones((2, 6, 4)))
