"""PyTorch side of scripts/bench-train-epoch.sh: one full epoch of the
reference application CNN (batch 16, Adam with PyTorch's defaults, seed 9876,
a shuffle per epoch) over a set already in memory, as a Lightning training
loop runs it without its overhead. Prints samples per second of wall time and of CPU time (all threads).

Usage: bench_train_epoch.py DATA.pt (x [N,1,1500] float32, y [N] int64)."""
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

threads = int(os.environ.get("DEEPPACKET_THREADS", "0"))
if threads > 0:
    torch.set_num_threads(threads)


class CNN(nn.Module):
    """The reference's CNN (ml/model.py) with the application settings."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv1d(1, 200, 4, 3), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv1d(200, 200, 5, 1), nn.ReLU())
        self.max_pool = nn.MaxPool1d(kernel_size=2)
        dummy = self.max_pool(self.conv2(self.conv1(torch.rand(1, 1, 1500))))
        self.fc1 = nn.Sequential(nn.Linear(dummy.view(1, -1).shape[1], 200), nn.Dropout(p=0.05), nn.ReLU())
        self.fc2 = nn.Sequential(nn.Linear(200, 100), nn.Dropout(p=0.05), nn.ReLU())
        self.fc3 = nn.Sequential(nn.Linear(100, 50), nn.Dropout(p=0.05), nn.ReLU())
        self.out = nn.Linear(50, 17)

    def forward(self, x):
        x = self.max_pool(self.conv2(self.conv1(x)))
        return self.out(self.fc3(self.fc2(self.fc1(x.reshape(x.shape[0], -1)))))


data = torch.load(sys.argv[1])
x, y = data["x"], data["y"]
torch.manual_seed(9876)
model = CNN()
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
