"""Reference outputs of timm's MViT v2 (PyTorch), run in its own process: never imports
TensorFlow.

For each case: build a timm MultiScaleVit (a registered model, or a small MultiScaleVitCfg),
perturb every parameter (relative-position tables, pooling convolutions, class token and norm
scales included), write its state dict as a timm-layout .safetensors, and save the inputs, the
logits and `forward_intermediates(norm=True)` (the four stage maps, NHWC). A case whose
eval_size differs from its train_size is evaluated by a model built at eval_size that loads the
state through timm's checkpoint filter, which resamples the relative-position tables.

Also counts the parameters of timm's models named in "count", built on the meta device (no
memory, no time), with their default class counts.

Usage: python timm_mvit_v2.py OUT_DIR CASES_JSON
CASES_JSON: {"cases": {name: spec}, "count": [timm model names]}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import save_file
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models.mvitv2 import MultiScaleVit, MultiScaleVitCfg, checkpoint_filter_fn

torch.set_grad_enabled(False)


def build(spec: dict, size: int) -> torch.nn.Module:
    if "timm" in spec:
        return timm.create_model(spec["timm"], img_size=size,
                                 num_classes=spec["classes"]).eval()
    cfg = MultiScaleVitCfg(**{k: tuple(v) if isinstance(v, list) else v
                              for k, v in spec["cfg"].items()})
    return MultiScaleVit(cfg, img_size=size, num_classes=spec["classes"]).eval()


def perturb(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for parameter in model.parameters():
        noise = torch.randn(parameter.shape, generator=generator)
        parameter.add_(noise * (0.1 if parameter.ndim == 1 else 0.05))


def run_case(name: str, spec: dict, out_dir: Path) -> None:
    torch.manual_seed(spec["seed"])
    model = build(spec, spec["train_size"])
    perturb(model, spec["seed"])
    state = model.state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(out_dir / f"{name}.safetensors"))
    evaluated = model
    if spec["eval_size"] != spec["train_size"]:
        evaluated = build(spec, spec["eval_size"])
        evaluated.load_state_dict(checkpoint_filter_fn(dict(state), evaluated))

    rng = np.random.default_rng(spec["seed"] + 1)
    size = spec["eval_size"]
    images = rng.uniform(0, 255, (spec["batch"], size, size, 3)).astype("float32")
    mean = np.asarray(IMAGENET_DEFAULT_MEAN, "float32")
    std = np.asarray(IMAGENET_DEFAULT_STD, "float32")
    normalized = torch.from_numpy(((images / 255.0 - mean) / std).transpose(0, 3, 1, 2).copy())
    np.save(out_dir / f"{name}.images.npy", images)
    np.save(out_dir / f"{name}.logits.npy", evaluated(normalized).numpy())
    stages = evaluated.forward_intermediates(normalized, norm=True, intermediates_only=True)
    np.savez(out_dir / f"{name}.features.npz",
             *[stage.permute(0, 2, 3, 1).numpy() for stage in stages])


def count(names: list[str]) -> dict[str, dict[str, int]]:
    counts = {}
    for name in names:
        with torch.device("meta"):
            model = timm.create_model(name)
        counts[name] = {"parameters": sum(p.numel() for p in model.parameters()),
                        "classes": model.num_classes}
    return counts


def main() -> None:
    out_dir = Path(sys.argv[1])
    spec = json.loads(Path(sys.argv[2]).read_text())
    for name, case in spec.get("cases", {}).items():
        run_case(name, case, out_dir)
        print(f"reference {name}: ok", flush=True)
    (out_dir / "counts.json").write_text(json.dumps(count(spec.get("count", []))))


if __name__ == "__main__":
    main()
