"""Checks deeppacket's exports in real PyTorch.

Usage: check_export.py MANIFEST.json

For every case in the manifest (written by export_test.go):
  - <dir>/<name>.ckpt (Lightning layout): torch.load reads it, its keys are
    Lightning's, and its state_dict loads with strict=True into a module
    written here from the issue's spec of the reference's models; that
    module's eval-mode logits equal Go's within 1e-5;
  - <dir>/<name>.pt (TorchScript): torch.jit.load runs it with no Deep Packet
    code; its logits equal Go's within 1e-6;
  - <dir>/<name>.init.pt: the model Go built after torch.manual_seed(seed)
    equals the one this module builds after the same seed.
Prints one line per check and exits non-zero on the first failure.
"""
import json
import sys

import torch
from torch import nn
import torch.nn.functional as F


def dense_head(module, in_features, output_dim):
    module.fc1 = nn.Sequential(nn.Linear(in_features, 200), nn.Dropout(0.05), nn.ReLU())
    module.fc2 = nn.Sequential(nn.Linear(200, 100), nn.Dropout(0.05), nn.ReLU())
    module.fc3 = nn.Sequential(nn.Linear(100, 50), nn.Dropout(0.05), nn.ReLU())
    module.out = nn.Linear(50, output_dim)


def run_head(module, x):
    x = x.reshape(x.shape[0], -1)
    return module.out(module.fc3(module.fc2(module.fc1(x))))


class CNN(nn.Module):
    def __init__(self, c1_output_dim, c1_kernel_size, c1_stride, c2_output_dim, c2_kernel_size, c2_stride,
                 output_dim, signal_length, data_path=None):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv1d(1, c1_output_dim, c1_kernel_size, c1_stride), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv1d(c1_output_dim, c2_output_dim, c2_kernel_size, c2_stride), nn.ReLU())
        self.max_pool = nn.MaxPool1d(2)
        dummy = self.max_pool(self.conv2(self.conv1(torch.rand(1, 1, signal_length))))
        dense_head(self, dummy.view(1, -1).shape[1], output_dim)

    def forward(self, x):
        return run_head(self, self.max_pool(self.conv2(self.conv1(x))))


