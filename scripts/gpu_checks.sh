#!/usr/bin/env bash
# One prepared run on one GPU, everything at once:
#  - epoch speed of SASRec/BERT4Rec (bf16 and fp32, SDPA);
#  - the published ML-1M tables (scripts/reproduce_tables.py), the settings sharing the GPU;
#  - alongside, the ZeRO checks (scripts/bench_distributed.py, bf16): a mid-size SASRec
#    (1M-item table, d=128, sampled softmax) under ZeRO-2 and SASRec-XL (10M-item table,
#    1.28B parameters) under ZeRO-3: sequences/s and peak GPU memory.
# usage: scripts/gpu_checks.sh DATA_FILE RESULTS_DIR [MINUTES_PER_RUN] [SETTINGS]
#   e.g. scripts/gpu_checks.sh ml-1m.txt results 7 gsasrec     # the long gSASRec run only
set -u
DATA=$1; RESULTS=$2; MINUTES=${3:-3.3}
SETTINGS=${4:-sasrec_bce,sasrec_ce,bert4rec,bert4rec_pop,gsasrec}
mkdir -p "$RESULTS/tables"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$RESULTS/gpu.txt" 2>&1
python3 -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'lightning', pl.__version__)" >> "$RESULTS/gpu.txt"
# Build the data cache once so the parallel runs only read it.
python3 -c "from data_modules.sources import sequence_file; print(sequence_file('$DATA').summary())" >> "$RESULTS/gpu.txt" 2>&1
timeout 60 python3 scripts/bench_sequence_step.py --epoch --models sasrec bert4rec --losses ce bce \
  --precisions bf16 fp32 > "$RESULTS/speed.txt" 2>&1
(
  timeout 240 python3 scripts/bench_distributed.py --accelerator gpu --processes 1 --configs "ZeRO-2 x2" \
    --catalogue 1000000 --hidden 128 --loss sampled_softmax --negatives 1024 --steps 30 \
    > "$RESULTS/zero2_mid.md" 2>&1
  timeout 300 python3 scripts/bench_distributed.py --accelerator gpu --processes 1 --configs "ZeRO-3 x2" \
    --model sasrec_xl --catalogue 10000000 --steps 20 > "$RESULTS/zero3_xl.md" 2>&1
) &
ZERO=$!
PARALLEL=$(echo "$SETTINGS" | tr ',' '\n' | grep -vc _pop); [ "$PARALLEL" -ge 1 ] || PARALLEL=1
OMP_NUM_THREADS=3 python3 scripts/reproduce_tables.py --data "$DATA" --out "$RESULTS/tables" --settings "$SETTINGS" \
  --max-minutes "$MINUTES" --parallel "$PARALLEL" -- trainer.accelerator=gpu trainer.precision=bf16-mixed \
  > "$RESULTS/reproduce.log" 2>&1
wait $ZERO
cp "$RESULTS/tables/results.md" "$RESULTS/results.md" 2>/dev/null
tar czf "$RESULTS/runs.tgz" -C "$RESULTS/tables" --exclude='*.ckpt' --exclude='checkpoints' . 2>/dev/null
rm -rf "$RESULTS/tables"
cat "$RESULTS/results.md" "$RESULTS/speed.txt" "$RESULTS/zero2_mid.md" "$RESULTS/zero3_xl.md" 2>/dev/null
