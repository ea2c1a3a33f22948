#!/usr/bin/env bash
# The fedrec demo on a fresh Debian machine with Swift 6.3: installs what is missing, builds the `fedrec`
# command (release) and runs `fedrec demo`: imports the bundled MovieLens latest-small data, creates keys,
# starts one coordinator and N client processes on this host (every user a virtual client, updates sealed
# end to end over gRPC on 127.0.0.1), trains federated rounds with per-round progress, stops the processes,
# evaluates the aggregated model per fedrec-eval-v1 and prints a top-10 recall for one user, with titles.
# Everything it writes goes under runs/demo/ (git-ignored). Arguments go to `fedrec demo`, e.g.
# `scripts/demo.sh --clients 8 --rounds 20` or `scripts/demo.sh --fresh`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-deps.sh

swift build -c release --product fedrec
export OPENBLAS_NUM_THREADS=1
exec .build/release/fedrec demo --out runs/demo "$@"
