#!/usr/bin/env bash
# Multi-node training with torchrun: run this same command on every node.
#
#   NNODES=2 NPROC_PER_NODE=8 RDZV_HOST=node0.example.org JOB_ID=sasrec-xl-01 \
#     scripts/launch_multinode.sh trainer=deepspeed_zero3 model=sasrec_xl data=sequence_file data.path=...
#
# Every rank joins one run directory, outputs/runs/torchrun-$JOB_ID (or hydra.run.dir=... /
# RECFLOW_RUN_DIR if given); it must be on a filesystem all nodes share, because DeepSpeed
# writes each rank's checkpoint shard there. trainer.devices and trainer.num_nodes are filled
# in from torchrun's environment.
set -euo pipefail

: "${NNODES:?set NNODES, the number of nodes}"
: "${NPROC_PER_NODE:=$(nvidia-smi -L 2>/dev/null | wc -l)}"
: "${RDZV_HOST:?set RDZV_HOST, a host name every node can reach (usually node 0)}"
: "${RDZV_PORT:=29400}"
: "${JOB_ID:?set JOB_ID, the same unique name on every node (names the run directory)}"
PYTHON="${PYTHON:-python}"

if [ "${NPROC_PER_NODE}" -lt 1 ]; then
  echo "NPROC_PER_NODE is 0 (no GPU found); set it, e.g. NPROC_PER_NODE=2 for CPU processes" >&2
  exit 2
fi

exec "${PYTHON}" -m torch.distributed.run \
  --nnodes="${NNODES}" \
  --nproc-per-node="${NPROC_PER_NODE}" \
  --rdzv-backend=c10d \
  --rdzv-endpoint="${RDZV_HOST}:${RDZV_PORT}" \
  --rdzv-id="${JOB_ID}" \
  -m train "$@"
