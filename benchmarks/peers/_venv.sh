# Sourced by every peer install script (RecSim, obp, RecBole): the steps they share.
# new_peer_venv NAME MIN_MINOR MAX_MINOR WHY [VENV_DIR]
#   sets VENV (default ${MTRLREC_CACHE:-~/.cache/mtrlrec}/NAME), checks that $PYTHON
#   (default python3) is 3.MIN_MINOR..3.MAX_MINOR (WHY says which pin needs it), creates
#   the virtualenv and upgrades pip (< 25: the peers' old sdists still build with it).
new_peer_venv() {
  local name="$1" lo="$2" hi="$3" why="$4"
  VENV="${5:-${MTRLREC_CACHE:-$HOME/.cache/mtrlrec}/$name}"
  local py="${PYTHON:-python3}"
  "$py" -c "import sys; assert (3, $lo) <= sys.version_info[:2] <= (3, $hi), '$why needs Python 3.$lo-3.$hi'"
  "$py" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade "pip<25" wheel
}
