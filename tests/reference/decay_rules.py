"""Which parameters the references exempt from weight decay, run in its own process (PyTorch).

- timm: `timm.optim.param_groups_weight_decay` with the model's own `no_weight_decay()` list,
  the grouping timm's `create_optimizer_v2` applies (rank <= 1, a `.bias`, or in the list).
- open_clip: the rule of open_clip_train's main.py, which the library does not export as a
  function: a parameter is exempt if `p.ndim < 2` or its name contains "bn", "ln", "bias" or
  "logit_scale".

Writes OUT_DIR/<case>.json: {"shapes": {name: shape}, "exempt": [name, ...]}.

Usage: python decay_rules.py OUT_DIR CASES_JSON  (cases in tests/test_structure.py)
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import open_clip
import timm
import torch
from timm.optim import param_groups_weight_decay


def timm_exempt(model: torch.nn.Module) -> set[str]:
    groups = param_groups_weight_decay(model, weight_decay=0.05,
                                       no_weight_decay_list=model.no_weight_decay()
                                       if hasattr(model, "no_weight_decay") else ())
    exempt_ids = {id(p) for group in groups if group["weight_decay"] == 0.0
                  for p in group["params"]}
    return {name for name, p in model.named_parameters() if id(p) in exempt_ids}


def open_clip_exempt(model: torch.nn.Module) -> set[str]:
    def exclude(name: str, p: torch.Tensor) -> bool:
        return p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name \
            or "logit_scale" in name
    return {name for name, p in model.named_parameters() if exclude(name, p)}


def run_case(spec: dict) -> tuple[torch.nn.Module, set[str]]:
    if spec["kind"] == "timm":
        model = timm.create_model(spec["arch"], pretrained=False, **spec["kwargs"])
        return model, timm_exempt(model)
    if spec["kind"] == "timm_class":  # where a registered name fixes what we want smaller
        module = importlib.import_module(f"timm.models.{spec['module']}")
        model = getattr(module, spec["class"])(**spec["kwargs"])
        return model, timm_exempt(model)
    model = open_clip.CLIP(embed_dim=spec["embed_dim"], vision_cfg=spec["vision"],
                           text_cfg=spec["text"])
    return model, open_clip_exempt(model)


def main() -> None:
    out_dir = Path(sys.argv[1])
    cases = json.loads(Path(sys.argv[2]).read_text())
    for name, spec in cases.items():
        model, exempt = run_case(spec)
        shapes = {n: list(p.shape) for n, p in model.named_parameters()}
        (out_dir / f"{name}.json").write_text(json.dumps({"shapes": shapes,
                                                          "exempt": sorted(exempt)}))
        print(f"reference {name}: ok", flush=True)


if __name__ == "__main__":
    main()
