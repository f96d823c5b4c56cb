"""Train the reference CNN in PyTorch on the batches the Go trainer saw.

Usage: parity_train.py IN.pt OUT.pt

IN.pt (torch.save'd dict, written by the Go test): x [steps, batch, 1, L]
float32, y [steps, batch] int64, hparams [8] int64 (c1_output_dim,
c1_kernel_size, c1_stride, c2_output_dim, c2_kernel_size, c2_stride,
output_dim, signal_length), seed [1] int64, threads [1] int64.
OUT.pt: losses [steps] float64, steps [1] int64.

The module is the reference's CNN (ml/model.py) as Lightning trains it:
torch.manual_seed(seed) (seed_everything) before the constructor, whose
dummy torch.rand sizes fc1; Adam with PyTorch's defaults; per step
zero_grad, cross-entropy, backward, step.
"""
import sys

import torch
from torch import nn
from torch.nn import functional as F


class CNN(nn.Module):
    def __init__(self, c1_output_dim, c1_kernel_size, c1_stride, c2_output_dim, c2_kernel_size, c2_stride,
                 output_dim, signal_length):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv1d(1, c1_output_dim, c1_kernel_size, c1_stride), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv1d(c1_output_dim, c2_output_dim, c2_kernel_size, c2_stride), nn.ReLU())
        self.max_pool = nn.MaxPool1d(kernel_size=2)
        dummy = self.max_pool(self.conv2(self.conv1(torch.rand(1, 1, signal_length))))
        flat = dummy.numel()
        self.fc1 = nn.Sequential(nn.Linear(flat, 200), nn.Dropout(p=0.05), nn.ReLU())
        self.fc2 = nn.Sequential(nn.Linear(200, 100), nn.Dropout(p=0.05), nn.ReLU())
        self.fc3 = nn.Sequential(nn.Linear(100, 50), nn.Dropout(p=0.05), nn.ReLU())
        self.out = nn.Linear(50, output_dim)

    def forward(self, x):
        x = self.max_pool(self.conv2(self.conv1(x)))
        x = x.reshape(x.shape[0], -1)
        return self.out(self.fc3(self.fc2(self.fc1(x))))


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
