"""Train the reference CNN in PyTorch on the batches the Go trainer saw.

Usage: parity_train.py IN.pt OUT.pt

IN.pt (torch.save'd dict, written by the Go test): x [steps, batch, 1, L]
float32, y [steps, batch] int64, hparams [8] int64 (c1_output_dim,
c1_kernel_size, c1_stride, c2_output_dim, c2_kernel_size, c2_stride,
output_dim, signal_length), seed [1] int64, threads [1] int64.
OUT.pt: losses [steps] float64, steps [1] int64.

The module is the reference's CNN (scripts/reference_models.py) as
Lightning trains it: torch.manual_seed(seed) (seed_everything) before the
constructor, whose dummy torch.rand sizes fc1; Adam with PyTorch's defaults;
per step zero_grad, cross-entropy, backward, step.
"""
import os
import sys

import torch
from torch.nn import functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from reference_models import CNN  # noqa: E402


def main():
    data = torch.load(sys.argv[1])
    torch.set_num_threads(int(data["threads"][0]))
    torch.manual_seed(int(data["seed"][0]))
    model = CNN(*[int(v) for v in data["hparams"]])
    model.train()
    opt = torch.optim.Adam(model.parameters())
    losses = []
    for x, y in zip(data["x"], data["y"]):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # Two entries: libtorch's unpickler reads SETITEMS, not the SETITEM
    # Python writes for a one-entry dict.
    torch.save({"losses": torch.tensor(losses, dtype=torch.float64), "steps": torch.tensor([len(losses)])}, sys.argv[2])


if __name__ == "__main__":
    main()
