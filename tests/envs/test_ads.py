"""Ad placement: click/conversion model, exact regret, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.core.errors import ConfigError
from mtrlrec.envs.ads import AdPlacement, ad_probabilities


def test_probabilities_and_regret_by_hand():
    env = AdPlacement(num_ads=3, dim=2, weights=(1.0, 5.0))
    p = env.default_params()
    x = jnp.array([0.3, -1.0])
    pc, pv = ad_probabilities(x, p)
    e, f = np.asarray(p.click_emb), np.asarray(p.conv_emb)
    sig = lambda z: 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(pc, sig(e @ np.asarray(x) + np.asarray(p.click_bias)), rtol=1e-5)
    np.testing.assert_allclose(pv, sig(f @ np.asarray(x) + np.asarray(p.conv_bias)), rtol=1e-5)
    u = np.asarray(pc) + 5 * np.asarray(pc) * np.asarray(pv)
    state = env.reset(jax.random.PRNGKey(0), p)[1].replace(context=x)
    for a in range(3):
        info = env.step(jax.random.PRNGKey(1), state, a, p)[5]
        assert float(info["regret"]) == pytest.approx(u.max() - u[a], abs=1e-6)
        assert float(info["optimal_action"]) == float(a == u.argmax())


def test_click_then_conversion_frequencies():
    env = AdPlacement()
    p = env.default_params()
    state = env.reset(jax.random.PRNGKey(0), p)[1]
    n = 8000
    keys = jax.random.split(jax.random.PRNGKey(3), n)
    out = jax.jit(jax.vmap(lambda k: env.step_env(k, state, 6, p)))(keys)
    r = np.asarray(out[2])
    assert r.shape == (n, 2)
    assert np.all(r[:, 1] <= r[:, 0])  # no conversion without a click
    pc, pv = (float(v[6]) for v in ad_probabilities(state.context, p))
    assert abs(r[:, 0].mean() - pc) < 4 * np.sqrt(pc * (1 - pc) / n)
    clicks = r[:, 0].sum()
    cvr = r[:, 1].sum() / clicks
    assert abs(cvr - pv) < 4 * np.sqrt(pv * (1 - pv) / clicks)


def test_default_ads_trade_clicks_for_conversions():
    """Click-bait design: the click-optimal ads convert less than the conversion-optimal ones."""
    env = AdPlacement()
    p = env.default_params()
    x = jax.random.normal(jax.random.PRNGKey(1), (4000, env.dim))
    pc, pv = jax.vmap(lambda c: ad_probabilities(c, p))(x)
    mean_cvr = np.asarray((pc * pv).mean(0) / pc.mean(0))
    mean_ctr = np.asarray(pc.mean(0))
    assert mean_ctr[-1] > mean_ctr[0] and mean_cvr[-1] < mean_cvr[0]


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_ads=1), "AdPlacement.num_ads must be >= 2"),
    (dict(dim=0), "AdPlacement.dim must be >= 1"),
    (dict(weights=[1.0]), "AdPlacement.weights must have 2 entries"),
    (dict(weights=[1.0, -1.0]), r"AdPlacement.weights\[1\] must be >= 0"),
    (dict(weights=[0.0, 0.0]), "must not all be 0"),
    (dict(click_bias_range=[1.0, 2.0, 3.0]), "click_bias_range must have 2 entries"),
])
def test_bad_input(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        AdPlacement(**kwargs)


def test_context_dimension_mismatch():
    env = AdPlacement(num_ads=4, dim=3)
    bad = env.default_params().replace(click_emb=jnp.zeros((4, 5)))
    with pytest.raises(ConfigError, match="context dimension mismatch"):
        env.check_params(bad)
