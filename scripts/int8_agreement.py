"""Would an int8 mode of predict agree with the exact one? Issue 16 offers a
fast mode only at 99.5% top-1 agreement or more. This measures int8's
numerics on the published traffic ResNet: every Conv1d and Linear takes
int8 weights (symmetric, per output channel) and uint8 inputs (affine, per
tensor, the range calibrated on 1,024 of the packets: min/max, or the
99.99th or 99.9th percentile), as static post-training quantization does;
the rest runs in float32 (fake quantization: the products are those of the
integers, scaled). PyTorch's own FX quantization cannot trace the reference's
ResNet (its SAME padding branches on shapes), hence the simulation.

Usage: int8_agreement.py PREPROCESSED_DIR CHECKPOINT
PREPROCESSED_DIR: `deeppacket preprocess` output of the ISCX captures.
"""
import glob
import os
import sys

import numpy as np
import pyarrow.parquet as pq
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_models  # noqa: E402

pre, checkpoint = sys.argv[1], sys.argv[2]
feats = []
for f in sorted(glob.glob(os.path.join(pre, "*.parquet"))):
    for b in pq.read_table(f, columns=["feature"]).column("feature").to_pylist():
        v = np.zeros(1500, dtype=np.float32)
        a = np.frombuffer(b, dtype=np.uint8)[:1500]
        v[:len(a)] = a / 255.0
        feats.append(v)
x = torch.from_numpy(np.stack(feats)).unsqueeze(1)
print("packets", x.shape[0])
ck = torch.load(checkpoint, map_location="cpu", weights_only=False)  # the published checkpoint: trusted
hp = {k: v for k, v in ck["hyper_parameters"].items() if k in reference_models.ResNet.__init__.__code__.co_varnames}
m = reference_models.ResNet(**hp)
m.load_state_dict(ck["state_dict"])
m.eval()


def run(model):
    with torch.inference_mode():
        return torch.cat([model(x[i:i + 512]) for i in range(0, len(x), 512)])


ref = run(m)
layers = [mod for mod in m.modules() if isinstance(mod, (torch.nn.Conv1d, torch.nn.Linear))]
stats = {id(l): [] for l in layers}
hooks = [l.register_forward_pre_hook(lambda mod, inp: stats[id(mod)].append(inp[0].detach().flatten()[::7].clone())) for l in layers]
calib = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:1024]
with torch.inference_mode():
    m(x[calib])
for h in hooks:
    h.remove()
orig = {id(l): l.weight.data.clone() for l in layers}
for pct in [100.0, 99.99, 99.9]:
    ranges = {}
    for l in layers:
        v = torch.cat(stats[id(l)]).float()
        lo = v.min().item() if pct == 100 else torch.quantile(v, 1 - pct / 100).item()
        hi = v.max().item() if pct == 100 else torch.quantile(v, pct / 100).item()
        ranges[id(l)] = (min(0.0, lo), max(0.0, hi))

    def fake_quantized_input(mod, inp):
        lo, hi = ranges[id(mod)]
        scale = (hi - lo) / 255 if hi > lo else 1.0
        zero = round(-lo / scale)
        q = torch.clamp(torch.round(inp[0] / scale) + zero, 0, 255)
        return ((q - zero) * scale,)

    for l in layers:
        w = orig[id(l)]
        s = w.abs().amax(dim=tuple(range(1, w.dim())), keepdim=True) / 127
        s[s == 0] = 1
        l.weight.data = torch.clamp(torch.round(w / s), -127, 127) * s
    hooks = [l.register_forward_pre_hook(fake_quantized_input) for l in layers]
    out = run(m)
    for h in hooks:
        h.remove()
    for l in layers:
        l.weight.data = orig[id(l)].clone()
    agree = (out.argmax(1) == ref.argmax(1)).float().mean().item()
    differ = int((out.argmax(1) != ref.argmax(1)).sum())
    print(f"int8 (weights per channel, inputs per tensor, range at the {pct}th percentile): "
          f"top-1 agreement {agree * 100:.2f}% ({differ} of {len(x)} packets differ); "
          f"largest logit difference {(out - ref).abs().max().item():.3f}")
