#!/usr/bin/env bash
# One prepared GPU run: epoch speed of SASRec/BERT4Rec (bf16, SDPA), then the
# published ML-1M tables, four trainings sharing the one GPU.
# usage: scripts/gpu_checks.sh DATA_FILE RESULTS_DIR [MINUTES_PER_RUN]
set -u
DATA=$1; RESULTS=$2; MINUTES=${3:-3.3}
mkdir -p "$RESULTS/work"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$RESULTS/gpu.txt" 2>&1
python3 -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'lightning', pl.__version__)" >> "$RESULTS/gpu.txt"
# Build the data cache once so the parallel runs only read it.
python3 -c "from data_modules.sources import sequence_file; print(sequence_file('$DATA').summary())" >> "$RESULTS/gpu.txt" 2>&1
timeout 60 python3 scripts/bench_sequence_step.py --epoch --models sasrec bert4rec --losses ce bce \
  --precisions bf16 fp32 > "$RESULTS/speed.txt" 2>&1
OMP_NUM_THREADS=3 python3 scripts/reproduce_tables.py --data "$DATA" --out "$RESULTS/work" \
  --max-minutes "$MINUTES" --parallel 4 -- trainer.accelerator=gpu trainer.precision=bf16-mixed \
  > "$RESULTS/reproduce.log" 2>&1
cp "$RESULTS/work/results.md" "$RESULTS/results.md" 2>/dev/null
tar czf "$RESULTS/runs.tgz" -C "$RESULTS/work" --exclude='*.ckpt' --exclude='checkpoints' . 2>/dev/null
rm -rf "$RESULTS/work"
cat "$RESULTS/results.md" "$RESULTS/speed.txt" 2>/dev/null
