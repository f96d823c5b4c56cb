"""The Python rank of TestGoAndPythonTrainAsOneDDP: joins the Go test's
process group through torch.distributed (gloo, env://: MASTER_ADDR,
MASTER_PORT, RANK, WORLD_SIZE from the environment), wraps the reference
model CLASS (CNN or ResNet), built with other weights than the Go rank's,
in PyTorch's DistributedDataParallel (its defaults, find_unused_parameters
as given), trains it in training mode (dropout on) for STEPS steps of plain
SGD on its own batches, and saves its parameters.

Usage: peer.py CHECKPOINT CLASS FIND_UNUSED IN.pt OUT.pt LR STEPS
IN.pt holds this rank's batches: "x<step>" [B, 1, L] float32, "y<step>" [B]
int64.
"""
import os
import sys
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
import reference_models  # noqa: E402

ckpt, cls, find_unused, inp, out = sys.argv[1:6]
lr, steps = float(sys.argv[6]), int(sys.argv[7])
torch.set_num_threads(1)
dist.init_process_group("gloo", init_method="env://", timeout=timedelta(seconds=60))
ck = torch.load(ckpt, map_location="cpu", weights_only=False)  # the test fixture: trusted
Model = getattr(reference_models, cls)
hp = {k: v for k, v in ck["hyper_parameters"].items() if k in Model.__init__.__code__.co_varnames}
torch.manual_seed(12345)
model = Model(**hp)  # fresh weights: DDP's construction gives it rank 0's
model.train()
ddp = DistributedDataParallel(model, find_unused_parameters=find_unused == "true")
batches = torch.load(inp, weights_only=True)
for step in range(steps):
    ddp.zero_grad(set_to_none=True)
    F.cross_entropy(ddp(batches[f"x{step}"]), batches[f"y{step}"]).backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p.add_(p.grad, alpha=-lr)
torch.save({name: p.detach().clone() for name, p in model.named_parameters()}, out)
dist.destroy_process_group()
