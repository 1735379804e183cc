"""MMoE synthetic runner: end to end through Gin and a run directory; bad bindings."""

import json

import numpy as np
import pytest

from mtrlrec.core.errors import ConfigError
from mtrlrec.experiment import run_experiment
from mtrlrec.models.runners import MMoESyntheticRunner


def test_uncertainty_balancing_trains(tmp_path):
    from mtrlrec.train.result import RunContext

    r = MMoESyntheticRunner(model="mmoe", dim=8, num_valid=64, num_test=64, batch_size=16, steps_per_epoch=10,
                            num_epochs=2, learning_rates=[0.01], balancing="uncertainty")(RunContext(num_seeds=2))
    assert r.final["test_loss"].shape == (2,) and np.all(np.isfinite(r.final["test_loss"]))
    assert r.curves["valid/loss"][:, -1].mean() < r.curves["valid/loss"][:, 0].mean() * 1.5


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
        (dict(balancing="gradnorm"), "MMoESyntheticRunner.balancing must be"),
    ],
)
def test_bad_bindings(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        MMoESyntheticRunner(**kw)


def test_mmoe_programs_follow_gin_bindings():
    """A later run in the same process with other model bindings must not reuse the old model."""
    import gin

    from mtrlrec import config
    from mtrlrec.models import runners

    config.import_all()
    gin.clear_config()
    a = runners._mmoe_programs("mmoe", 100, 128)[0]
    gin.parse_config("MultiTaskModel.num_experts = 3")
    b = runners._mmoe_programs("mmoe", 100, 128)[0]
    assert a is not b and b.num_experts == 3
    assert runners._mmoe_programs("mmoe", 100, 128)[0] is b
