#!/usr/bin/env bash
# Creates a separate virtualenv with RecSim 0.2.4, the peer that
# benchmarks/perf/slate_sim.py and the fidelity table are measured against.
#
# RecSim 0.2.4 pins nothing useful: it needs TensorFlow 2.x (2.15 is the last
# one that still supports its numpy), gym (old 4-tuple API, 0.25.2), and
# dopamine-rl, whose own dependencies (jax, tf-agents, ...) would fight with
# the core install, so dopamine is installed with --no-deps (recsim.agents imports
# dopamine, whose atari_lib imports cv2: hence opencv-python-headless). numpy < 1.24
# because RecSim and gym 0.25 still use ``np.bool``/``np.int`` aliases.
# This environment is never the core mtrlrec install.
#
# Usage: bash benchmarks/perf/setup_recsim_venv.sh [VENV_DIR]
#   default VENV_DIR: ${MTRLREC_CACHE:-~/.cache/mtrlrec}/recsim-venv
# Then: python benchmarks/perf/slate_sim.py --recsim-python VENV_DIR/bin/python
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/../peers/_venv.sh"
new_peer_venv recsim-venv 9 11 "TensorFlow 2.15" "${1:-}"
"$VENV/bin/pip" install --quiet "numpy<1.24" "tensorflow-cpu==2.15.*" "gym==0.25.2" \
    "gin-config" "absl-py" "scipy<1.12" "opencv-python-headless<4.9"
"$VENV/bin/pip" install --quiet --no-deps "dopamine-rl==3.2.1" "recsim==0.2.4"
"$VENV/bin/python" - <<'PY'
import numpy, recsim
from recsim.environments import interest_evolution
env = interest_evolution.create_environment(
    {"num_candidates": 10, "slate_size": 2, "resample_documents": True, "seed": 0})
env.reset()
print("RecSim", getattr(recsim, "__version__", "0.2.4"), "numpy", numpy.__version__, "OK")
PY
echo "RecSim venv ready: $VENV/bin/python"
