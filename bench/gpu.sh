#!/usr/bin/env bash
# TinyLlama 1.1B on one GPU: bf16 compute (fp32 master weights), FSDP2, torch.compile per block
# and of the loss, seq 2048. Prints the median tokens/s and MFU of the steps after warm-up.
#
#   bash bench/gpu.sh [STEPS] [LOCAL_BATCH]       (defaults 30 and 4; run from the repo root)
#
# The trainer applies FSDP2 whenever data parallelism spans more than one rank; on one GPU it
# runs unsharded with bf16 autocast, which is what FSDP2's mixed-precision policy computes in.
# FSDP_RANKS=N runs N ranks instead (one per GPU). MFU uses the spec bf16 peak of known GPUs
# (runtime/metrics.py: H100/H200 989 TFLOP/s dense).
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS="${1:-30}"
BATCH="${2:-4}"
RANKS="${FSDP_RANKS:-1}"
PY="${PY:-.venv/bin/python}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

HF_HUB_OFFLINE=1 "$PY" -m scaffolder new-model TinyLlama/TinyLlama-1.1B-Chat-v1.0 --output "$WORK" >/dev/null
PKG="$WORK/tinyllama_1_1b_chat_v1_0"

"$PY" -m torch.distributed.run --standalone --nproc_per_node "$RANKS" -m runtime.train \
  --job.config_file "$PKG/train_configs/tinyllama_1_1b_chat_v1_0.toml" \
  --model.package_dir "$PKG" \
  --job.dump_folder "$WORK/out" \
  --training.steps "$STEPS" \
  --training.seq_len 2048 \
  --training.local_batch_size "$BATCH" \
  --training.mixed_precision_param bfloat16 \
  --compile.enable true \
  --activation_checkpoint.mode none \
  --checkpoint.enable false \
  --checkpoint.last_save_in_hf false \
  --metrics.log_freq 1 \
  --metrics.enable_tensorboard false

"$PY" - "$WORK/out/metrics.jsonl" "$RANKS" "$BATCH" <<'EOF'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
kept = [r for r in rows if r["step"] > max(5, len(rows) // 5)] or rows
tps = statistics.median(r["tokens_per_sec"] for r in kept)
mfu = statistics.median(r["mfu"] for r in kept)
mem = max(r["memory_gib"] for r in rows)
print(f"TinyLlama 1.1B, bf16, compile, seq 2048, {sys.argv[2]} GPU(s), local batch {sys.argv[3]}: "
      f"{tps:,.0f} tokens/s, MFU {100 * mfu:.1f}%, peak memory {mem:.1f} GiB "
      f"(median of steps {kept[0]['step']}-{kept[-1]['step']})")
EOF
