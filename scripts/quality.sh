#!/usr/bin/env bash
# Reproduces the README's quality table: imports ml-100k and ml-latest-small from ../shared/data (ml-100k is
# never committed here: its licence forbids redistribution), trains the two-tower model once per seed with
# the given options (default: fedrec's defaults), evaluates each on test per fedrec-eval-v1 and prints the
# mean test Recall@20 over the seeds (the centralized denominators of the README's "× centralized" ratios
# are the means over seeds 1-3). Writes under runs/quality/.
#   [FEDREC_BINARY=path/to/fedrec] scripts/quality.sh [--seeds "1 2 3"] [fedrec train options...]
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="1"
if [[ "${1:-}" == "--seeds" ]]; then
    seeds="$2"
    shift 2
fi
source scripts/common.sh
select_fedrec_binary
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
    recalls=()
    for seed in $seeds; do
        model="$out/$dataset-seed$seed.safetensors"
        time \
            "$fedrec" train --dataset "$out/$dataset" --out "$model" --seed "$seed" "$@"
        "$fedrec" evaluate --model "$model" --dataset "$out/$dataset"
        # Test Recall@20 of this seed, from the JSON report.
        recalls+=("$("$fedrec" evaluate --model "$model" --dataset "$out/$dataset" --json |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["model"]["values"]["recall"]["20"])')")
    done
    echo "$dataset: test Recall@20 per seed (${seeds}): ${recalls[*]}"
    printf '%s\n' "${recalls[@]}" | awk -v name="$dataset" '{ s += $1; n++ } END { printf "%s: mean test Recall@20 over %d seed(s) %.4f\n", name, n, s / n }'
done
