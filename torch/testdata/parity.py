"""Reference results for the Go binding's parity tests, computed by PyTorch.

Usage: parity.py IN.pt OUT.pt THREADS [DEVICE]. IN.pt is a dict of tensors written by the Go
test (torch.save format); every key is "<case>/<name>". This script computes
each case with PyTorch and writes "<case>/<result>" tensors to OUT.pt. The Go
test computes the same cases through the binding and compares.
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from reference_models import CNN  # noqa: E402

# The Go side's intra-op thread count: reductions split over threads sum in
# another order, so both sides must use the same number.
torch.set_num_threads(int(sys.argv[3]))
# weights_only: the Go side's files must load the safe way (PyTorch 2.6's
# default); 1.13 has the option too.
device = sys.argv[4] if len(sys.argv) > 4 else "cpu"
inp = {k: v.to(device) for k, v in torch.load(sys.argv[1], weights_only=True).items()}
out = {}


def get(case, name):
    return inp[case + "/" + name].clone()


def put(case, **tensors):
    for name, t in tensors.items():
        out[case + "/" + name] = t.detach().cpu().clone()


def grads(case, result, *leaves):
    """Backward of (result * g).sum() with the case's fixed g."""
    (result * get(case, "g")).sum().backward()
    return [leaf.grad for leaf in leaves]


def leaf(case, name):
    t = get(case, name)
    t.requires_grad_(True)
    return t


# conv1d with every argument, two ways
for case, kw in [("conv1d", dict(stride=2, padding=1, dilation=2, groups=1)),
                 ("conv1d_groups", dict(stride=1, padding=0, dilation=1, groups=3))]:
    x, w, b = leaf(case, "x"), leaf(case, "w"), leaf(case, "b")
    y = F.conv1d(x, w, b, **kw)
    gx, gw, gb = grads(case, y, x, w, b)
    put(case, y=y, gx=gx, gw=gw, gb=gb)

case = "max_pool1d"
x = leaf(case, "x")
y = F.max_pool1d(x, kernel_size=3, stride=2, padding=1)
put(case, y=y, gx=grads(case, y, x)[0])

for case, fn in [("relu", torch.relu), ("sigmoid", torch.sigmoid), ("log_softmax", lambda t: torch.log_softmax(t, 1)),
                 ("softmax", lambda t: torch.softmax(t, 1))]:
    x = leaf(case, "x")
    y = fn(x)
    put(case, y=y, gx=grads(case, y, x)[0])

case = "linear"
x, w, b = leaf(case, "x"), leaf(case, "w"), leaf(case, "b")
y = F.linear(x, w, b)
gx, gw, gb = grads(case, y, x, w, b)
put(case, y=y, gx=gx, gw=gw, gb=gb)

case = "batch_norm"
bn = nn.BatchNorm1d(4).to(device)
x = leaf(case, "x")
y = bn(x)
gx, gw, gb = grads(case, y, x, bn.weight, bn.bias)
bn.eval()
y_eval = bn(get(case, "x"))
put(case, y=y, gx=gx, gw=gw, gb=gb, running_mean=bn.running_mean, running_var=bn.running_var,
    num_batches_tracked=bn.num_batches_tracked, y_eval=y_eval)

case = "dropout"
x = get(case, "x")
torch.manual_seed(7)
put(case, train=F.dropout(x, 0.3, True), eval=F.dropout(x, 0.3, False))

case = "shapes"
x = leaf(case, "x")  # [2, 3, 4]
a = get(case, "a")
padded = F.pad(x, (2, 1), value=0.5)
y = (padded.transpose(1, 2).reshape(2, -1).view(2, 3, 7) * 2).flatten(1).mean(dim=1)
z = torch.cat([x, x * 3], 0).mean(0).add(torch.stack([a, a], 0).sum(0)).mean()
put(case, padded=padded, y=y, z=z, gx=torch.autograd.grad(y.sum() + z, x)[0],
    argmax=torch.argmax(x, dim=2), add_=get(case, "x").add_(a, alpha=0.5))

case = "losses"
logits, target = leaf(case, "logits"), get(case, "target")
ce = F.cross_entropy(logits, target)
ce.backward()
pred, goal = leaf(case, "pred"), get(case, "goal")
mse = F.mse_loss(pred, goal)
mse.backward()
put(case, ce=ce, gce=logits.grad, mse=mse, gmse=pred.grad)


case = "cnn"
h = get(case, "hparams").tolist()
torch.manual_seed(int(get(case, "seed").item()))
model = CNN(*h)
for name, t in model.state_dict().items():
    out[case + "/init/" + name] = t.clone()
model.to(device)
x, y = get(case, "x"), get(case, "y")
for optimizer, tag in [(torch.optim.Adam(model.parameters()), "adam")]:
    losses = []
    for step in range(10):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    out[case + "/" + tag + "/losses"] = torch.tensor(losses, dtype=torch.float64)
    for name, t in model.state_dict().items():
        out[case + "/" + tag + "/" + name] = t.cpu().clone()
    st = optimizer.state_dict()["state"][0]
    out[case + "/" + tag + "/state0/step"] = st["step"].cpu().clone()
    out[case + "/" + tag + "/state0/exp_avg_sq"] = st["exp_avg_sq"].cpu().clone()

case = "sgd"
w = leaf(case, "w")
opt = torch.optim.SGD([w], lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01, nesterov=False)
for _ in range(3):
    opt.zero_grad()
    (w * w * get(case, "g")).sum().backward()
    opt.step()
put(case, w=w)

case = "script"
folder = os.path.dirname(sys.argv[1])
module = torch.jit.load(os.path.join(folder, "go_script.pt"), map_location=device)
put(case, y=module(get(case, "x")))
py_module = torch.jit.script(nn.Sequential(nn.Linear(5, 3), nn.ReLU()).to(device))
py_module.save(os.path.join(folder, "py_script.pt"))
put(case, py_y=py_module(get(case, "x")))

torch.save(out, sys.argv[2])
