#!/usr/bin/env bash
# Creates a separate virtualenv with Open Bandit Pipeline (obp) 0.4.1, the peer
# that benchmarks/peers/obp_side_by_side.py runs beside mtrlrec's OBD OPE.
#
# obp 0.4.1 (2021) declares only lower bounds, but its code predates pandas 2
# (get_dummies returning bools, positional Series indexing), numpy 1.24 (the
# np.float/np.int aliases) and scikit-learn 1.2; the working set below was
# found by installing and running the peer script on Python 3.11:
# numpy 1.23.5, pandas 1.5.3, scikit-learn 1.1.3, scipy 1.10.1. obp imports torch
# (its neural policy learners) at import time, so a CPU torch is installed.
# This environment is never the core mtrlrec install.
#
# Usage: bash benchmarks/peers/setup_obp_venv.sh [VENV_DIR]
#   default VENV_DIR: ${MTRLREC_CACHE:-~/.cache/mtrlrec}/obp-venv
# Then: python benchmarks/peers/obp_side_by_side.py --obp-python VENV_DIR/bin/python
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/_venv.sh"
new_peer_venv obp-venv 8 11 "numpy 1.23 / pandas 1.5" "${1:-}"
. "$HERE/_torch_cpu.sh"
"$VENV/bin/pip" install --quiet "$(torch_cpu_spec)"
"$VENV/bin/pip" install --quiet "numpy==1.23.5" "pandas==1.5.3" "scikit-learn==1.1.3" \
    "scipy==1.10.1" "matplotlib<3.8" "seaborn<0.13" "pyyaml" "tqdm" "mypy-extensions"
"$VENV/bin/pip" install --quiet --no-deps "obp==0.4.1"
"$VENV/bin/python" - <<'PY'
import numpy, pandas, sklearn, obp
from obp.dataset import OpenBanditDataset
from obp.ope import OffPolicyEvaluation, InverseProbabilityWeighting
ds = OpenBanditDataset(behavior_policy="random", campaign="all")  # obp's bundled 10k sample
fb = ds.obtain_batch_bandit_feedback()
print("obp", obp.__version__, "numpy", numpy.__version__, "pandas", pandas.__version__,
      "sklearn", sklearn.__version__, "rows", fb["n_rounds"], "OK")
PY
echo "obp venv ready: $VENV/bin/python"
