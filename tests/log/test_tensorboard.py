"""Event files written without TensorFlow are read back by TensorBoard's own reader."""

import numpy as np
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

from mtrlrec.log import plots
from mtrlrec.log.tensorboard import TensorBoardWriter
from mtrlrec.log.writers import RunWriter


def _load(logdir):
    acc = event_accumulator.EventAccumulator(
        str(logdir), size_guidance={event_accumulator.TENSORS: 0, event_accumulator.IMAGES: 0,
                                    event_accumulator.SCALARS: 0})
    acc.Reload()
    return acc


def test_scalars_text_image_hparams_round_trip(tmp_path):
    w = TensorBoardWriter(tmp_path)
    for step in range(5):
        w.scalars(step * 10, {"regret": step * 1.5, "regret/std": 0.1, "nan": float("nan")})
    w.text("config", "| a | b |\n|---|---|\n| 1 | 2 |")
    png = plots.curve_png(np.arange(5), np.random.default_rng(0).normal(size=(3, 5)),
                          title="t", ylabel="y")
    w.image("plot", png)
    w.hparams({"epsilon": 0.1, "agent": "EpsilonGreedy"}, {"final/regret": 6.0})
    w.close()
    acc = _load(tmp_path)
    tags = acc.Tags()
    assert "regret" in tags["scalars"] and "nan" not in tags["scalars"]
    events = acc.Scalars("regret")
    assert [e.step for e in events] == [0, 10, 20, 30, 40]
    np.testing.assert_allclose([e.value for e in events], [0, 1.5, 3.0, 4.5, 6.0])
    text = acc.Tensors("config")[0].tensor_proto.string_val[0].decode()
    assert "| 1 | 2 |" in text
    img = acc.Images("plot")[0]
    assert img.encoded_image_string == png and img.width > 100
    content = acc.SummaryMetadata(hparams_metadata.SESSION_START_INFO_TAG).plugin_data.content
    info = hparams_metadata.parse_session_start_info_plugin_data(content)
    assert info.hparams["agent"].string_value == "EpsilonGreedy"
    assert abs(info.hparams["epsilon"].number_value - 0.1) < 1e-9


def test_run_writer_writes_jsonl_and_csv(tmp_path):
    w = RunWriter(tmp_path)
    w.scalars(1, {"a": 1.0})
    w.scalars(2, {"a": 2.0, "b": 3.0})
    w.close()
    csv = (tmp_path / "metrics.csv").read_text().splitlines()
    assert csv[0] == "step,a,b" and csv[2] == "2,2.0,3.0"
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 2
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))
