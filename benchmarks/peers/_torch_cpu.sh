# Sourced by the peer install scripts: picks a CPU-only torch for "$VENV".
# A CPU build (a local wheel named torch-*+cpu-*.whl in pip's find-links folders,
# or TORCH_SPEC) avoids the gigabytes of CUDA libraries that PyPI's default Linux
# wheel pulls in; torch is only the peers' dependency, never mtrlrec's.
torch_cpu_spec() {
  if [ -n "${TORCH_SPEC:-}" ]; then echo "$TORCH_SPEC"; return; fi
  local dirs
  dirs="${PIP_FIND_LINKS:-} $("$VENV/bin/pip" config get global.find-links 2>/dev/null || true)"
  for d in $dirs; do
    d="${d#file://}"
    [ -d "$d" ] || continue
    local w
    w=$(ls "$d"/torch-*+cpu-cp3*-*.whl 2>/dev/null | sort -V | tail -1 || true)
    if [ -n "$w" ]; then echo "$w"; return; fi
  done
  echo "torch"
}
