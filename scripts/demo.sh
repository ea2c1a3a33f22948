#!/usr/bin/env bash
# The fedrec demo on a fresh Debian machine with Swift 6.3: installs what is missing, builds the
# `fedrec` command (release), imports the bundled MovieLens latest-small data, trains the two-tower
# model, evaluates it per fedrec-eval-v1 and prints a top-10 recall for one user, with titles.
# Everything it writes goes under runs/demo/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-deps.sh

swift build -c release --product fedrec
fedrec=".build/release/fedrec"
out="runs/demo"
mkdir -p "$out"

echo "== import the bundled ml-latest-small"
"$fedrec" data import demo/data/ml-latest-small --out "$out/dataset" --force

echo "== train the two-tower model centrally (early stopping on the validation slice)"
"$fedrec" train --dataset "$out/dataset" --out "$out/model.safetensors" "$@"

echo "== evaluate on the test set (fedrec-eval-v1), with the popularity baseline"
"$fedrec" evaluate --model "$out/model.safetensors" --dataset "$out/dataset"

echo "== top-10 recall for user 1, from their training history"
"$fedrec" recall --model "$out/model.safetensors" --dataset "$out/dataset" --user 1 --k 10
