#!/usr/bin/env bash
# make demo: the whole Deep Packet pipeline on captures the project makes
# itself, end to end, on a fresh machine:
#   synth -> preprocess -> split --split-by flow -> train (configs/small.yaml)
#   -> evaluate -> export (TorchScript) -> predict on captures of another seed.
# Env: DEMO_OUT (default demo-out), DEMO_SCALE (synth scale, default 1),
# DEMO_EPOCHS (default: the config's).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
out=${DEMO_OUT:-demo-out}
scale=${DEMO_SCALE:-1}
dp=bin/deeppacket

step() { printf '\n== %s\n' "$*"; }

if ! scripts/install-deps.sh --check >/dev/null 2>&1; then
	step "installing what is missing"
	scripts/install-deps.sh
fi
step "building bin/deeppacket"
make build

rm -rf "$out"
mkdir -p "$out"
step "synth: labelled captures of every traffic class (seed 1)"
$dp synth --quiet --seed 1 --scale "$scale" -o "$out/captures"

step "preprocess: captures -> Parquet (reference layout)"
$dp preprocess --quiet -o "$out/preprocessed" "$out/captures"

step "split: train/test sets, every flow on one side"
$dp split --quiet --split-by flow -o "$out/sets" "$out/preprocessed"

step "train: configs/small.yaml on the traffic task"
train_args=(--config configs/small.yaml --quiet -o "$out/run"
	--set task=traffic --set model.output_dim=12
	--set data.train="$out/sets/traffic_classification/train.parquet"
	--set data.test="$out/sets/traffic_classification/test.parquet")
if [ -n "${DEMO_EPOCHS:-}" ]; then train_args+=(--epochs "$DEMO_EPOCHS"); fi
$dp train "${train_args[@]}"

step "evaluate: the best checkpoint on the test set"
$dp evaluate --quiet --model "$out/run/checkpoints/best.ckpt" -o "$out/evaluation" \
	"$out/sets/traffic_classification/test.parquet"

step "export: TorchScript"
$dp export "$out/run/checkpoints/best.ckpt" --format torchscript -o "$out/model.pt"

step "predict: captures made with another seed"
$dp synth --quiet --seed 2 -o "$out/unseen"
$dp predict --quiet --model "$out/run/checkpoints/best.ckpt" --format csv -o "$out/predictions.csv" \
	"$out/unseen/netflix1.pcap" "$out/unseen/vpn_skype_audio1.pcap"

step "outputs"
cat <<EOM
captures            $out/captures/
preprocessed        $out/preprocessed/
train/test sets     $out/sets/{application,traffic}_classification/{train,test}.parquet
training run        $out/run/ (config.yaml, metrics.csv, metrics.jsonl, loss.png, checkpoints/)
evaluation          $out/evaluation/ (report.json, report.csv, confusion.png)
TorchScript model   $out/model.pt
predictions         $out/predictions.csv
EOM
