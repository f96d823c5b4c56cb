"""PyTorch's side of TestClassifyLikePyTorch: the reference's module (as
scripts/reference_models.py writes it) with a checkpoint's weights, over the
packets the Go test wrote, in eval mode, batch by batch.

Usage: classify_parity.py CHECKPOINT IN.pt OUT.pt THREADS
IN.pt holds "x": [N, 1, signal_length] float32, bytes/255 zero-padded.
OUT.pt gets "logits": [N, classes] float32.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from reference_models import CNN, ResNet  # noqa: E402

ckpt, inp, out, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
torch.set_num_threads(threads)
ck = torch.load(ckpt, map_location="cpu", weights_only=False)  # a test fixture or our own run: trusted
sd = ck["state_dict"]
cls = ResNet if "conv1.0.first_block_conv.conv.weight" in sd else CNN
hp = {k: v for k, v in ck["hyper_parameters"].items() if k in cls.__init__.__code__.co_varnames}
model = cls(**hp)
model.load_state_dict(sd, strict=True)
model.eval()
x = torch.load(inp, weights_only=True)["x"]
with torch.inference_mode():
    logits = torch.cat([model(x[i:i + 256]) for i in range(0, len(x), 256)])
torch.save({"logits": logits.contiguous()}, out)
