"""PyTorch side of scripts/bench-train.sh: one training step of the reference
application CNN (batch 16, Adam), timed over STEPS steps after a warm-up.
Prints pytorch_samples_per_s=N."""
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

threads = int(os.environ.get("DEEPPACKET_THREADS", "0"))
if threads > 0:
    torch.set_num_threads(threads)
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20


class CNN(nn.Module):
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


torch.manual_seed(9876)
model = CNN()
optimizer = torch.optim.Adam(model.parameters())
x = torch.randint(0, 256, (16, 1, 1500)).float() / 255
y = torch.randint(0, 17, (16,))


def step():
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


step()
start = time.perf_counter()
for _ in range(steps):
    step()
elapsed = time.perf_counter() - start
print(f"threads={torch.get_num_threads()}")
print(f"pytorch_samples_per_s={16 * steps / elapsed:.2f}")
