"""PyTorch side of scripts/bench-train.sh: one training step of the reference
application CNN (batch 16, Adam), timed over STEPS steps after a warm-up.
Prints pytorch_user_seconds=U pytorch_system_seconds=Y for each timed run
(eager, then compiled), and pytorch_samples_per_s=N."""
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_models import APP_CNN, CNN, compiled  # noqa: E402

threads = int(os.environ.get("DEEPPACKET_THREADS", "0"))
if threads > 0:
    torch.set_num_threads(threads)
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20


device = os.environ.get("DEEPPACKET_TEST_DEVICE", "cpu")
torch.manual_seed(9876)
model = CNN(*APP_CNN).to(device)
optimizer = torch.optim.Adam(model.parameters())
x = (torch.randint(0, 256, (16, 1, 1500)).float() / 255).to(device)
y = torch.randint(0, 17, (16,)).to(device)


def sync():
    if device != "cpu":
        torch.cuda.synchronize()


def rate(forward):
    """Samples per second of STEPS training steps through forward, after one
    (or, compiled, two) untimed warm-up steps."""
    def step():
        optimizer.zero_grad()
        F.cross_entropy(forward(x), y).backward()
        optimizer.step()
    step()
    step()
    sync()
    start, cpu_start = time.perf_counter(), os.times()
    for _ in range(steps):
        step()
    sync()
    end = os.times()
    print(f"pytorch_user_seconds={end.user - cpu_start.user:.2f} pytorch_system_seconds={end.system - cpu_start.system:.2f}")
    return 16 * steps / (time.perf_counter() - start)


print(f"threads={torch.get_num_threads()} torch={torch.__version__} device={device}")
eager = rate(model)
fast, why = compiled(model)
if fast is None:
    print(f"pytorch_compile=unavailable ({why})")
else:
    try:
        print(f"pytorch_compile_samples_per_s={rate(fast):.2f}")
    except Exception as e:  # noqa: BLE001 - inductor failing to build here is reported
        print(f"pytorch_compile=unavailable ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
print(f"pytorch_samples_per_s={eager:.2f}")
