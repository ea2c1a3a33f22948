#!/usr/bin/env bash
# Reproduces the README's quality table: imports ml-100k and ml-latest-small from ../shared/data (ml-100k is
# never committed here: its licence forbids redistribution), trains the two-tower model with the given
# options (default: fedrec's defaults), evaluates on test per fedrec-eval-v1. Writes under runs/quality/.
#   scripts/quality.sh [fedrec train options...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/ensure-deps.sh
swift build -c release --product fedrec
fedrec=".build/release/fedrec"
shared="${FEDREC_SHARED:-../shared}"
out="runs/quality"
mkdir -p "$out"
for dataset in ml-100k ml-latest-small; do
    source="$shared/data/$dataset"
    if [[ ! -d "$source" ]]; then
        echo "skipping $dataset: $source not found"
        continue
    fi
    echo "== $dataset"
    "$fedrec" data import "$source" --out "$out/$dataset" --force
    time \
        "$fedrec" train --dataset "$out/$dataset" --out "$out/$dataset.safetensors" "$@"
    "$fedrec" evaluate --model "$out/$dataset.safetensors" --dataset "$out/$dataset"
done
