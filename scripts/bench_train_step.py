"""PyTorch side of scripts/bench-train.sh: one training step of the reference
application CNN (batch 16, Adam), timed over STEPS steps after a warm-up.
Prints pytorch_samples_per_s=N."""
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_models import APP_CNN, CNN  # noqa: E402

threads = int(os.environ.get("DEEPPACKET_THREADS", "0"))
if threads > 0:
    torch.set_num_threads(threads)
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20


torch.manual_seed(9876)
model = CNN(*APP_CNN)
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
