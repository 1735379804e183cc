"""Sharding the seed axis over (virtual CPU) devices gives the same numbers, bit for bit."""

import json
import os
import subprocess
import sys

import numpy as np

SCRIPT = r"""
import json, sys
import jax
from mtrlrec.agents.bandits import EpsilonGreedy, KLUCB, ThompsonSampling, UCB1
from mtrlrec.envs.bandits import BernoulliBandit
from mtrlrec.train import loop
env = BernoulliBandit(num_arms=5)
runs = {
    "eps_sweep": (EpsilonGreedy(0.1), {"epsilon": [0.05, 0.2]}),
    "ts": (ThompsonSampling(), None),
    "klucb": (KLUCB(), None),
    "ucb1": (UCB1(), None),
}
out = {"devices": jax.device_count()}
for name, (agent, hp) in runs.items():
    r = loop.run(env, agent, num_steps=100, log_every=25, num_seeds=6, num_chunks=2, hparams=hp)
    out[name] = {k: v.tolist() for k, v in r.metrics.items()}
    out[name + "_sharding"] = str(r.carry.key.sharding)
out["one_seed_sharding"] = str(loop.run(env, UCB1(), num_steps=20, log_every=20).carry.key.sharding)

# Checkpoints hold the real seeds only: save after chunk 1 of 2 here, resume in another process.
import flax.serialization, numpy as np
mode, path = sys.argv[1], sys.argv[2]
kw = dict(num_steps=100, log_every=25, num_seeds=6, num_chunks=2)
if mode == "save":
    def save(c, n, o):
        if c == 0:
            state = {"carry": flax.serialization.to_state_dict(jax.device_get(o.carry)),
                     "metrics": o.metrics}
            open(path, "wb").write(flax.serialization.msgpack_serialize(state))
    loop.run(env, UCB1(), on_chunk=save, **kw)
else:
    state = flax.serialization.msgpack_restore(open(path, "rb").read())
    r = loop.run(env, UCB1(), resume=loop.LoopResume(state["carry"], state["metrics"], 2), **kw)
    out["resumed"] = {k: v.tolist() for k, v in r.metrics.items()}
print(json.dumps(out))
"""


def _run(devices: int, *args: str) -> dict:
    env = dict(os.environ)
    env.pop("JAX_NUM_CPU_DEVICES", None)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run([sys.executable, "-c", SCRIPT, *args], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_sharded_equals_unsharded(tmp_path):
    ckpt = str(tmp_path / "chunk1.msgpack")
    four = _run(4, "save", ckpt)
    one = _run(1, "load", ckpt)
    assert one["devices"] == 1 and four["devices"] == 4
    for name in ("eps_sweep", "ts", "klucb", "ucb1"):
        # 6 seeds are padded to 8 on 4 devices; the 6 real seeds are unchanged.
        assert "NamedSharding" in four[name + "_sharding"]
        _assert_same(one[name], four[name])
    # One seed is not padded to a seed per device.
    assert "SingleDeviceSharding" in four["one_seed_sharding"]
    # A checkpoint of a 4-device run (6 real seeds of 8) resumes on one device.
    _assert_same(one["resumed"], one["ucb1"])


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(np.asarray(a[k]), np.asarray(b[k]), err_msg=k)
