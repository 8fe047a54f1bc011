"""Multiply-accumulates and parameter counts from PyTorch, run in its own process (no TensorFlow).

For each case: build the timm model with random weights, run one image through it under
`torch.utils.flop_counter.FlopCounterMode` and record half its FLOP count (the counter counts a
multiply-accumulate as 2 FLOPs) and the parameter count. timm's fused attention is switched
off: on CPU, scaled_dot_product_attention runs a kernel the counter has no formula for, so
Q K^T and attention x V would count zero; the unfused path is the same products as matmuls.

Usage: python flop_counts.py OUT_DIR CASES_JSON  (CASES_JSON: {name: {"timm": model name,
"size": [height, width]}}); writes OUT_DIR/flop_counts.json {name: {"macs": .., "params": ..}}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

torch.set_grad_enabled(False)
timm.layers.set_fused_attn(False)


def count(spec: dict) -> dict:
    with torch.device("meta"):  # shapes only: no weight is initialized or read
        model = timm.create_model(spec["timm"], pretrained=False).eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(1, 3, *spec["size"], device="meta"))
    flops = counter.get_total_flops()
    assert flops % 2 == 0, flops
    return {"macs": flops // 2, "params": sum(p.numel() for p in model.parameters())}


def main() -> None:
    out_dir = Path(sys.argv[1])
    cases = json.loads(Path(sys.argv[2]).read_text())
    results = {}
    for name, spec in cases.items():
        results[name] = count(spec)
        print(f"reference {name}: {results[name]}", flush=True)
    (out_dir / "flop_counts.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
