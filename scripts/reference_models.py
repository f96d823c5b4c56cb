"""The reference's models (github.com/munhouiani/Deep-Packet, ml/model.py and
its ResNet1d), written in PyTorch from the issue's spec of them, for the
parity tests, the export check and the PyTorch side of the benchmarks.

Each constructor creates its parameters in the reference's order and, for the
CNN and ResNet, draws the reference's dummy torch.rand that sizes fc1, so that
torch.manual_seed(s) before a constructor gives the reference's initial
weights bit for bit. The constructors take the reference's hyper-parameters
by name (a Lightning checkpoint's hyper_parameters load with cls(**hp);
data_path is accepted and ignored as the reference keeps it only for its
data loader). Scripts elsewhere in the repository import it by putting this
folder, found relative to their own file, on sys.path.
"""
import torch
from torch import nn
import torch.nn.functional as F


def dense_head(module, in_features, output_dim):
    """The reference's fully connected head, fc1..fc3 and out, on module."""
    module.fc1 = nn.Sequential(nn.Linear(in_features, 200), nn.Dropout(0.05), nn.ReLU())
    module.fc2 = nn.Sequential(nn.Linear(200, 100), nn.Dropout(0.05), nn.ReLU())
    module.fc3 = nn.Sequential(nn.Linear(100, 50), nn.Dropout(0.05), nn.ReLU())
    module.out = nn.Linear(50, output_dim)


def run_head(module, x):
    x = x.reshape(x.shape[0], -1)
    return module.out(module.fc3(module.fc2(module.fc1(x))))


class CNN(nn.Module):
    """The reference's CNN: two convolutions, a max pool and the dense head."""

    def __init__(self, c1_output_dim, c1_kernel_size, c1_stride, c2_output_dim, c2_kernel_size, c2_stride,
                 output_dim, signal_length, data_path=None):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv1d(1, c1_output_dim, c1_kernel_size, c1_stride), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv1d(c1_output_dim, c2_output_dim, c2_kernel_size, c2_stride), nn.ReLU())
        self.max_pool = nn.MaxPool1d(2)
        # The reference sizes fc1 by running a random dummy; the draw moves the
        # generator, so it stays even though only its shape is used.
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
    """The reference's ResNet: a ResNet1d, a max pool and the dense head."""

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
    """The stacked autoencoder's classifier: fc1..fcN over the flat signal, then out."""

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


# The reference's application-classification CNN settings (c1_output_dim,
# c1_kernel_size, c1_stride, c2_output_dim, c2_kernel_size, c2_stride,
# output_dim, signal_length), as the benchmarks build it.
APP_CNN = (200, 4, 3, 200, 5, 1, 17, 1500)


def compiled(model):
    """(torch.compile(model), "") for the benchmarks' second PyTorch line, or
    (None, why) where it does not run (PyTorch 1.x). Compilation itself
    happens at the first call: the callers time it separately."""
    if not hasattr(torch, "compile"):
        return None, "torch.compile needs PyTorch 2 (this is %s)" % torch.__version__
    try:
        return torch.compile(model), ""
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        return None, "%s: %s" % (type(e).__name__, str(e).splitlines()[0][:200])
