"""PyTorch 2.x and Lightning 2.x meet deeppacket's files.

Usage: lightning2.py RUN OUT. RUN is a `deeppacket train` run folder; OUT
holds go.safetensors (`deeppacket export --format safetensors` of RUN's
best.ckpt) and receives what this script makes for the Go side to read:
pl2.ckpt (a checkpoint Lightning 2.x wrote after resuming RUN's last.ckpt),
py.safetensors (that model's state_dict saved by the safetensors package),
x.f32 and logits.f32 (inputs and that model's eval-mode logits).
Prints one line per check; exits non-zero at the first failure.
"""
import json
import os
import sys

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "scripts"))
from reference_models import CNN, run_head  # noqa: E402


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        sys.exit(1)


class LitCNN(pl.LightningModule):
    """A LightningModule equivalent to the reference's CNN module: the same
    hyper-parameter names, state_dict keys, loss and optimiser."""

    def __init__(self, c1_output_dim, c1_kernel_size, c1_stride, c2_output_dim, c2_kernel_size, c2_stride,
                 output_dim, signal_length, data_path=None):
        super().__init__()
        self.save_hyperparameters()
        net = CNN(c1_output_dim, c1_kernel_size, c1_stride, c2_output_dim, c2_kernel_size, c2_stride, output_dim,
                  signal_length)
        for name, child in net.named_children():
            setattr(self, name, child)

    def forward(self, x):
        return run_head(self, self.max_pool(self.conv2(self.conv1(x))))

    def training_step(self, batch, _):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)


def same(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def main():
    run, out = sys.argv[1], sys.argv[2]
    torch.set_num_threads(1)
    last_path = os.path.join(run, "checkpoints", "last.ckpt")
    best_path = os.path.join(run, "checkpoints", "best.ckpt")
    last = torch.load(last_path, weights_only=True)
    best = torch.load(best_path, weights_only=True)
    opt = last["optimizer_states"][0]
    check(set(opt) == {"state", "param_groups"} and len(opt["state"]) == len(opt["param_groups"][0]["params"]),
          "last.ckpt and best.ckpt load with weights_only=True; optimizer state by parameter index")

    st = load_file(os.path.join(out, "go.safetensors"))
    check(same(st, best["state_dict"]), "safetensors.torch.load_file reads our export: best.ckpt's state_dict exactly")
    with open(os.path.join(out, "go.safetensors"), "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        meta = json.loads(f.read(n))["__metadata__"]
    hp = json.loads(meta["hyper_parameters"])
    check({k: v for k, v in hp.items() if k != "data_path"} ==
          {k: v for k, v in best["hyper_parameters"].items() if k != "data_path"}, "safetensors metadata holds the hyper-parameters")

    model = LitCNN.load_from_checkpoint(last_path, map_location="cpu")
    check(same(model.state_dict(), last["state_dict"]), "Lightning %s load_from_checkpoint loads last.ckpt" % pl.__version__)

    torch.manual_seed(0)
    x = torch.rand(64, 1, 1500)
    y = torch.randint(0, int(last["hyper_parameters"]["output_dim"]), (64,))
    trainer = pl.Trainer(max_epochs=last["epoch"] + 2, accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    fresh = LitCNN(**{k: v for k, v in last["hyper_parameters"].items()})
    trainer.fit(fresh, DataLoader(TensorDataset(x, y), batch_size=16), ckpt_path=last_path)
    check(trainer.current_epoch == last["epoch"] + 2 and not same(fresh.state_dict(), last["state_dict"]),
          "Trainer.fit(ckpt_path=last.ckpt) resumes at epoch %d and trains to %d" % (last["epoch"], trainer.current_epoch))
    trainer.save_checkpoint(os.path.join(out, "pl2.ckpt"))
    save_file(fresh.state_dict(), os.path.join(out, "py.safetensors"),
              metadata={"hyper_parameters": json.dumps(dict(fresh.hparams))})
    fresh.eval()
    with torch.no_grad():
        logits = fresh(x)
    x.numpy().astype("<f4").tofile(os.path.join(out, "x.f32"))
    logits.numpy().astype("<f4").tofile(os.path.join(out, "logits.f32"))
    check(np.isfinite(logits.numpy()).all(), "wrote pl2.ckpt, py.safetensors and the logits")


if __name__ == "__main__":
    main()
