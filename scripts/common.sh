# Shared by the quality scripts (sourced, not run): the `fedrec` binary they drive and the validation-curve
# summary they choose a setting from.

# Sets `fedrec` to FEDREC_BINARY when given (an already built binary), else installs what is missing and
# builds the release binary.
select_fedrec_binary() {
    if [[ -n "${FEDREC_BINARY:-}" ]]; then
        # The scripts cd to the repository first: a relative path is the caller's, from where they started.
        fedrec="$FEDREC_BINARY"
        [[ "$fedrec" == /* ]] || fedrec="$(cd "${OLDPWD:-.}" && realpath "$FEDREC_BINARY")"
    else
        scripts/ensure-deps.sh
        swift build -c release --product fedrec
        fedrec=".build/release/fedrec"
    fi
}

# Reads `fedrec simulate` validation logs on stdin and prints "NAME ROUNDS MEAN" for every evaluated round:
# the mean validation Recall@20 over the logs (seeds) at that round count.
mean_validation_by_round() {
    awk -v name="$1" '/validation R@20/ { n = $2 + 1; s[n] += $7; c[n]++ }
        END { for (n in s) printf "%s %d %.5f\n", name, n, s[n] / c[n] }'
}

# Background runs started by a script, as "PID:LOG". `wait_for_runs` waits for every one and stops the script,
# naming the log, if any failed (a bare `wait` would go on with the survivors' figures).
runs=()
wait_for_runs() {
    local run failed=0
    for run in "${runs[@]}"; do
        if ! wait "${run%%:*}"; then
            echo "error: a run failed; see ${run#*:}" >&2
            failed=1
        fi
    done
    runs=()
    return "$failed"
}
