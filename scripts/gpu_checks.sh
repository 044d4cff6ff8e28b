#!/usr/bin/env bash
# One prepared run on one GPU, in order of value, each step with its own time limit so
# the whole fits in about 13 minutes (start-up aside). One model per step: nothing shares
# the GPU, so the times are the model's own.
#  1. time to quality, SASRec full CE (scripts/bench_time_to_quality.py, threshold 0.18),
#     batches built on the GPU (device_batches): batch 128, then batch 512 with the
#     square-root learning-rate rule, then batch 128 compiled with CUDA graphs
#     (compile mode reduce-overhead);
#  2. SASRec-XL (10M-item table, 1.28B parameters) under ZeRO-3 + bf16: sequences/s and
#     peak GPU memory (scripts/bench_distributed.py), next to the documented arithmetic;
#  3. time to quality, BERT4Rec (0.15) and gSASRec (0.1726, long budget);
#  4. our best validation-selected ML-1M setting (experiment=hstu_large_ce_ml1m), seed 42:
#     its wall time and test NDCG@10 on a GPU (the three seeds' figures were run on CPU);
#  5. the scaling study's GPU sizes (scripts/bench_scaling.py), as far as time allows;
#  6. the sequence-length curriculum at full training length (50 epochs, 2 seeds) with the
#     larger batch and learning rate it is meant to allow, against the batch-128 baseline
#     and the same batch without it: time to the baseline's last validation NDCG@10
#     (scripts/bench_curriculum.py --target final). Best run on its own (STEPS=6).
# Before step 1, scripts/gpu_preflight.py checks for a CUDA device and every package the
# chosen steps import (seconds), and stops the run if one is missing.
# usage (from the repository root): scripts/gpu_checks.sh DATA_FILE RESULTS_DIR [STEPS]
#   STEPS: comma-separated subset of 1,2,3,4,5,6 (default 1-5; 6 needs a session of its own)
set -u
DATA=$1; RESULTS=$2; STEPS=${3:-1,2,3,4,5}
mkdir -p "$RESULTS"
want() { case ",$STEPS," in *",$1,"*) return 0;; *) return 1;; esac; }
# The checkout runs without installing; stop at once if a GPU or a package is missing.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python3 scripts/gpu_preflight.py --steps "$STEPS" > "$RESULTS/preflight.txt" 2>&1 || { cat "$RESULTS/preflight.txt"; exit 2; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$RESULTS/gpu.txt" 2>&1
python3 -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'lightning', pl.__version__)" >> "$RESULTS/gpu.txt"
TTQ="python3 scripts/bench_time_to_quality.py --data $DATA --device gpu --out $RESULTS/ttq"
ON_GPU="model.datamodule.device_batches=true"
BIG_BATCH="model.datamodule.batch_size=512 model.task.lr_scaling={rule:sqrt,reference_batch_size:128}"
COMPILED="compile={mode:reduce-overhead}"
LINEAR_512="model.datamodule.batch_size=512 model.task.lr_scaling={rule:linear,reference_batch_size:128}"
if want 1; then
  timeout 120 $TTQ --models sasrec_ce --max-epochs 60 -- $ON_GPU > "$RESULTS/ttq_sasrec.md" 2>&1
  timeout 90 python3 scripts/bench_time_to_quality.py --data "$DATA" --device gpu --out "$RESULTS/ttq_b512" \
    --models sasrec_ce --max-epochs 120 -- $ON_GPU $BIG_BATCH > "$RESULTS/ttq_sasrec_b512.md" 2>&1
  timeout 90 python3 scripts/bench_time_to_quality.py --data "$DATA" --device gpu --out "$RESULTS/ttq_compiled" \
    --models sasrec_ce --max-epochs 60 -- $ON_GPU $COMPILED > "$RESULTS/ttq_sasrec_compiled.md" 2>&1
fi
if want 2; then
  timeout 240 python3 scripts/bench_distributed.py --accelerator gpu --processes 1 --configs "ZeRO-3 x2" \
    --model sasrec_xl --catalogue 10000000 --steps 20 > "$RESULTS/zero3_xl.md" 2>&1
fi
if want 3; then
  timeout 150 $TTQ --models bert4rec --max-epochs 200 -- $ON_GPU > "$RESULTS/ttq_bert4rec.md" 2>&1
  timeout 240 $TTQ --models gsasrec --max-epochs 2000 -- $ON_GPU > "$RESULTS/ttq_gsasrec.md" 2>&1
fi
if want 4; then
  for seed in 42; do
    timeout 200 python3 -m train experiment=hstu_large_ce_ml1m data.path="$DATA" data.cache=false seed=$seed \
      trainer.accelerator=gpu logger=csv trainer.enable_progress_bar=false hydra.run.dir="$RESULTS/hstu_large_ce_s$seed" \
      > "$RESULTS/hstu_large_ce_s$seed.log" 2>&1
  done
fi
if want 5; then
  timeout 240 python3 scripts/bench_scaling.py --data "$DATA" --models sasrec hstu --sizes 64x2 128x4 256x4 --loss "{name:ce}" \
    --epochs 100 --patience 5 --out "$RESULTS/scaling" -- trainer.accelerator=gpu > "$RESULTS/scaling.log" 2>&1
fi
if want 6; then
  timeout 540 python3 scripts/bench_curriculum.py --data "$DATA" --models sasrec --epochs 50 --seeds 2 --target final \
    --extra experiment=sasrec_ce_ml1m data.cache=false trainer.accelerator=gpu $ON_GPU trainer.enable_progress_bar=false \
    --arm seq_length seq_length --arm seq_length_b512 seq_length $LINEAR_512 --arm b512 none $LINEAR_512 \
    --out "$RESULTS/curriculum" > "$RESULTS/curriculum.log" 2>&1
fi
find "$RESULTS" -name '*.ckpt' -delete
cat "$RESULTS"/preflight.txt "$RESULTS"/gpu.txt "$RESULTS"/ttq_*.md "$RESULTS"/zero3_xl.md "$RESULTS"/hstu_large_ce_s*/metrics.json \
  "$RESULTS"/scaling/scaling.md "$RESULTS"/curriculum/results.md 2>/dev/null
