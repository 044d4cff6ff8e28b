#!/usr/bin/env bash
# SLURM batch job: 2 nodes x 8 GPUs, one task per GPU; Lightning reads SLURM's variables
# (SLURMEnvironment), so no torchrun is needed. Submit with:
#
#   sbatch scripts/slurm_example.sh trainer=deepspeed_zero2 model=sasrec data=sequence_file data.path=...
#
# All tasks share outputs/runs/slurm-<job id>-<step id> (on the shared filesystem);
# trainer.devices / trainer.num_nodes are filled in from SLURM_NTASKS and SLURM_NNODES.
#SBATCH --job-name=recflow
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --mem=0
#SBATCH --time=12:00:00
#SBATCH --output=outputs/slurm-%j.out
set -euo pipefail

cd "${SLURM_SUBMIT_DIR:-.}"
source .venv/bin/activate
export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}"
# Resume after preemption: add ckpt_path=<run dir>/checkpoints/last.ckpt hydra.run.dir=<run dir>.
srun --kill-on-bad-exit=1 python -m train "$@"
