"""PVT v2 reference outputs from timm (PyTorch), run in its own process: never imports TensorFlow.

For each case: build the timm model at the case's input size, add noise to every parameter (so
no LayerNorm scale is 1 and no bias 0), write the weights as .safetensors in timm's key layout
or in the authors' (whai362/PVT) layout, and save the inputs (RGB in [0, 255]), timm's logits
and, with "features", the four stage outputs of `forward_intermediates` as NHWC. The authors'
layout is checked by mapping it back with timm's own `checkpoint_filter_fn`.

The entry "param_counts" (a list of timm model names) writes param_counts.json, counted on the
meta device (no memory, no initialization).

Usage: python timm_pvt_v2.py OUT_DIR CASES_JSON
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import save_file
from timm.models.pvt_v2 import checkpoint_filter_fn

torch.set_grad_enabled(False)
MEAN, STD = np.array([0.485, 0.456, 0.406], "float32"), np.array([0.229, 0.224, 0.225], "float32")


def perturb(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for parameter in model.parameters():
        noise = torch.randn(parameter.shape, generator=generator)
        parameter.add_(noise * (0.1 if parameter.ndim == 1 else 0.05))


def to_original_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """timm names -> the authors' names (stages numbered from 1, `dwconv.dwconv`)."""
    out = {}
    for key, value in state.items():
        key = re.sub(r"^patch_embed\.", "patch_embed1.", key)
        key = re.sub(r"^stages\.(\d+)\.downsample\.",
                     lambda m: f"patch_embed{int(m.group(1)) + 1}.", key)
        key = re.sub(r"^stages\.(\d+)\.blocks\.(\d+)\.",
                     lambda m: f"block{int(m.group(1)) + 1}.{m.group(2)}.", key)
        key = re.sub(r"^stages\.(\d+)\.norm\.", lambda m: f"norm{int(m.group(1)) + 1}.", key)
        out[key.replace(".mlp.dwconv.", ".mlp.dwconv.dwconv.")] = value
    return out


def run_case(name: str, spec: dict, out_dir: Path) -> None:
    torch.manual_seed(spec["seed"])
    model = timm.create_model(spec["arch"], pretrained=False, num_classes=spec["classes"]).eval()
    perturb(model, spec["seed"])
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    if spec["layout"] == "original":
        original = to_original_layout(state)
        mapped_back = checkpoint_filter_fn(original, model)
        if mapped_back.keys() != state.keys():
            raise AssertionError(f"original-layout writer: {set(mapped_back) ^ set(state)}")
        state = original
    save_file(state, str(out_dir / f"{name}.safetensors"))

    rng = np.random.default_rng(spec["seed"] + 1)
    images = rng.uniform(0, 255, (spec["batch"], *spec["size"], 3)).astype("float32")
    normalized = torch.from_numpy(((images / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2).copy())
    np.save(out_dir / f"{name}.images.npy", images)
    np.save(out_dir / f"{name}.logits.npy", model(normalized).numpy())
    if spec.get("features"):
        maps = model.forward_intermediates(normalized, intermediates_only=True)
        np.savez(out_dir / f"{name}.features.npz",
                 *[m.permute(0, 2, 3, 1).numpy() for m in maps])


def count_parameters(archs: list[str], out_dir: Path) -> None:
    counts = {}
    with torch.device("meta"):
        for arch in archs:
            model = timm.create_model(arch, pretrained=False)
            counts[arch] = sum(p.numel() for p in model.parameters())
    (out_dir / "param_counts.json").write_text(json.dumps(counts))


def main() -> None:
    out_dir = Path(sys.argv[1])
    cases = json.loads(Path(sys.argv[2]).read_text())
    count_parameters(cases.pop("param_counts", []), out_dir)
    for name, spec in cases.items():
        run_case(name, spec, out_dir)
        print(f"reference {name}: ok", flush=True)


if __name__ == "__main__":
    main()
