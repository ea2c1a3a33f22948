#!/usr/bin/env bash
# Runs fedrec's test suite on a fresh Debian machine with Swift 6.3: installs what is missing,
# builds once (debug, tests included), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-deps.sh

# The model-file test also loads the file with Python's safetensors + numpy (the README's reader);
# install them when python3 is there and they are not. Without them that one test is skipped.
if command -v python3 >/dev/null 2>&1 && ! python3 -c "import numpy, safetensors" 2>/dev/null; then
    echo "fedrec: installing Python packages numpy and safetensors for the model-file reader test"
    python3 -m pip install --quiet numpy safetensors || echo "fedrec: pip install failed; the Python reader test will be skipped"
fi

swift build --build-tests
swift test --skip-build "$@"
