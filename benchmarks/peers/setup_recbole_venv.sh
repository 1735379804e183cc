#!/usr/bin/env bash
# Creates a separate virtualenv with RecBole 1.2.1 and a CPU torch, the peer that
# benchmarks/peers/recbole_side_by_side.py runs beside mtrlrec's MovieLens table.
#
# RecBole 1.2.1 requires ray (hyper-parameter search only; recbole.quick_start
# imports it) and thop (FLOPs counting); the peer script drives RecBole through
# recbole.config / recbole.data / recbole.utils / the trainers, which need
# neither, and ray 2.6 has no wheel for every Python, so RecBole is installed
# with --no-deps and its runtime dependencies listed here. numpy < 1.24 and pandas < 2: RecBole 1.2.1
# still uses removed numpy aliases in places and pandas 1.x semantics. torch >= 2.6
# loads checkpoints with weights_only=True, which rejects RecBole's saved Config:
# the peer script sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (its own checkpoints only).
# This environment is never the core mtrlrec install.
#
# Usage: bash benchmarks/peers/setup_recbole_venv.sh [VENV_DIR]
#   default VENV_DIR: ${MTRLREC_CACHE:-~/.cache/mtrlrec}/recbole-venv
# Then: python benchmarks/peers/recbole_side_by_side.py --recbole-python VENV_DIR/bin/python
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/_venv.sh"
new_peer_venv recbole-venv 8 11 "numpy 1.23 / pandas 1.5" "${1:-}"
. "$HERE/_torch_cpu.sh"
"$VENV/bin/pip" install --quiet "$(torch_cpu_spec)"
"$VENV/bin/pip" install --quiet "numpy==1.23.5" "pandas==1.5.3" "scipy==1.10.1" \
    "scikit-learn==1.1.3" "tqdm" "colorlog==4.7.2" "colorama==0.4.4" "pyyaml" \
    "tensorboard" "tabulate" "plotly" "texttable" "psutil"
"$VENV/bin/pip" install --quiet --no-deps "recbole==1.2.1" "thop"
"$VENV/bin/python" - <<'PY'
import torch, recbole
from recbole.config import Config  # noqa: F401
from recbole.data import create_dataset, data_preparation  # noqa: F401
from recbole.utils import get_model, get_trainer, init_seed  # noqa: F401
print("RecBole", recbole.__version__, "torch", torch.__version__, "OK")
PY
echo "RecBole venv ready: $VENV/bin/python"
