#!/usr/bin/env bash
# Reproduces the README's federated quality figures (fedrec-eval-v1): for each data set, simulated federated
# training (one virtual client per user, the same client trainer, round machine, server optimizer and central
# item step as the processes; FedSGD clients, cohort 32, moving average 0.99 with warm-up 2) that
#   1. runs the validation curve of each candidate server optimizer for seeds 1-3 (clients hold train minus
#      the validation slice),
#   2. chooses the optimizer and round count with the best mean validation Recall@20 (never test),
#   3. trains on the full training set with that choice (seeds 1-3) and reports test Recall@20.
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
# Server optimizers tried: FedAdam (Reddi et al., no bias correction) and Adam with bias correction.
candidates=(fedadam adam)
for dataset in ml-100k ml-latest-small; do
    source="$shared/data/$dataset"
    if [[ ! -d "$source" ]]; then
        echo "skipping $dataset: $source not found"
        continue
    fi
    case "$dataset" in
        ml-100k) rounds=500 every=25 ;;
        *) rounds=500 every=25 ;;
    esac
    echo "== $dataset"
    "$fedrec" data import "$source" --out "$out/$dataset" --force > /dev/null
    : > "$out/$dataset-choices.txt"
    for server in "${candidates[@]}"; do
        for seed in 1 2 3; do
            "$fedrec" simulate --dataset "$out/$dataset" --fold validation --rounds "$rounds" --eval-every "$every" \
                --server "$server" --seed "$seed" "$@" | tee "$out/$dataset-$server-validation-$seed.log"
        done
        # Mean validation Recall@20 per evaluated round over the seeds.
        cat "$out/$dataset-$server"-validation-*.log | awk -v server="$server" '/validation R@20/ {
                n = $2 + 1; s[n] += $7; c[n]++ }
            END { for (n in s) printf "%s %d %.5f\n", server, n, s[n] / c[n] }' >> "$out/$dataset-choices.txt"
    done
    # The best (optimizer, round count) by mean validation Recall@20 (ties: fewer rounds).
    read -r server chosen score < <(sort -k3,3nr -k2,2n "$out/$dataset-choices.txt" | head -1)
    echo "$dataset: best mean validation Recall@20 $score with --server $server at $chosen rounds"
    for seed in 1 2 3; do
        "$fedrec" simulate --dataset "$out/$dataset" --fold test --rounds "$chosen" --eval-every "$chosen" \
            --server "$server" --seed "$seed" "$@" | tee "$out/$dataset-test-$seed.log"
    done
    if [[ $processes == 1 ]]; then
        "$fedrec" demo --source "$source" --rounds "$chosen" --cohort 32 --clients 4 --server-optimizer "$server" \
            --out "$out/$dataset-processes" --fresh | tee "$out/$dataset-processes.log"
    fi
done
