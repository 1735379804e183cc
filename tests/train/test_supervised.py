"""The supervised loop: vmapped seeds and sweeps, early stopping, checkpoints, export."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtrlrec.core.errors import ConfigError
from mtrlrec.models.encoders import MLP
from mtrlrec.train import supervised

MODEL = MLP(hidden=(16,), output=1)
X = jax.random.normal(jax.random.PRNGKey(0), (32, 3))
Y = jnp.sin(X.sum(-1, keepdims=True))
TRAIN = (X, Y)
VALID = (X[:16], Y[:16])


def init_fn(key):
    return MODEL.init(key, jnp.zeros((1, 3)))


def loss_fn(params, batch, key):
    x, y = batch
    return supervised.mse_loss(MODEL.apply(params, x), y), {}


def eval_fn(params, data):
    x, y = data
    return {"loss": supervised.mse_loss(MODEL.apply(params, x), y)}


class Recorder:
    def __init__(self):
        self.rows = []

    def scalars(self, step, values):
        self.rows.append((step, dict(values)))


def _fit(**kw):
    args = dict(train_data=TRAIN, valid_data=VALID, num_seeds=2, batch_size=8, num_epochs=6,
                learning_rate=0.03)
    args.update(kw)
    return supervised.fit(init_fn, loss_fn, eval_fn, **args)


@pytest.fixture(scope="module")
def base():
    return _fit(num_epochs=40)


def test_overfits_shapes_and_determinism(base):
    assert base.curves["train/loss"].shape == (2, 40)
    assert base.curves["valid/loss"].shape == (2, 40)
    assert base.best.shape == (2,)
    # Tiny overfit: the training loss falls by far more than its noise.
    assert np.all(base.curves["train/loss"][:, -1] < 0.1 * base.curves["train/loss"][:, 0])
    assert np.all(base.best < 0.02)
    # The returned parameters are the best on validation.
    val = jax.vmap(eval_fn, in_axes=(0, None))(base.params, VALID)["loss"]
    np.testing.assert_allclose(val, base.best, rtol=1e-5)
    # Seeds differ; the same seed reproduces bit for bit.
    assert base.curves["train/loss"][0, 0] != base.curves["train/loss"][1, 0]
    again = _fit(num_epochs=40)
    np.testing.assert_array_equal(again.curves["train/loss"], base.curves["train/loss"])
    # Run i of a vmapped batch equals the run alone? (fold_in(seed, i)): seed 0 alone = row 0.
    one = _fit(num_epochs=40, num_seeds=1)
    np.testing.assert_allclose(one.curves["train/loss"][0], base.curves["train/loss"][0], rtol=1e-5)


def test_sweep_writer_and_early_stopping():
    rec = Recorder()
    out = _fit(hparams={"learning_rate": [1e-4, 0.03]}, writer=rec, log_prefix="pre/")
    assert out.curves["valid/loss"].shape == (2, 2, 6)
    assert out.best.shape == (2, 2)
    assert out.best[1].mean() < out.best[0].mean()  # 0.03 learns faster than 1e-4 in 6 epochs
    np.testing.assert_allclose(out.hparams["learning_rate"], [1e-4, 0.03])
    assert [r[0] for r in rec.rows] == list(range(1, 7))
    assert "pre/valid/loss" in rec.rows[0][1]
    # A learning rate so large the loss explodes: validation never improves after the
    # first epochs, so training stops once every run has waited `patience` epochs.
    stop = _fit(learning_rate=50.0, num_epochs=30, patience=2)
    assert stop.epochs[-1] < 30


def test_checkpoint_resume_continues_exactly(tmp_path):
    full = _fit(num_epochs=4)
    _fit(num_epochs=2, checkpoint_dir=tmp_path)
    resumed = _fit(num_epochs=4, checkpoint_dir=tmp_path, resume=True)
    np.testing.assert_array_equal(resumed.curves["train/loss"], full.curves["train/loss"])
    np.testing.assert_array_equal(resumed.best, full.best)


def test_streaming_and_per_seed_data():
    w = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # one weight vector per seed

    def sample(key, wi, batch):
        x = jax.random.normal(key, (batch, 3))
        return x, (x @ wi)[:, None]

    valid = (jnp.stack([X, X]), jnp.stack([X @ w[0], X @ w[1]])[..., None])
    out = supervised.fit(init_fn, loss_fn, eval_fn, train_data=w, valid_data=valid, sample_fn=sample,
                         steps_per_epoch=20, data_per_seed=True, num_seeds=2, batch_size=16,
                         num_epochs=3, learning_rate=0.03)
    assert out.curves["valid/loss"].shape == (2, 3)
    assert np.all(out.curves["valid/loss"][:, -1] < out.curves["valid/loss"][:, 0])


def test_export_load_and_freeze(tmp_path, base):
    one = jax.tree.map(lambda a: a[0], base.params)
    path = supervised.save_params(tmp_path / "p.msgpack", base.params, meta={"model": "MLP"})
    loaded = supervised.load_params(path, one, index=0)
    jax.tree.map(np.testing.assert_array_equal, loaded, one)
    handle = supervised.PretrainedParams(path=str(path), subtree="encoder", index=0)
    merged = handle.insert({"params": {"encoder": one, "head": {"w": jnp.zeros(2)}}})
    jax.tree.map(np.testing.assert_array_equal, merged["params"]["encoder"], one)
    # Freezing: zero updates under the frozen subtree only.
    params = {"encoder": {"w": jnp.ones(2)}, "head": {"w": jnp.ones(2)}}
    opt = supervised.frozen_optimizer(supervised.make_optimizer("sgd", 0.1), params, "encoder")
    upd, _ = opt.update(jax.tree.map(jnp.ones_like, params), opt.init(params), params)
    np.testing.assert_array_equal(upd["encoder"]["w"], 0.0)
    np.testing.assert_allclose(upd["head"]["w"], -0.1)
    with pytest.raises(ConfigError, match=r"PretrainedParams: .*shape"):
        supervised.load_params(path, jax.tree.map(lambda a: jnp.zeros(a.shape + (2,)), one), index=0)
    with pytest.raises(ConfigError, match="no such file"):
        supervised.load_params(tmp_path / "missing.msgpack")
    with pytest.raises(ConfigError, match="PretrainedParams.subtree='encoder' is not in"):
        handle.insert({"params": {"body": one}})


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(batch_size=64), "larger than the training set"),
        (dict(num_seeds=0), "fit.num_seeds must be >= 1"),
        (dict(mode="best"), "fit.mode"),
        (dict(hparams={"momentum": [0.9]}), "only 'learning_rate'"),
        (dict(learning_rate=-1.0), "fit.learning_rate must be > 0"),
        (dict(train_data=(X, Y[:5])), "share their first"),
        (dict(monitor="auc"), "fit.monitor='auc' is not among"),
        (dict(optimizer="lbfgs"), "optimizer must be"),
    ],
)
def test_bad_input(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        _fit(**kw)
