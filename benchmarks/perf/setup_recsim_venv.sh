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
ROOT="${MTRLREC_CACHE:-$HOME/.cache/mtrlrec}"
VENV="${1:-$ROOT/recsim-venv}"
PY="${PYTHON:-python3}"
"$PY" -c 'import sys; assert (3, 9) <= sys.version_info[:2] <= (3, 11), "TensorFlow 2.15 needs Python 3.9-3.11"'
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade "pip<25" wheel
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
