#!/usr/bin/env bash
# One prepared GPU run: epoch speed of SASRec/BERT4Rec (bf16, SDPA), then the
# published ML-1M tables, four trainings sharing the one GPU.
# usage: scripts/gpu_checks.sh DATA_FILE OUT_DIR [MINUTES_PER_RUN]
set -u
DATA=$1; OUT=$2; MINUTES=${3:-3.3}
mkdir -p "$OUT/work"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt" 2>&1
python3 -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'lightning', pl.__version__)" >> "$OUT/gpu.txt"
# Build the data cache once so the parallel runs only read it.
python3 -c "from data_modules.sources import sequence_file; print(sequence_file('$DATA').summary())" >> "$OUT/gpu.txt" 2>&1
timeout 60 python3 scripts/bench_sequence_step.py --epoch --models sasrec bert4rec --losses ce bce \
  --precisions bf16 fp32 > "$OUT/speed.txt" 2>&1
OMP_NUM_THREADS=3 python3 scripts/reproduce_tables.py --data "$DATA" --out "$OUT/work" \
  --max-minutes "$MINUTES" --parallel 4 -- trainer.accelerator=gpu trainer.precision=bf16-mixed \
  > "$OUT/reproduce.log" 2>&1
cp "$OUT/work/results.md" "$OUT/results.md" 2>/dev/null
tar czf "$OUT/runs.tgz" -C "$OUT/work" --exclude='*.ckpt' --exclude='checkpoints' . 2>/dev/null
rm -rf "$OUT/work"
cat "$OUT/results.md" "$OUT/speed.txt" 2>/dev/null
