"""PyTorch's side of scripts/bench-ddp.sh, run by torchrun: one epoch of the
reference application CNN (batch 16 per rank, Adam, seed 9876) under
DistributedDataParallel (gloo) with a DistributedSampler, over the training
set `deeppacket split` wrote (compact Parquet: feature bytes, label), as our
trainer runs it. Rank 0 prints the samples per second of the whole group
and the bytes all-reduced per step.

Usage: torchrun --nproc-per-node N bench_ddp.py SET_FOLDER"""
import os
import sys
import time

import pyarrow.parquet as pq
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_models import APP_CNN, CNN  # noqa: E402

torch.set_num_threads(int(os.environ.get("DEEPPACKET_THREADS", "1")))
dist.init_process_group("gloo")
table = pq.read_table(sys.argv[1], columns=["feature", "label"])
features, labels = table.column("feature").to_pylist(), table.column("label").to_pylist()
x = torch.zeros(len(features), 1, 1500)
for i, f in enumerate(features):
    x[i, 0, : len(f)] = torch.frombuffer(bytearray(f), dtype=torch.uint8).float() / 255
y = torch.tensor(labels, dtype=torch.int64)
torch.manual_seed(9876)
model = DistributedDataParallel(CNN(*APP_CNN))
optimizer = torch.optim.Adam(model.parameters())
sampler = DistributedSampler(TensorDataset(x, y), shuffle=True, seed=9876)
loader = DataLoader(TensorDataset(x, y), batch_size=16, sampler=sampler)
sampler.set_epoch(0)
dist.barrier()
start = time.perf_counter()
samples = 0
for xb, yb in loader:
    optimizer.zero_grad()
    F.cross_entropy(model(xb), yb).backward()
    optimizer.step()
    samples += len(yb)
total = torch.tensor([samples], dtype=torch.float64)
dist.all_reduce(total)
seconds = time.perf_counter() - start
if dist.get_rank() == 0:
    grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    print(f"pytorch_ddp_ranks={dist.get_world_size()} pytorch_samples={int(total.item())} pytorch_seconds={seconds:.2f} "
          f"pytorch_samples_per_s={total.item() / seconds:.2f} allreduce_bytes_per_step={grad_bytes}")
dist.destroy_process_group()
