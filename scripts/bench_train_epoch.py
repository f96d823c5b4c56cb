"""PyTorch side of scripts/bench-train-epoch.sh: one full epoch of the
reference application CNN (batch 16, Adam with PyTorch's defaults, seed 9876,
a shuffle per epoch) over a set already in memory, as a Lightning training
loop runs it without its overhead. Prints samples per second of wall time and of CPU time (all threads).

Usage: bench_train_epoch.py DATA.pt (x [N,1,1500] float32, y [N] int64)."""
import os
import sys
import time

import torch
import torch.nn.functional as F

threads = int(os.environ.get("DEEPPACKET_THREADS", "0"))
if threads > 0:
    torch.set_num_threads(threads)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_models import APP_CNN, CNN  # noqa: E402

data = torch.load(sys.argv[1])
x, y = data["x"], data["y"]
torch.manual_seed(9876)
model = CNN(*APP_CNN)
model.train()
optimizer = torch.optim.Adam(model.parameters())
start, cpu_start = time.perf_counter(), time.process_time()
order = torch.randperm(len(y))
for i in range(0, len(y), 16):
    idx = order[i:i + 16]
    optimizer.zero_grad()
    F.cross_entropy(model(x[idx]), y[idx]).backward()
    optimizer.step()
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
print(f"threads={torch.get_num_threads()} rows={len(y)} seconds={elapsed:.2f} cpu_seconds={cpu:.2f}")
print(f"pytorch_samples_per_wall_s={len(y) / elapsed:.2f}")
print(f"pytorch_samples_per_cpu_s={len(y) / cpu:.2f}")
