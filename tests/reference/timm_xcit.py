"""XCiT references from timm (PyTorch), run in its own process: never imports TensorFlow.

CASES_JSON has three parts:
- "parity": {name: {"arch", "seed", "classes", "batch", "sizes": [[h, w], ...]}}: a timm model
  with every parameter perturbed and its BatchNorm running statistics moved away from (0, 1),
  saved as <name>.safetensors (timm's state dict as is, `num_batches_tracked` included); for
  each size, <name>.<h>x<w>.images.npy (RGB in [0, 255]), .logits.npy and .features.npy
  (forward_features: every token after the final norm).
- "counts": [timm model name, ...]: counts.json {name: {"parameters", "running_stats"}},
  counted on the meta device (nothing allocated).
- "decay": {name: {"arch", "kwargs"}}: decay.<name>.json {"shapes", "exempt"}: the parameters
  timm's optimizer factory exempts from weight decay (rank <= 1, `.bias`, or matched by the
  model's own `no_weight_decay()`).

Usage: python timm_xcit.py OUT_DIR CASES_JSON  (cases in tests/test_xcit.py)
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
from timm.optim import param_groups_weight_decay

torch.set_grad_enabled(False)


def perturb(model: torch.nn.Module, seed: int) -> None:
    """Noise on every parameter; BatchNorm means off zero and variances in [0.5, 2]."""
    generator = torch.Generator().manual_seed(seed)
    for parameter in model.parameters():
        noise = torch.randn(parameter.shape, generator=generator)
        parameter.add_(noise * (0.1 if parameter.ndim == 1 else 0.05))
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            shape = module.running_mean.shape
            module.running_mean.copy_(torch.randn(shape, generator=generator) * 0.1)
            module.running_var.copy_(0.5 + 1.5 * torch.rand(shape, generator=generator))


def parity(name: str, spec: dict, out_dir: Path) -> None:
    torch.manual_seed(spec["seed"])
    model = timm.create_model(spec["arch"], pretrained=False,
                              num_classes=spec["classes"]).eval()
    perturb(model, spec["seed"])
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(out_dir / f"{name}.safetensors"))
    rng = np.random.default_rng(spec["seed"] + 1)
    mean, std = np.asarray(IMAGENET_DEFAULT_MEAN, "float32"), np.asarray(IMAGENET_DEFAULT_STD,
                                                                          "float32")
    for height, width in spec["sizes"]:
        images = rng.uniform(0, 255, (spec["batch"], height, width, 3)).astype("float32")
        normalized = torch.from_numpy(((images / 255.0 - mean) / std).transpose(0, 3, 1, 2)
                                      .copy())
        features = model.forward_features(normalized)
        stem = out_dir / f"{name}.{height}x{width}"
        np.save(f"{stem}.images.npy", images)
        np.save(f"{stem}.features.npy", features.numpy())
        np.save(f"{stem}.logits.npy", model.forward_head(features).numpy())


def counts(model_names: list[str]) -> dict:
    result = {}
    with torch.device("meta"):
        for model_name in model_names:
            model = timm.create_model(model_name, pretrained=False, num_classes=1000)
            stats = sum(buffer.numel() for key, buffer in model.named_buffers()
                        if key.endswith(("running_mean", "running_var")))
            result[model_name] = {"parameters": sum(p.numel() for p in model.parameters()),
                                  "running_stats": stats}
    return result


def decay(spec: dict) -> dict:
    with torch.device("meta"):
        model = timm.create_model(spec["arch"], pretrained=False, **spec["kwargs"])
    groups = param_groups_weight_decay(model, weight_decay=0.05,
                                       no_weight_decay_list=model.no_weight_decay())
    exempt = {id(p) for group in groups if group["weight_decay"] == 0.0 for p in group["params"]}
    return {"shapes": {key: list(p.shape) for key, p in model.named_parameters()},
            "exempt": sorted(key for key, p in model.named_parameters() if id(p) in exempt)}


def main() -> None:
    out_dir = Path(sys.argv[1])
    cases = json.loads(Path(sys.argv[2]).read_text())
    for name, spec in cases.get("parity", {}).items():
        parity(name, spec, out_dir)
        print(f"reference {name}: ok", flush=True)
    if cases.get("counts"):
        (out_dir / "counts.json").write_text(json.dumps(counts(cases["counts"])))
    for name, spec in cases.get("decay", {}).items():
        (out_dir / f"decay.{name}.json").write_text(json.dumps(decay(spec)))


if __name__ == "__main__":
    main()
