"""MMoE synthetic runner: end to end through Gin and a run directory; bad bindings."""

import json

import numpy as np
import pytest

from mtrlrec.core.errors import ConfigError
from mtrlrec.experiment import run_experiment
from mtrlrec.runners.mmoe import MMoESyntheticRunner


def test_uncertainty_balancing_trains(tmp_path):
    from mtrlrec.train.result import RunContext

    r = MMoESyntheticRunner(model="mmoe", dim=8, num_valid=64, num_test=64, batch_size=16, steps_per_epoch=10,
                            num_epochs=2, learning_rates=[0.01], balancing="uncertainty")(RunContext(num_seeds=2))
    assert r.final["test_loss"].shape == (2,) and np.all(np.isfinite(r.final["test_loss"]))
    assert r.curves["valid/loss"][:, -1].mean() < r.curves["valid/loss"][:, 0].mean() * 1.5


def test_gradnorm_balancing_moves_the_weights(tmp_path):
    """balancing='gradnorm' through Gin: the weights of every run move, stay positive and sum to T = 2."""
    out, r = run_experiment("experiments/mmoe/smoke.gin", out=str(tmp_path / "gn"), progress=False,
                            bindings=["MMoESyntheticRunner.balancing = 'gradnorm'"])
    w1, w2 = r.final["gradnorm_weight_task1"], r.final["gradnorm_weight_task2"]
    assert w1.shape == (4,) and np.all(w1 > 0) and np.all(w2 > 0)
    np.testing.assert_allclose(w1 + w2, 2.0, rtol=1e-5)
    assert np.all(np.abs(w1 - 1.0) > 1e-4)
    assert np.all(np.isfinite(r.final["test_loss"]))


def test_gradnorm_down_weights_the_task_with_larger_gradients():
    """Two copies of one regression task, the second with targets ×10: its gradients are 10×
    larger, so GradNorm (Chen et al. 2018, Eq. 1–2) must move weight from task 2 to task 1."""
    import jax
    import jax.numpy as jnp

    from mtrlrec.models import multitask
    from mtrlrec.runners import mmoe
    from mtrlrec.train import supervised

    dim = 8
    model = multitask.SharedBottom(num_tasks=2, bottom=(16,), tower=(8,))
    _, init_fn, _, loss_fn, eval_fn, post_step = mmoe._mmoe_programs_for(
        model, dim, 32, (1.0, 1.0), "gradnorm", (1.5, 0.025))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2048, dim)).astype(np.float32)
    y1 = np.sin(x @ rng.normal(size=dim)).astype(np.float32)
    y = jnp.asarray(np.stack([y1, 10.0 * y1], 1))
    out = supervised.fit(init_fn, loss_fn, eval_fn, train_data=(jnp.asarray(x), y), valid_data=(jnp.asarray(x), y),
                         num_seeds=3, batch_size=32, num_epochs=2, learning_rate=1e-3, post_step=post_step)
    w = np.asarray(out.state.params["gradnorm"]["weights"])  # [3, 2]
    assert np.all(w[:, 1] < 0.5) and np.all(w[:, 0] > 1.5), w
    np.testing.assert_allclose(w.sum(1), 2.0, rtol=1e-5)
    # The recorded initial losses are those of the first step (task 2: ~100x task 1).
    init = np.asarray(out.state.params["gradnorm"]["initial"])
    assert np.all(init[:, 1] > 20 * init[:, 0])


def test_smoke_experiment_writes_run_dir(tmp_path):
    out, result = run_experiment("experiments/mmoe/smoke.gin", out=str(tmp_path / "run"), progress=False)
    assert result.final["test_loss"].shape == (4,)
    assert result.final["learning_rate"].shape == (1,)
    assert result.curves["valid/loss"].shape == (4, 2)
    np.testing.assert_array_equal(result.steps, [10, 20])
    assert "learning-rate selection" in (out / "summary.md").read_text()
    lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("valid/loss" in json.dumps(l) for l in lines)


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(model="cgc"), "MMoESyntheticRunner.model must be"),
        (dict(correlation=1.5), r"MMoESyntheticRunner.correlation must be <= 1.0, got 1.5"),
        (dict(learning_rates=[]), "MMoESyntheticRunner.learning_rates is empty"),
        (dict(learning_rates=[0.01, -1.0]), r"MMoESyntheticRunner.learning_rates\[1\] must be > 0.0"),
        (dict(num_train=10, batch_size=32), "num_train=10 is smaller than MMoESyntheticRunner.batch_size=32"),
        (dict(num_sines=2, alphas=[1.0]), "MMoESyntheticRunner.alphas must have 2 entries, got 1"),
        (dict(noise_var=-0.1), "MMoESyntheticRunner.noise_var must be >= 0.0"),
        (dict(task_weights=[1.0, 1.0, 1.0]), "MMoESyntheticRunner.task_weights must have 2 entries, got 3"),
        (dict(balancing="dwa"), "MMoESyntheticRunner.balancing must be 'fixed', 'uncertainty' or 'gradnorm'"),
        (dict(balancing="gradnorm", task_weights=[0.0, 1.0]), "MMoESyntheticRunner.task_weights must be > 0 with"),
        (dict(gradnorm_lr=0.0), "MMoESyntheticRunner.gradnorm_lr must be > 0.0"),
    ],
)
def test_bad_bindings(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        MMoESyntheticRunner(**kw)


def test_mmoe_programs_follow_gin_bindings():
    """A later run in the same process with other model bindings must not reuse the old model."""
    import gin

    from mtrlrec import config
    from mtrlrec.runners import mmoe

    config.import_all()
    gin.clear_config()
    a = mmoe._mmoe_programs("mmoe", 100, 128)[0]
    gin.parse_config("MultiTaskModel.num_experts = 3")
    b = mmoe._mmoe_programs("mmoe", 100, 128)[0]
    assert a is not b and b.num_experts == 3
    assert mmoe._mmoe_programs("mmoe", 100, 128)[0] is b
