"""Checks deeppacket's exports in real PyTorch.

Usage: check_export.py MANIFEST.json

For every case in the manifest (written by export_test.go):
  - <dir>/<name>.ckpt (Lightning layout): torch.load reads it, its keys are
    Lightning's, and its state_dict loads with strict=True into the module
    written from the issue's spec of the reference's models
    (scripts/reference_models.py); that module's eval-mode logits equal
    Go's within 1e-5;
  - <dir>/<name>.pt (TorchScript): torch.jit.load runs it with no Deep Packet
    code; its logits equal Go's within 1e-6;
  - <dir>/<name>.init.pt: the model Go built after torch.manual_seed(seed)
    equals the one this module builds after the same seed.
Prints one line per check and exits non-zero on the first failure.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from reference_models import CNN, SAE, ResNet  # noqa: E402

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
