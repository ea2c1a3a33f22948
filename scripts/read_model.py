#!/usr/bin/env python3
"""Print the tensors and metadata of a fedrec model file and check item_embeddings has unit-norm rows.

Usage: python3 scripts/read_model.py MODEL.safetensors
Needs: pip install safetensors numpy
"""
import json
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = sys.argv[1]
    tensors = load_file(path)
    with safe_open(path, framework="numpy") as handle:
        metadata = handle.metadata() or {}
    print(f"{path}: {len(tensors)} tensors")
    for name in sorted(tensors):
        t = tensors[name]
        print(f"  {name:45s} {str(list(t.shape)):16s} {t.dtype}")
    print("metadata:")
    for key in sorted(metadata):
        value = metadata[key]
        if key == "item_ids":
            ids = json.loads(value)
            print(f"  item_ids: {len(ids)} ids, first {ids[:5]}")
        elif key == "configuration":
            print(f"  configuration: {json.dumps(json.loads(value), sort_keys=True)}")
        else:
            print(f"  {key}: {value if len(value) < 200 else value[:200] + '...'}")
    if metadata.get("format") != "fedrec-model":
        print("error: format is not fedrec-model", file=sys.stderr)
        return 1
    embeddings = tensors.get("item_embeddings")
    if embeddings is None:
        print("error: no item_embeddings tensor", file=sys.stderr)
        return 1
    norms = np.linalg.norm(embeddings.astype(np.float64), axis=1)
    worst = float(np.max(np.abs(norms - 1))) if norms.size else 0.0
    print(f"item_embeddings: {embeddings.shape[0]} rows, max |norm - 1| = {worst:.2e}")
    if worst > 1e-4:
        print("error: item_embeddings rows are not unit-norm", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
