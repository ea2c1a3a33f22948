#!/usr/bin/env bash
# Reproduces the README's federated quality figures (fedrec-eval-v1): for each data set, simulated federated
# training (one virtual client per user, the same client trainer, round machine, server optimizer and central
# item step as the processes; fedrec's defaults: FedSGD clients, FedAdam 0.005, cohort 32, moving average 0.99)
#   1. runs the validation curve for seeds 1-3 (clients hold train minus the validation slice),
#   2. chooses the round count with the best mean validation Recall@20 (never test),
#   3. trains on the full training set for that many rounds (seeds 1-3) and reports test Recall@20.
# With --processes it then runs the chosen setting once more through real processes (`fedrec demo`: a
# coordinator and 4 client processes over gRPC, encrypted updates). Writes under runs/federated-quality/.
#   scripts/federated-quality.sh [--processes] [extra fedrec simulate options...]
set -euo pipefail
cd "$(dirname "$0")/.."
processes=0
if [[ "${1:-}" == "--processes" ]]; then
    processes=1
    shift
fi
scripts/ensure-deps.sh
swift build -c release --product fedrec
fedrec=".build/release/fedrec"
shared="${FEDREC_SHARED:-../shared}"
out="runs/federated-quality"
mkdir -p "$out"
export OPENBLAS_NUM_THREADS=1
for dataset in ml-100k ml-latest-small; do
    source="$shared/data/$dataset"
    if [[ ! -d "$source" ]]; then
        echo "skipping $dataset: $source not found"
        continue
    fi
    case "$dataset" in
        ml-100k) rounds=400 every=25 ;;
        *) rounds=600 every=50 ;;
    esac
    echo "== $dataset"
    "$fedrec" data import "$source" --out "$out/$dataset" --force > /dev/null
    for seed in 1 2 3; do
        "$fedrec" simulate --dataset "$out/$dataset" --fold validation --rounds "$rounds" --eval-every "$every" \
            --seed "$seed" "$@" | tee "$out/$dataset-validation-$seed.log"
    done
    # Mean validation Recall@20 per evaluated round over the seeds; the best round count wins (ties: fewer).
    best=$(cat "$out/$dataset"-validation-*.log | awk '/validation R@20/ { n = $2 + 1; s[n] += $7; c[n]++ }
        END { for (n in s) printf "%d %.5f\n", n, s[n] / c[n] }' | sort -k2,2nr -k1,1n | head -1)
    chosen=${best%% *}
    echo "$dataset: best mean validation Recall@20 ${best#* } at $chosen rounds"
    for seed in 1 2 3; do
        "$fedrec" simulate --dataset "$out/$dataset" --fold test --rounds "$chosen" --eval-every "$chosen" \
            --seed "$seed" "$@" | tee "$out/$dataset-test-$seed.log"
    done
    if [[ $processes == 1 ]]; then
        "$fedrec" demo --source "$source" --rounds "$chosen" --cohort 32 --clients 4 --out "$out/$dataset-processes" \
            --fresh | tee "$out/$dataset-processes.log"
    fi
done
