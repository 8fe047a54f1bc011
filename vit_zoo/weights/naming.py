"""Helpers shared by the per-family key layouts (vit_layout, mixer_layout, ...)."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np

PREFIXES = ("opt/target/", "params/")


def strip_prefix(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for prefix in PREFIXES:
        if any(key.startswith(prefix) for key in raw):
            return {key[len(prefix):] if key.startswith(prefix) else key: value
                    for key, value in raw.items()}
    return raw


class Taker:
    """Moves arrays from upstream names to ours, remembering which upstream keys were used."""

    def __init__(self, raw: dict[str, np.ndarray]):
        self.raw = raw
        self.used: set[str] = set()
        self.out: dict[str, np.ndarray] = {}

    def has(self, key: str) -> bool:
        return key in self.raw

    def take(self, key: str) -> np.ndarray:
        self.used.add(key)
        return self.raw[key]

    def move(self, source: str, target: str, transform=None) -> None:
        if source in self.raw:
            value = self.take(source)
            self.out[target] = transform(value) if transform else value

    def unknown(self) -> list[str]:
        return sorted(set(self.raw) - self.used)


def google_norm(taker: Taker, source: str, target: str) -> None:
    taker.move(f"{source}/scale", f"{target}/gamma", np.ravel)  # older files: (1, 1, 1, C)
    taker.move(f"{source}/bias", f"{target}/beta", np.ravel)


def google_dense(taker: Taker, source: str, target: str) -> None:
    taker.move(f"{source}/kernel", f"{target}/kernel")
    taker.move(f"{source}/bias", f"{target}/bias")



#: (pattern, replacement) pairs applied in order to a timm key, giving a dotted vit_zoo path.
ModuleRules = list[tuple[re.Pattern, str | Callable[[re.Match], str]]]


def timm_to_keras(
    raw: dict[str, np.ndarray], rules: ModuleRules, unsupported: dict[str, str]
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Rename timm parameters with `rules`, then map PyTorch leaves to Keras variables:
    Conv2d OIHW -> HWIO kernel, Linear (out, in) -> (in, out) kernel, norm weight/bias ->
    gamma/beta. Keys containing an `unsupported` marker, and leaves no rule explains, are
    returned as unknown."""
    out, unknown = {}, []
    # A module whose weight is a vector is a normalization layer: its bias becomes `beta`.
    norms = {key[: -len(".weight")] for key, value in raw.items()
             if key.endswith(".weight") and value.ndim == 1}
    for key, value in raw.items():
        if any(marker in key for marker in unsupported):
            unknown.append(key)
            continue
        is_norm = key.rpartition(".")[0] in norms
        path = key
        for pattern, replacement in rules:
            path = pattern.sub(replacement, path)
        if "." not in path:  # module-less parameters (cls_token, pos_embed), renamed by a rule
            out[path] = value
            continue
        module, _, leaf = path.rpartition(".")
        module = module.replace(".", "/")
        if leaf == "weight" and value.ndim == 4:
            out[f"{module}/kernel"] = value.transpose(2, 3, 1, 0)
        elif leaf == "weight" and value.ndim == 2:
            out[f"{module}/kernel"] = value.T
        elif leaf == "weight" and value.ndim == 1:  # LayerNorm / GroupNorm scale
            out[f"{module}/gamma"] = value
        elif leaf == "bias" and is_norm:
            out[f"{module}/beta"] = value
        elif leaf in ("bias", "gamma"):
            out[f"{module}/{leaf}"] = value
        else:
            unknown.append(key)
    return out, sorted(unknown)
