#!/usr/bin/env bash
# Installs the Debian packages fedrec builds against, when they are missing, and says so.
# Sourced or run by scripts/test.sh and scripts/demo.sh; safe to run again (a no-op when all are there).
set -euo pipefail

packages=(pkg-config libsodium-dev libgfshare-dev libopenblas-dev libfaiss-dev)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done

if ((${#missing[@]} > 0)); then
    echo "fedrec: installing missing system packages: ${missing[*]}"
    if [[ $(id -u) -eq 0 ]]; then sudo=(); else sudo=(sudo); fi
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    echo "fedrec: installed ${missing[*]}"
fi

if ! command -v swift >/dev/null 2>&1; then
    echo "fedrec: 'swift' is not on PATH; install Swift 6.3 (https://swift.org/install) and retry" >&2
    exit 1
fi
