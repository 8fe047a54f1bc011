"""Swin V2 reference outputs from timm (PyTorch), run in its own process: never imports
TensorFlow.

For each case: build timm's SwinTransformerV2 (a registered model, or the class with a tiny
custom shape), perturb every parameter (block post-norm scales start at 1 instead of timm's 0,
so every residual branch counts), write the weights as timm- or Microsoft-layout .safetensors,
and save random RGB images in [0, 255], timm's logits and, where asked, timm's
`forward_intermediates` (the four stage maps, the last after the final norm; NHWC here).

A case may reuse another case's weights in a model with another window (`weights_from`): the
weights of a window-8 model loaded into a window-16 one, the way timm's `load_state_dict`
does it (every parameter fits: none is window-shaped).

Also written: `params.json`, the parameter and buffer counts of timm's registered models (built
on the meta device, so nothing is allocated), and `<case>.decay.json` where a case asks for it:
the parameters timm's optimizer factory exempts from weight decay, with every parameter's shape.

Usage: python timm_swin_v2.py OUT_DIR CASES_JSON  (cases in tests/test_swin_v2.py)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import save_file
from timm.models.swin_transformer_v2 import SwinTransformerV2
from timm.optim import param_groups_weight_decay
from timm_models import to_microsoft_layout as swin_to_microsoft_layout  # tests/reference/

torch.set_grad_enabled(False)
MEAN = np.asarray((0.485, 0.456, 0.406), "float32")
STD = np.asarray((0.229, 0.224, 0.225), "float32")


def build(spec: dict, window: int) -> torch.nn.Module:
    options = dict(num_classes=spec["classes"], img_size=tuple(spec["size"]), window_size=window,
                   **spec.get("options", {}))
    if "arch" in spec:
        return timm.create_model(spec["arch"], pretrained=False, **options).eval()
    return SwinTransformerV2(**options).eval()


def perturb(model: torch.nn.Module, seed: int, logit_scale_above_clamp: bool) -> None:
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.named_parameters():
        if name.endswith(("norm1.weight", "norm2.weight")):  # timm starts these at 0
            parameter.fill_(1.0)
        noise = torch.randn(parameter.shape, generator=generator)
        parameter.add_(noise * (0.1 if parameter.ndim == 1 else 0.05))
        if logit_scale_above_clamp and name.endswith("logit_scale"):
            parameter[0] = 5.0  # exp(5) > 100: the first head's temperature is clamped to 100


def to_microsoft_layout(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """timm Swin V2 state -> the original release's layout: Swin V1's conversion (downsampling
    at the end of stages 0-2, `head` without `.fc`, the index buffers) plus V2's stored
    coordinate tables."""
    out = swin_to_microsoft_layout(model)
    for name, module in model.named_modules():
        if hasattr(module, "relative_coords_table"):
            out[f"{name}.relative_coords_table"] = module.relative_coords_table.clone()
    return out


def decay_rules(model: torch.nn.Module) -> dict:
    groups = param_groups_weight_decay(model, weight_decay=0.05,
                                       no_weight_decay_list=model.no_weight_decay())
    exempt = {id(p) for group in groups if group["weight_decay"] == 0.0 for p in group["params"]}
    return {"shapes": {name: list(p.shape) for name, p in model.named_parameters()},
            "exempt": sorted(name for name, p in model.named_parameters() if id(p) in exempt)}


def run_case(name: str, spec: dict, out_dir: Path, models: dict) -> None:
    torch.manual_seed(spec["seed"])
    if "weights_from" in spec:
        model = build(spec, spec["window"])
        model.load_state_dict(models[spec["weights_from"]].state_dict())
    else:
        model = build(spec, spec["window"])
        perturb(model, spec["seed"], spec.get("logit_scale_above_clamp", False))
        state = to_microsoft_layout(model) if spec["format"] == "microsoft" \
            else model.state_dict()
        save_file({k: v.contiguous() for k, v in state.items()},
                  str(out_dir / f"{name}.safetensors"))
    models[name] = model

    rng = np.random.default_rng(spec["seed"] + 1)
    images = rng.uniform(0, 255, (spec["batch"], *spec["size"], 3)).astype("float32")
    normalized = torch.from_numpy(((images / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2).copy())
    np.save(out_dir / f"{name}.images.npy", images)
    np.save(out_dir / f"{name}.logits.npy", model(normalized).numpy())
    if spec.get("features"):
        maps = model.forward_intermediates(normalized, norm=True, intermediates_only=True)
        np.savez(out_dir / f"{name}.features.npz",
                 *[m.permute(0, 2, 3, 1).numpy() for m in maps])
    if spec.get("decay"):
        (out_dir / f"{name}.decay.json").write_text(json.dumps(decay_rules(model)))


def count(arch: str) -> dict:
    with torch.device("meta"):
        model = timm.create_model(arch, pretrained=False)
    return {"parameters": sum(p.numel() for p in model.parameters()),
            "buffers": sum(b.numel() for b in model.buffers())}


def main() -> None:
    out_dir = Path(sys.argv[1])
    spec = json.loads(Path(sys.argv[2]).read_text())
    models: dict[str, torch.nn.Module] = {}
    for name, case in spec["cases"].items():
        run_case(name, case, out_dir, models)
        print(f"reference {name}: ok", flush=True)
    counts = {arch: count(arch) for arch in spec.get("count", [])}
    (out_dir / "params.json").write_text(json.dumps(counts))


if __name__ == "__main__":
    main()
