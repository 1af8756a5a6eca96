#!/usr/bin/env bash
# Build the side venv that bench/step.py imports torchtitan 0.3.0 from (idempotent).
#
# torchtitan is a benchmark anchor, never a dependency of this project, and it must not touch
# the project's venv: pip would happily replace the pinned torch 2.13.0 there. So it goes into
# its own venv (default /tmp/tt-venv): torch==2.13.0 first (the same CPU wheel as .venv), then
# triton (torchtitan imports it at module level; it has no torch requirement), then torchtitan
# and the two packages it pins with --no-deps, then its light pure-Python imports. bench/step.py
# appends this venv's site-packages *after* the project's, so torch always resolves to .venv's.
# Any failure leaves no ready marker, and bench/step.py reports the column as skipped.
set -euo pipefail

VENV="${BENCH_TORCHTITAN_VENV:-/tmp/tt-venv}"
PYTHON="${PYTHON:-python3}"
MARK="$VENV/.bench-ready"

check() {
  "$VENV/bin/python" - <<'EOF'
import torch, torchtitan.models.llama3  # noqa: F401
assert torch.__version__.startswith("2.13.0"), torch.__version__
EOF
}

if [ -f "$MARK" ] && check 2>/dev/null; then
  echo "torchtitan venv ready: $VENV"
  exit 0
fi

echo "building torchtitan venv in $VENV (one time, about 2 minutes)"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" "triton==3.9.0"
"${PIP[@]}" --no-deps "torchtitan==0.3.0" "spmd_types==0.2.3" "torch_checkpointing==0.1.1"
"${PIP[@]}" tyro einops numpy
check
touch "$MARK"
echo "torchtitan venv ready: $VENV"
