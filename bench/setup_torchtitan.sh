#!/usr/bin/env bash
# Install torchtitan 0.3.0 next to torch 2.13.0 without letting pip touch torch (idempotent).
#
#   bench/setup_torchtitan.sh               the benchmarks' side venv (default /tmp/tt-venv)
#   bench/setup_torchtitan.sh --into VENV   add torchtitan to an existing venv (make venv does
#                                           this for .venv, for tests/test_torchtitan.py)
#
# The same pins as pyproject.toml's `torchtitan` extra: torchtitan and the two packages it pins,
# with --no-deps, then triton (torchtitan imports it at module level; it has no torch
# requirement) and its light pure-Python imports. --no-deps keeps the venv's torch, and its
# datasets (torchtitan's metadata asks for datasets<4.8 and wandb, which it does not import on
# the paths used here). The side venv gets torch==2.13.0 first (the same CPU wheel as .venv);
# bench/step.py appends its site-packages *after* the project's, so torch always resolves to
# .venv's. Any failure leaves no ready marker, and bench/step.py reports the column as skipped.
set -euo pipefail

PYTHON="${PYTHON:-python3}"
INTO=""
if [ "${1:-}" = "--into" ]; then
  INTO="${2:?--into needs a venv folder}"
fi
VENV="${INTO:-${BENCH_TORCHTITAN_VENV:-/tmp/tt-venv}}"
MARK="$VENV/.torchtitan-ready"

check() {
  "$VENV/bin/python" - <<'PY'
import torch, torchtitan.trainer, torchtitan.models.llama3  # noqa: F401
assert torch.__version__.startswith("2.13.0"), torch.__version__
PY
}

if [ -f "$MARK" ] && check 2>/dev/null; then
  echo "torchtitan ready in $VENV"
  exit 0
fi

PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
if [ -z "$INTO" ]; then
  echo "building torchtitan venv in $VENV (one time, about 2 minutes)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "${PIP[@]}" "torch==2.13.0"
fi
"${PIP[@]}" "triton==3.9.0"
"${PIP[@]}" --no-deps "torchtitan==0.3.0" "spmd_types==0.2.3" "torch_checkpointing==0.1.1"
"${PIP[@]}" tyro einops numpy torchdata
check
touch "$MARK"
echo "torchtitan ready in $VENV"
