#!/usr/bin/python3
"""Time the reference path from capture to label: the reference's scapy
transform (bench_preprocess_reference.py's, the seed's steps) and the same
model in PyTorch, eval mode, batches of 1024, softmax and argmax.

Usage: bench_predict_reference.py [--batch N] [--compile] CHECKPOINT CAPTURE...

The model is the reference's module as written to the spec in
scripts/reference_models.py (CNN or ResNet, told by the
state_dict's keys), loaded with torch.load and
load_state_dict(strict=True), run under torch.inference_mode(); with
--compile, through torch.compile (its compilations, at the first batch and
at the first of another size, count in the times). Prints one line:
reference_packets=N reference_kept=K reference_seconds=S
reference_cpu_seconds=C reference_user_seconds=U reference_system_seconds=Y
(CPU from after the imports), or reference_skipped="why" where
torch.compile does not run.
"""
import os
import resource
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_preprocess_reference import transform  # noqa: E402
from reference_models import CNN, ResNet, compiled  # noqa: E402
from scapy.utils import rdpcap  # noqa: E402

def main(ckpt, paths, batch_size, compile_model):
    torch.set_num_threads(1)
    start, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    # weights_only=True cannot read Lightning checkpoints in torch 1.13 (BINFLOAT);
    # the fixture is trusted.
    ck = torch.load(ckpt, map_location="cpu")
    sd = ck["state_dict"]
    cls = ResNet if "conv1.0.first_block_conv.conv.weight" in sd else CNN
    model = cls(**ck["hyper_parameters"])
    model.load_state_dict(sd, strict=True)
    model.eval()
    if compile_model:
        model, why = compiled(model)
        if model is None:
            print(f'reference_skipped="{why}"')
            return
    packets = kept = 0
    labels = []
    batch = []

    def flush():
        if not batch:
            return
        x = torch.zeros(len(batch), 1, 1500)
        for i, b in enumerate(batch):
            x[i, 0, : len(b)] = torch.frombuffer(bytearray(b), dtype=torch.uint8).float() / 255
        with torch.inference_mode():
            labels.extend(torch.softmax(model(x), 1).argmax(1).tolist())
        batch.clear()

    for path in paths:
        for pkt in rdpcap(path):
            packets += 1
            feature = transform(pkt)
            if feature is None:
                continue
            kept += 1
            batch.append(feature)
            if len(batch) == batch_size:
                flush()
        flush()
    seconds, end = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    user, system = end.ru_utime - usage.ru_utime, end.ru_stime - usage.ru_stime
    assert len(labels) == kept
    print(f"reference_packets={packets} reference_kept={kept} reference_seconds={seconds:.3f} "
          f"reference_cpu_seconds={user + system:.3f} reference_user_seconds={user:.3f} reference_system_seconds={system:.3f}")


if __name__ == "__main__":
    args = sys.argv[1:]
    batch_size, compile_model = 1024, False
    if args[:1] == ["--batch"]:
        batch_size, args = int(args[1]), args[2:]
    if args[:1] == ["--compile"]:
        compile_model, args = True, args[1:]
    main(args[0], args[1:], batch_size, compile_model)