def same_pad(x, k, s):
    length = x.shape[-1]
    p = max(0, ((length + s - 1) // s - 1) * s + k - length)
    return F.pad(x, (p // 2, p - p // 2), "constant", 0)


class SameConv(nn.Module):
    def __init__(self, cin, cout, k, s, groups=1):
        super().__init__()
        self.k, self.s = k, s
        self.conv = nn.Conv1d(cin, cout, k, s, groups=groups)

    def forward(self, x):
        return self.conv(same_pad(x, self.k, self.s))


class Block(nn.Module):
    def __init__(self, cin, cout, k, s, groups, downsample, first):
        super().__init__()
        self.cin, self.cout, self.first, self.downsample = cin, cout, first, downsample
        self.s = s if downsample else 1
        self.bn1 = nn.BatchNorm1d(cin)
        self.do1 = nn.Dropout(0.5)
        self.conv1 = SameConv(cin, cout, k, self.s, groups)
        self.bn2 = nn.BatchNorm1d(cout)
        self.do2 = nn.Dropout(0.5)
        self.conv2 = SameConv(cout, cout, k, 1, groups)

    def forward(self, x):
        identity, out = x, x
        if not self.first:
            out = self.do1(F.relu(self.bn1(out)))
        out = self.conv1(out)
        out = self.conv2(self.do2(F.relu(self.bn2(out))))
        if self.downsample:
            identity = F.max_pool1d(same_pad(identity, self.s, 1), self.s)
        if self.cout != self.cin:
            ch1 = (self.cout - self.cin) // 2
            identity = F.pad(identity.transpose(-1, -2), (ch1, self.cout - self.cin - ch1)).transpose(-1, -2)
        return out + identity


class ResNet1d(nn.Module):
    def __init__(self, base, k, s, groups, n_block, n_classes):
        super().__init__()
        self.first_block_conv = SameConv(1, base, k, 1)
        self.first_block_bn = nn.BatchNorm1d(base)
        self.basicblock_list = nn.ModuleList()
        out = base
        for i in range(n_block):
            if i == 0:
                cin = out = base
            else:
                cin = base * 2 ** ((i - 1) // 4)
                out = cin * 2 if i % 4 == 0 else cin
            self.basicblock_list.append(Block(cin, out, k, s, groups, i % 2 == 1, i == 0))
        self.final_bn = nn.BatchNorm1d(out)
        self.dense = nn.Linear(out, n_classes)

    def forward(self, x):
        x = F.relu(self.first_block_bn(self.first_block_conv(x)))
        for b in self.basicblock_list:
            x = b(x)
        return self.dense(F.relu(self.final_bn(x)).mean(-1))


class ResNet(nn.Module):
    def __init__(self, c1_output_dim, c1_kernel_size, c1_stride, c1_groups, c1_n_block, output_dim, signal_length,
                 data_path=None):
        super().__init__()
        self.conv1 = nn.Sequential(ResNet1d(c1_output_dim, c1_kernel_size, c1_stride, c1_groups, c1_n_block,
                                            c1_output_dim), nn.ReLU())
        self.max_pool = nn.MaxPool1d(2)
        dummy = self.max_pool(self.conv1(torch.rand(1, 1, signal_length)))
        dense_head(self, dummy.view(1, -1).shape[1], output_dim)

    def forward(self, x):
        return run_head(self, self.max_pool(self.conv1(x)))


class SAE(nn.Module):
    def __init__(self, hidden_dims, output_dim, signal_length):
        super().__init__()
        dims = [signal_length] + list(hidden_dims)
        for i in range(len(hidden_dims)):
            setattr(self, "fc%d" % (i + 1), nn.Sequential(nn.Linear(dims[i], dims[i + 1]), nn.Dropout(0.05), nn.ReLU()))
        self.n = len(hidden_dims)
        self.out = nn.Linear(dims[-1], output_dim)

    def forward(self, x):
        x = x.reshape(x.shape[0], -1)
        for i in range(self.n):
            x = getattr(self, "fc%d" % (i + 1))(x)
        return self.out(x)


CLASSES = {"cnn": CNN, "resnet": ResNet, "sae": SAE}
LIGHTNING_KEYS = {"state_dict", "hyper_parameters", "hparams_name", "epoch", "global_step", "pytorch-lightning_version"}


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        sys.exit(1)


def main():
    cases = json.load(open(sys.argv[1]))
    torch.set_num_threads(1)
    for c in cases:
        name, base, cls = c["name"], c["base"], CLASSES[c["kind"]]
        io = torch.load(base + ".io.pt")
        x, go_logits = io["x"], io["logits"]

        ck = torch.load(base + ".ckpt")
        check(LIGHTNING_KEYS <= set(ck), "%s: Lightning keys %s" % (name, sorted(set(ck))))
        check(ck["epoch"] == c["epoch"] and ck["global_step"] == c["global_step"], "%s: epoch and global_step" % name)
        hp = dict(ck["hyper_parameters"])
        model = cls(**hp)
        model.load_state_dict(ck["state_dict"], strict=True)
        model.eval()
        with torch.no_grad():
            d = (model(x) - go_logits).abs().max().item()
        check(d <= 1e-5, "%s: Lightning export loads strictly, max |logit diff| %g" % (name, d))

        ts = torch.jit.load(base + ".pt")
        with torch.no_grad():
            d = (ts(x) - go_logits).abs().max().item()
        check(d <= 1e-6, "%s: TorchScript export, max |logit diff| %g" % (name, d))

        if "seed" in c:
            go_init = torch.load(base + ".init.pt")
            torch.manual_seed(c["seed"])
            fresh = cls(**hp).state_dict()
            check(set(fresh) == set(go_init), "%s: seeded init has the same keys" % name)
            d = max((fresh[k].double() - go_init[k].double()).abs().max().item() for k in fresh)
            check(d == 0, "%s: seeded init equals PyTorch's, max diff %g" % (name, d))


if __name__ == "__main__":
    main()
