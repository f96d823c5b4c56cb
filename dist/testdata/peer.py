"""The Python rank of TestGoAndPythonShareAGroup: joins the Go test's
process group through torch.distributed (gloo, env://: MASTER_ADDR,
MASTER_PORT, RANK, WORLD_SIZE from the environment), computes the reference
CNN's gradients on its own batch, averages them over the ranks in the
buckets DistributedDataParallel uses (reverse parameter order, the first
bucket closed at 1 MiB, the next at 25 MiB; each flattened, divided by the
world size and all-reduced),
takes an SGD step and saves its parameters.

Usage: peer.py CHECKPOINT IN.pt OUT.pt LR
IN.pt holds this rank's batch: "x" [B, 1, L] float32, "y" [B] int64.
"""
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from reference_models import CNN  # noqa: E402

ckpt, inp, out, lr = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
torch.set_num_threads(1)
dist.init_process_group("gloo", init_method="env://", timeout=timedelta(seconds=60))
ck = torch.load(ckpt, map_location="cpu", weights_only=False)  # the test fixture: trusted
hp = {k: v for k, v in ck["hyper_parameters"].items() if k in CNN.__init__.__code__.co_varnames}
model = CNN(**hp)
model.load_state_dict(ck["state_dict"], strict=True)
model.eval()
batch = torch.load(inp, weights_only=True)
F.cross_entropy(model(batch["x"]), batch["y"]).backward()

params = list(model.parameters())
buckets, cur, size, limit = [], [], 0, 1 << 20
for i in reversed(range(len(params))):
    cur.append(i)
    size += params[i].numel() * 4
    if size >= limit:
        buckets.append(cur)
        cur, size, limit = [], 0, 25 << 20
if cur:
    buckets.append(cur)
world = dist.get_world_size()
with torch.no_grad():
    for bucket in buckets:
        mean = torch.cat([params[i].grad.reshape(-1) for i in bucket]) / world
        dist.all_reduce(mean)
        at = 0
        for i in bucket:
            n = params[i].numel()
            params[i].grad.copy_(mean[at:at + n].reshape(params[i].shape))
            at += n
    for p in params:
        p.add_(p.grad, alpha=-lr)
torch.save({name: p.detach().clone() for name, p in model.named_parameters()}, out)
dist.destroy_process_group()
