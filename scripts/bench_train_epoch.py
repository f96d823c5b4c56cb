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
from reference_models import APP_CNN, CNN, compiled  # noqa: E402

data = torch.load(sys.argv[1], weights_only=True)
x, y = data["x"], data["y"]


def epoch(make_forward, warm_up):
    """One epoch from the seed's weights; returns (wall s, CPU s). warm_up
    runs untimed steps first, on throw-away weights, for torch.compile to
    build its kernels for both batch sizes the epoch has."""
    torch.manual_seed(9876)
    model = CNN(*APP_CNN)
    model.train()
    forward = make_forward(model)
    optimizer = torch.optim.Adam(model.parameters())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    if warm_up:
        for n in {16, len(y) % 16 or 16}:
            optimizer.zero_grad()
            F.cross_entropy(forward(x[:n]), y[:n]).backward()
        model.load_state_dict(state)
        optimizer = torch.optim.Adam(model.parameters())
    start, cpu_start = time.perf_counter(), os.times()
    order = torch.randperm(len(y))
    for i in range(0, len(y), 16):
        idx = order[i:i + 16]
        optimizer.zero_grad()
        F.cross_entropy(forward(x[idx]), y[idx]).backward()
        optimizer.step()
    end = os.times()
    user, system = end.user - cpu_start.user, end.system - cpu_start.system
    print(f"pytorch_user_seconds={user:.2f} pytorch_system_seconds={system:.2f}")
    return time.perf_counter() - start, user + system


elapsed, cpu = epoch(lambda m: m, False)
print(f"threads={torch.get_num_threads()} torch={torch.__version__} rows={len(y)} seconds={elapsed:.2f} cpu_seconds={cpu:.2f}")
_, why = compiled(torch.nn.Identity())
if why:
    print(f"pytorch_compile=unavailable ({why})")
else:
    try:
        c_elapsed, c_cpu = epoch(lambda m: compiled(m)[0], True)
        print(f"pytorch_compile_samples_per_wall_s={len(y) / c_elapsed:.2f} pytorch_compile_samples_per_cpu_s={len(y) / c_cpu:.2f}")
    except Exception as e:  # noqa: BLE001 - inductor failing to build here is reported
        print(f"pytorch_compile=unavailable ({type(e).__name__}: {str(e).splitlines()[0][:200]})")
print(f"pytorch_samples_per_wall_s={len(y) / elapsed:.2f}")
print(f"pytorch_samples_per_cpu_s={len(y) / cpu:.2f}")
