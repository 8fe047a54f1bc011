"""ConvMixer reference outputs from timm (PyTorch), run in its own process: never imports
TensorFlow.

For each model case: build timm's ConvMixer (a registered model, or a custom shape), perturb
every parameter, set every BatchNorm's running statistics to the batch statistics of a
calibration batch and then perturb those too, write the state dict as .safetensors (timm's key
layout, `num_batches_tracked` included), and save the inputs and timm's eval-mode logits.

Why calibrate: with random weights and made-up running statistics a deep ConvMixer's
activations shrink or grow block after block until the logits no longer depend on the image;
statistics measured on real activations keep every block's output near unit scale.

A case {"kind": "param_counts", "models": [timm names]} writes param_counts.json: per model the
parameter count and the BatchNorm running-statistic count, counted on the "meta" device.

Usage: python timm_convmixer.py OUT_DIR CASES_JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors.torch import save_file
from timm.models.convmixer import ConvMixer

torch.set_grad_enabled(False)
MEAN = np.asarray([0.485, 0.456, 0.406], "float32")
STD = np.asarray([0.229, 0.224, 0.225], "float32")
ACTIVATIONS = {"gelu": torch.nn.GELU, "relu": torch.nn.ReLU}


def images(rng: np.random.Generator, batch: int, size) -> np.ndarray:
    """RGB in [0, 255] with structure at the scale of the whole image (a coarse 4x4 pattern,
    upsampled, plus pixel noise): pooled features of pure noise images would all be alike."""
    height, width = size
    coarse = rng.uniform(0, 255, (batch, 4, 4, 3))
    rows = np.minimum(np.arange(height) * 4 // height, 3)
    columns = np.minimum(np.arange(width) * 4 // width, 3)
    smooth = coarse[:, rows][:, :, columns]
    noisy = smooth + rng.uniform(-40, 40, (batch, height, width, 3))
    return np.clip(noisy, 0, 255).astype("float32")


def normalized(pixels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(((pixels / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2).copy())


def build(spec: dict) -> torch.nn.Module:
    if "timm" in spec:
        return timm.create_model(spec["timm"], pretrained=False, num_classes=spec["classes"])
    return ConvMixer(**spec["shape"], num_classes=spec["classes"],
                     act_layer=ACTIVATIONS[spec["activation"]])


def perturb(model: torch.nn.Module, seed: int, calibration: torch.Tensor) -> None:
    generator = torch.Generator().manual_seed(seed)
    for parameter in model.parameters():
        scale = 0.1 if parameter.ndim == 1 else 0.05
        parameter.add_(torch.randn(parameter.shape, generator=generator) * scale)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: after one batch, that batch's statistics
    model.train()
    model(calibration)
    model.eval()
    for norm in norms:
        norm.momentum = 0.1
        spread = norm.running_var.sqrt()
        norm.running_mean.add_(0.1 * spread * torch.randn(spread.shape, generator=generator))
        norm.running_var.mul_(torch.exp(0.1 * torch.randn(spread.shape, generator=generator)))


def run_case(name: str, spec: dict, out_dir: Path) -> None:
    torch.manual_seed(spec["seed"])
    rng = np.random.default_rng(spec["seed"])
    model = build(spec).eval()
    perturb(model, spec["seed"], normalized(images(rng, 4, spec["size"])))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()},
              str(out_dir / f"{name}.safetensors"))
    pixels = images(rng, spec["batch"], spec["size"])
    np.save(out_dir / f"{name}.images.npy", pixels)
    np.save(out_dir / f"{name}.logits.npy", model(normalized(pixels)).numpy())


def param_counts(models: list[str], out_dir: Path) -> None:
    counts = {}
    with torch.device("meta"):
        for name in models:
            model = timm.create_model(name, pretrained=False, num_classes=1000)
            statistics = sum(buffer.numel() for key, buffer in model.named_buffers()
                             if key.endswith(("running_mean", "running_var")))
            counts[name] = {"params": sum(p.numel() for p in model.parameters()),
                            "statistics": statistics}
    (out_dir / "param_counts.json").write_text(json.dumps(counts))


def main() -> None:
    out_dir = Path(sys.argv[1])
    cases = json.loads(Path(sys.argv[2]).read_text())
    for name, spec in cases.items():
        if spec.get("kind") == "param_counts":
            param_counts(spec["models"], out_dir)
        else:
            run_case(name, spec, out_dir)
        print(f"reference {name}: ok", flush=True)


if __name__ == "__main__":
    main()
