"""Next-item runner on a tiny MovieLens-format log with a learnable pattern."""

import numpy as np
import pytest

from mtrlrec.core.errors import ConfigError
from mtrlrec.data import splits
from mtrlrec.runners import next_item
from mtrlrec.train.result import RunContext

NUM_USERS, NUM_ITEMS, LEN = 40, 12, 10


def _write_log(root):
    """User u watches items (u + t) mod 12 + 1 for t = 0..9: the next item is always 'previous + 1'."""
    rows = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(NUM_USERS):
        for t in range(LEN):
            rows.append(f"{u + 1}\t{(u + t) % NUM_ITEMS + 1}\t4\t{1000 + t}")
    (root / "ml-100k.inter").write_text("\n".join(rows) + "\n")
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    items += [f"{i}\tM{i}\t1990\tDrama" for i in range(1, NUM_ITEMS + 1)]
    (root / "ml-100k.item").write_text("\n".join(items) + "\n")
    users = ["user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token"]
    users += [f"{u}\t30\tF\twriter\t1" for u in range(1, NUM_USERS + 1)]
    (root / "ml-100k.user").write_text("\n".join(users) + "\n")
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(_write_log(tmp_path_factory.mktemp("ml")))


def _run(data_dir, model, run_dir=None, **kw):
    args = dict(model=model, data_path=data_dir, max_len=8, features=16, hidden=16, num_layers=1,
                num_heads=2, batch_size=32, num_epochs=30, patience=30, train_stride=4, learning_rate=0.01,
                dropout=0.0)
    args.update(kw)
    return next_item.NextItemRunner(**args)(RunContext(num_seeds=2, run_dir=run_dir))


def test_stride_windows_train_every_prefix_once():
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(5), 9)
    items = rng.integers(1, 30, users.size)
    split = splits.leave_last_out_sequences(users, items, np.tile(np.arange(9), 5), num_users=5,
                                            num_items=30, max_len=6)
    tr = split.train
    for k in (1, 3, 6):
        x, y, w = next_item.stride_windows(tr.history, tr.target, tr.user, k)
        assert w.sum() == len(tr)  # every prefix exactly once
        got = sorted(
            (tuple(x[i, : j + 1][x[i, : j + 1] != 0][-3:]), int(y[i, j])) for i, j in zip(*np.nonzero(w))
        )
        want = sorted((tuple(h[h != 0][-3:]), int(t)) for h, t in zip(tr.history, tr.target))
        if k == 1:
            assert got == want
        # Targets always match; contexts keep at least max_len - k + 1 items.
        assert sorted(g[1] for g in got) == sorted(t for _, t in want)
    x, y, w = next_item.stride_windows(tr.history, tr.target, tr.user, 1)
    np.testing.assert_array_equal(w[:, :-1], 0)  # stride 1 = RecBole: loss on the last position only


def test_sequence_models_learn_the_pattern_pop_does_not(data_dir, tmp_path):
    pop = _run(data_dir, "pop")
    sas = _run(data_dir, "sasrec", run_dir=tmp_path)
    # Pop ranks the 12 items by count (nearly uniform here) with the history masked.
    assert pop.final["test/hr@10"].shape == (2,)
    # SASRec learns 'next = previous + 1' nearly perfectly; test targets are unseen positions.
    assert np.all(sas.final["test/hr@10"] > 0.9)
    assert np.all(sas.final["test/mrr@10"] > 0.6)
    assert np.all(sas.final["test/mrr@10"] > pop.final["test/mrr@10"] + 0.3)
    assert sas.curves["valid/mrr@10"].shape[0] == 2
    # Hand the pretrained encoder to another model (e.g. an agent's network) through PretrainedParams.
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from mtrlrec.models.encoders import SequenceEncoder
    from mtrlrec.train.supervised import PretrainedParams

    class Agent(nn.Module):
        @nn.compact
        def __call__(self, ids):
            h = SequenceEncoder(num_items=NUM_ITEMS, features=16, kind="transformer", num_layers=1,
                                num_heads=2, max_len=8, name="encoder")(ids)
            return nn.Dense(3, name="q")(h)

    ids = jnp.array([[0, 0, 1, 2, 3, 4, 5, 6]], jnp.int32)
    agent = Agent()
    params = jax.jit(agent.init)(jax.random.PRNGKey(5), ids)
    loaded = PretrainedParams(path=str(tmp_path / "params.msgpack"), subtree="encoder", index=1).insert(params)
    assert jax.jit(agent.apply)(loaded, ids).shape == (1, 3)
    ref = next_item.supervised.load_params(tmp_path / "params.msgpack", index=1)
    jax.tree.map(np.testing.assert_array_equal, loaded["params"]["encoder"], ref)
    jax.tree.map(np.testing.assert_array_equal, loaded["params"]["q"], params["params"]["q"])
    # The pretrained encoder is not the fresh initialisation.
    assert not np.allclose(ref["items"]["table"]["embedding"],
                           params["params"]["encoder"]["items"]["table"]["embedding"])


def test_mf_runs(data_dir):
    mf = _run(data_dir, "mf", num_epochs=2)
    assert set(["test/hr@10", "test/ndcg@10", "test/mrr@10"]) <= set(mf.final)
    assert np.all((mf.final["test/hr@10"] >= 0) & (mf.final["test/hr@10"] <= 1))


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(model="bert4rec"), "NextItemRunner.model must be"),
        (dict(features=63), "divisible by NextItemRunner.num_heads"),
        (dict(train_stride=60), "train_stride=60 must be <= NextItemRunner.max_len"),
        (dict(dropout=1.0), "NextItemRunner.dropout must be < 1.0"),
        (dict(learning_rate=0.0), "NextItemRunner.learning_rate must be > 0"),
    ],
)
def test_bad_config(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        next_item.NextItemRunner(**kw)


def test_missing_data(tmp_path):
    with pytest.raises(ConfigError, match="MovieLens not found"):
        next_item.NextItemRunner(model="pop", data_path=str(tmp_path / "none"))(RunContext())
