"""Sharding the seed axis over 8 (virtual CPU) devices gives the same numbers."""

import json
import os
import subprocess
import sys

SCRIPT = r"""
import json, sys
import jax
from mtrlrec.agents.bandits import EpsilonGreedy
from mtrlrec.envs.bandits import BernoulliBandit
from mtrlrec.train import loop
out = loop.run(BernoulliBandit(num_arms=5), EpsilonGreedy(0.1), num_steps=100, log_every=20,
               num_seeds=6, num_chunks=1)
sharding = str(out.carry.key.sharding)
print(json.dumps({"devices": jax.device_count(), "sharding": sharding,
                  "regret": out.metrics["cumulative_regret"].tolist()}))
"""


def _run(devices: int) -> dict:
    env = dict(os.environ)
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_sharded_equals_unsharded():
    one = _run(1)
    eight = _run(8)
    assert one["devices"] == 1 and eight["devices"] == 8
    assert "NamedSharding" in eight["sharding"]
    # 6 seeds are padded to 8 on 8 devices; the 6 real seeds are unchanged.
    assert one["regret"] == eight["regret"]
