"""Reference CLIP embeddings from open_clip and transformers (PyTorch), run in its own process:
never imports TensorFlow.

Case kinds (tests/parity_cases.py, CLIP_CASES):
- "open_clip": open_clip's `model` with random weights, every parameter perturbed (norm scales
  away from 1, biases away from 0, logit_scale moved), written with open_clip's own key layout
  to <case>.safetensors and read back with open_clip's own loader before use.
- "hf": transformers CLIPModel with the case's CLIPConfig, perturbed the same way, written with
  save_pretrained (safetensors) to <case>/model.safetensors and read back with from_pretrained.
  Both write <case>.images.npy (RGB in [0, 255], NHWC), <case>.token_ids.npy,
  <case>.image_embeddings.npy, <case>.text_embeddings.npy (projected, not normalized) and
  <case>.logit_scale.npy.
- "param_counts": open_clip parameter counts of the case's `models` (built on the meta device,
  so nothing is allocated), written to <case>.json.

Usage: python open_clip_models.py OUT_DIR CASES_JSON
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import open_clip
import torch
from safetensors.torch import save_file

torch.set_grad_enabled(False)

CLIP_MEAN = np.asarray([0.48145466, 0.4578275, 0.40821073], "float32")
CLIP_STD = np.asarray([0.26862954, 0.26130258, 0.27577711], "float32")
START_OF_TEXT, END_OF_TEXT = 49406, 49407


def perturb(model: torch.nn.Module, seed: int) -> None:
    """Add noise to every parameter: vectors (norms, biases, class embedding) by 0.1, matrices
    by 0.02, the scalar logit_scale by 0.5."""
    generator = torch.Generator().manual_seed(seed)
    for parameter in model.parameters():
        noise = torch.randn(parameter.shape, generator=generator)
        scale = {0: 0.5, 1: 0.1}.get(parameter.ndim, 0.02)
        parameter.add_(noise * scale)


def inputs(spec: dict) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, H, W, 3) in [0, 255] and token ids [SOT, words..., EOT, 0...] with the EOT at
    each of the case's positions."""
    rng = np.random.default_rng(spec["seed"] + 1)
    size = spec["image_size"]
    images = rng.uniform(0, 255, (spec["images"], size, size, 3)).astype("float32")
    token_ids = np.zeros((len(spec["eot_positions"]), spec["context_length"]), "int64")
    for row, eot in enumerate(spec["eot_positions"]):
        token_ids[row, 0] = START_OF_TEXT
        token_ids[row, 1:eot] = rng.integers(1, START_OF_TEXT, eot - 1)
        token_ids[row, eot] = END_OF_TEXT
    return images, token_ids


def normalized(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(((images / 255.0 - CLIP_MEAN) / CLIP_STD).transpose(0, 3, 1, 2).copy())


def save_outputs(out_dir: Path, name: str, images, token_ids, image_emb, text_emb, scale):
    np.save(out_dir / f"{name}.images.npy", images)
    np.save(out_dir / f"{name}.token_ids.npy", token_ids.astype("int32"))
    np.save(out_dir / f"{name}.image_embeddings.npy", image_emb.numpy())
    np.save(out_dir / f"{name}.text_embeddings.npy", text_emb.numpy())
    np.save(out_dir / f"{name}.logit_scale.npy", np.float32(scale))


def run_open_clip(name: str, spec: dict, out_dir: Path) -> None:
    torch.manual_seed(spec["seed"])
    model = open_clip.create_model(spec["model"], pretrained=None).eval()
    perturb(model, spec["seed"])
    path = out_dir / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    # The file must mean the same to open_clip's own loader: evaluate the model it loads.
    reloaded = open_clip.create_model(spec["model"], pretrained=None).eval()
    open_clip.load_checkpoint(reloaded, str(path))
    for key, value in model.state_dict().items():
        if not torch.equal(value, reloaded.state_dict()[key]):
            raise AssertionError(f"safetensors writer: {key} differs after open_clip's loader")
    images, token_ids = inputs(spec)
    image_emb = reloaded.encode_image(normalized(images), normalize=False)
    text_emb = reloaded.encode_text(torch.from_numpy(token_ids), normalize=False)
    save_outputs(out_dir, name, images, token_ids, image_emb, text_emb, reloaded.logit_scale.item())


def _features(output) -> torch.Tensor:
    """transformers returns a tensor or, in newer versions, an output with the projection in
    `pooler_output`."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def run_hf(name: str, spec: dict, out_dir: Path) -> None:
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(spec["seed"])
    config = CLIPConfig(**spec["config"])
    model = CLIPModel(config).eval()
    perturb(model, spec["seed"])
    folder = out_dir / name
    model.save_pretrained(folder, safe_serialization=True)
    reloaded = CLIPModel.from_pretrained(folder).eval()
    images, token_ids = inputs(spec)
    image_emb = _features(reloaded.get_image_features(pixel_values=normalized(images)))
    text_emb = _features(reloaded.get_text_features(input_ids=torch.from_numpy(token_ids)))
    save_outputs(out_dir, name, images, token_ids, image_emb, text_emb, reloaded.logit_scale.item())


def run_param_counts(name: str, spec: dict, out_dir: Path) -> None:
    counts = {}
    for variant, model_name in spec["models"].items():
        model = open_clip.create_model(model_name, pretrained=None, device="meta")
        counts[variant] = sum(parameter.numel() for parameter in model.parameters())
    (out_dir / f"{name}.json").write_text(json.dumps(counts))


RUNNERS = {"open_clip": run_open_clip, "hf": run_hf, "param_counts": run_param_counts}


def main() -> None:
    out_dir = Path(sys.argv[1])
    cases = json.loads(Path(sys.argv[2]).read_text())
    for name, spec in cases.items():
        RUNNERS[spec["kind"]](name, spec, out_dir)
        print(f"reference {name}: ok", flush=True)


if __name__ == "__main__":
    main()
