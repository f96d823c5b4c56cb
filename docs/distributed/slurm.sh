#!/bin/bash
# Slurm: one torchrun per node, which starts --nproc-per-node ranks there;
# c10d rendezvous on the first node. Submit from the repository root:
#   sbatch docs/distributed/slurm.sh
#SBATCH --job-name=deeppacket-ddp
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --cpus-per-task=16
set -euo pipefail
head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
srun .venv/bin/torchrun --nnodes "$SLURM_NNODES" --nproc-per-node 4 \
	--rdzv-id "$SLURM_JOB_ID" --rdzv-backend c10d --rdzv-endpoint "$head_node:29500" \
	--no-python bin/deeppacket train --config configs/traffic_cnn.yaml --set threads=4 \
	-o "runs/traffic-cnn-$SLURM_JOB_ID"
# Without torchrun, one task per rank, PyTorch's env:// from Slurm's variables:
#   srun --ntasks-per-node 4 bash -c 'RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS \
#     LOCAL_RANK=$SLURM_LOCALID MASTER_ADDR='"$head_node"' MASTER_PORT=29500 \
#     bin/deeppacket train --config configs/traffic_cnn.yaml -o runs/traffic-cnn-'"$SLURM_JOB_ID"
