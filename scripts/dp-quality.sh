#!/usr/bin/env bash
# Reproduces the README's differential-privacy figures (fedrec-eval-v1): DP-FedAdam with clip norm 0.5,
# Poisson cohorts of the default expected size 32, delta = 1 / users and the federated defaults otherwise, for
# each data set and noise multiplier z in 1.0, 0.8 and 0.5, within the privacy budget (epsilon <= 8):
#   1. runs the validation curve of each candidate setting and seed (clients hold train minus the validation
#      slice) for as many rounds as the budget allows (`simulate --target-epsilon` without `--rounds`),
#      evaluated every 50 rounds and at the last;
#   2. chooses the candidate and round count with the best mean validation Recall@20 over the seeds (never
#      test);
#   3. trains on the full training set with that choice (same seeds) and reports the test Recall@20 and the
#      epsilon spent.
# Candidates: server learning rate 0.005 (the default) or 0.02, each with FedSGD clients (one step on all of a
# client's examples, the federated default) or local mini-batches of 8 (about n / 8 local steps, one epoch).
# `--candidates "name:options;name:options"` replaces them. Runs of one step go side by side (one BLAS thread
# each). Writes under runs/dp-quality/; the summary is runs/dp-quality/summary.txt. Choosing on validation is
# done outside the privacy accounting, as usual.
#   [FEDREC_BINARY=path/to/fedrec] scripts/dp-quality.sh [--seeds "1 2 3"] [--budget 8] [--datasets "ml-100k ml-latest-small"]
#                         [--multipliers "1.0 0.8 0.5"] [--candidates "name:options;..."] [extra fedrec simulate options...]
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="1 2 3" budget=8 datasets="ml-100k ml-latest-small" multipliers="1.0 0.8 0.5"
candidates=("fedadam:--server-lr 0.005" "fedadam-lr02:--server-lr 0.02"
    "local8:--server-lr 0.005 --local-batch 8" "local8-lr02:--server-lr 0.02 --local-batch 8")
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seeds) seeds="$2"; shift 2 ;;
        --budget) budget="$2"; shift 2 ;;
        --datasets) datasets="$2"; shift 2 ;;
        --multipliers) multipliers="$2"; shift 2 ;;
        --candidates) IFS=';' read -r -a candidates <<< "$2"; shift 2 ;;
        *) break ;;
    esac
done
if [[ ${#candidates[@]} -eq 0 ]]; then
    echo "dp-quality.sh: --candidates needs at least one name:options entry" >&2
    exit 2
fi
for candidate in "${candidates[@]}"; do
    if [[ "$candidate" != ?*:* ]]; then
        echo "dp-quality.sh: --candidates entry '$candidate' is not name:options" >&2
        exit 2
    fi
done
source scripts/common.sh
select_fedrec_binary
shared="${FEDREC_SHARED:-../shared}"
out="runs/dp-quality"
mkdir -p "$out"
export OPENBLAS_NUM_THREADS=1
privacy=(--clip-norm 0.5 --target-epsilon "$budget")
summary="$out/summary.txt"
echo "data set  z  choice  rounds  mean validation R@20  test R@20 per seed (mean)  epsilon" > "$summary"
for dataset in $datasets; do
    source="$shared/data/$dataset"
    if [[ ! -d "$source" ]]; then
        echo "skipping $dataset: $source not found"
        continue
    fi
    "$fedrec" data import "$source" --out "$out/$dataset" --force > /dev/null
    for z in $multipliers; do
        name="$dataset-z$z"
        echo "== $name (budget epsilon $budget)"
        # Without --rounds, a budgeted run has as many rounds as the budget allows.
        for candidate in "${candidates[@]}"; do
            read -r -a settings <<< "${candidate#*:}"
            for seed in $seeds; do
                "$fedrec" simulate --dataset "$out/$dataset" --fold validation --eval-every 50 \
                    --noise-multiplier "$z" "${privacy[@]}" "${settings[@]}" --seed "$seed" "$@" \
                    > "$out/$name-${candidate%%:*}-validation-$seed.log" &
                runs+=("$!:$out/$name-${candidate%%:*}-validation-$seed.log")
            done
        done
        wait_for_runs
        # Mean validation Recall@20 per candidate and evaluated round over the seeds; the best (ties: fewer
        # rounds).
        : > "$out/$name-choices.txt"
        # Only this invocation's seeds: logs of other seeds, budgets or options left by earlier runs stay out.
        for candidate in "${candidates[@]}"; do
            logs=()
            for seed in $seeds; do logs+=("$out/$name-${candidate%%:*}-validation-$seed.log"); done
            tail -n 3 "${logs[@]}"
            cat "${logs[@]}" | mean_validation_by_round "${candidate%%:*}" >> "$out/$name-choices.txt"
        done
        read -r choice chosen score < <(sort -k3,3nr -k2,2n "$out/$name-choices.txt" | head -1)
        for candidate in "${candidates[@]}"; do
            [[ "${candidate%%:*}" == "$choice" ]] && read -r -a settings <<< "${candidate#*:}"
        done
        echo "$name: best mean validation Recall@20 $score with $choice (${settings[*]}) at $chosen rounds"
        for seed in $seeds; do
            "$fedrec" simulate --dataset "$out/$dataset" --fold test --rounds "$chosen" --eval-every "$chosen" \
                --noise-multiplier "$z" "${privacy[@]}" "${settings[@]}" --seed "$seed" "$@" \
                > "$out/$name-test-$seed.log" &
            runs+=("$!:$out/$name-test-$seed.log")
        done
        wait_for_runs
        tests=() epsilon=""
        for seed in $seeds; do
            line=$(grep "test R@20" "$out/$name-test-$seed.log" | tail -1)
            echo "seed $seed: $line"
            tests+=("$(awk '{print $7}' <<< "$line")")
            epsilon=$(awk '{for (i = 1; i < NF; i++) if ($i == "epsilon") print $(i + 1)}' <<< "$line")
        done
        mean=$(printf '%s\n' "${tests[@]}" | awk '{s += $1} END {printf "%.4f", s / NR}')
        echo "$dataset  $z  $choice  $chosen  $score  ${tests[*]} ($mean)  $epsilon" | tee -a "$summary"
    done
done
cat "$summary"
