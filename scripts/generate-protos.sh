#!/usr/bin/env bash
# Regenerates Sources/FedRecProtocol/Generated from Sources/FedRecProtocol/Protos with protoc and the
# swift-protobuf / grpc-swift-protobuf plugins built from this package's own dependencies (the versions
# Package.swift resolves to on this machine's mirrors; Package.resolved is kept out of git).
# The generated files are committed; run this only after changing a .proto file.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v protoc >/dev/null 2>&1; then
    echo "protoc is missing: installing the Debian package protobuf-compiler"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq protobuf-compiler
fi

SCRATCH="${SCRATCH:-.build-grpc}"
swift build --scratch-path "$SCRATCH" --product protoc-gen-swift
swift build --scratch-path "$SCRATCH" --product protoc-gen-grpc-swift-2
BIN="$(swift build --scratch-path "$SCRATCH" --show-bin-path)"

PROTOS=Sources/FedRecProtocol/Protos
OUT=Sources/FedRecProtocol/Generated
mkdir -p "$OUT"
protoc "$PROTOS"/*.proto --proto_path="$PROTOS" \
    --plugin=protoc-gen-swift="$BIN/protoc-gen-swift" \
    --plugin=protoc-gen-grpc-swift="$BIN/protoc-gen-grpc-swift-2" \
    --swift_opt=Visibility=Public,UseAccessLevelOnImports=true --swift_out="$OUT" \
    --grpc-swift_opt=Visibility=Public,Client=true,Server=true,UseAccessLevelOnImports=true --grpc-swift_out="$OUT"
echo "generated: $(ls "$OUT")"
