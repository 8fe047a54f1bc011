"""Reference outputs from timm (PyTorch), run in its own process: never imports TensorFlow.

For each case: build a timm model (ViT, hybrid ResNet+ViT or MLP-Mixer), perturb every
parameter (norm scales away from 1, biases away from 0, tokens away from their init), write the
weights in the requested upstream layout, and save the inputs and timm's logits. ViT and hybrid
.npz files are checked by loading them back with timm's own npz reader before they are used
(timm has no Mixer npz reader).

Numerics: a case with "upstream_numerics" runs timm with the JAX originals' formulas patched in
(tanh-GELU, GroupNorm eps 1e-6, kernels standardized as (w - mean) / (std + 1e-5)); its
`<case>.timm_logits.npy` holds timm's stock numerics on the same weights, for the gap.

Usage: python timm_models.py OUT_DIR CASES_JSON  (CASES_JSON: {name: spec}; tests/parity_cases.py)
"""

from __future__ import annotations

import json
import sys
import types
from functools import partial
from pathlib import Path

import numpy as np
import scipy.ndimage
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.layers import StdConv2dSame
from timm.layers.padding import pad_same
from timm.models.swin_transformer import checkpoint_filter_fn as swin_filter
from timm.models.vision_transformer import _load_weights

torch.set_grad_enabled(False)


def perturb(model: torch.nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for parameter in model.parameters():
        noise = torch.randn(parameter.shape, generator=generator)
        scale = 0.1 if parameter.ndim == 1 else 0.05
        parameter.add_(noise * scale)


def upstream_std_conv(self, x):
    """The JAX original's weight standardization: (w - mean) / (std + 1e-5) over (in, H, W)."""
    if self.same_pad:
        x = pad_same(x, self.kernel_size, self.stride, self.dilation)
    w = self.weight
    mean = w.mean(dim=(1, 2, 3), keepdim=True)
    std = w.std(dim=(1, 2, 3), keepdim=True, unbiased=False)
    return F.conv2d(x, (w - mean) / (std + 1e-5), self.bias, self.stride, self.padding,
                    self.dilation, self.groups)


def use_upstream_numerics(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, StdConv2dSame):
            module.forward = types.MethodType(upstream_std_conv, module)
        elif isinstance(module, torch.nn.GroupNorm):
            module.eps = 1e-6


def build(spec: dict, size, stock: bool = False) -> torch.nn.Module:
    """The case's model; `stock=True`: timm's own numerics whatever the case asks for."""
    upstream = spec.get("upstream_numerics") and not stock
    kwargs = dict(num_classes=spec["classes"])
    if spec["family"] != "mixer":
        kwargs["img_size"] = tuple(size)
    if spec["family"] == "swin" and spec.get("window"):
        kwargs["window_size"] = spec["window"]
    if upstream or (spec.get("activation") == "gelu_tanh" and not stock):
        kwargs["act_layer"] = partial(torch.nn.GELU, approximate="tanh")
    if spec.get("pooling") == "map":
        kwargs.update(global_pool="map", class_token=False)
    model = timm.create_model(spec["arch"], pretrained=False, **kwargs).eval()
    if upstream:
        use_upstream_numerics(model)
    return model


def hybrid_stem_to_google(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """timm ResNetV2 stem -> `conv_root`, `gn_root`, `block{s}/unit{u}/{conv,gn}{1,2,3,_proj}`."""
    out = {}
    for key, value in state.items():
        if not key.startswith("patch_embed.backbone."):
            continue
        name = key[len("patch_embed.backbone."):].replace("stem.", "")
        leaf = {"weight": "scale", "bias": "bias"}[name.rsplit(".", 1)[1]]
        if name.startswith("conv."):
            out["conv_root/kernel"] = value.transpose(2, 3, 1, 0)
        elif name.startswith("norm."):
            out[f"gn_root/{leaf}"] = value
        else:  # stages.S.blocks.U.<module>.<leaf>
            _, stage, _, unit, *module, _ = name.split(".")
            prefix = f"block{int(stage) + 1}/unit{int(unit) + 1}"
            module = ".".join(module)
            conv = {"conv1": "conv1", "conv2": "conv2", "conv3": "conv3",
                    "downsample.conv": "conv_proj"}.get(module)
            if conv:
                out[f"{prefix}/{conv}/kernel"] = value.transpose(2, 3, 1, 0)
            else:
                norm = {"norm1": "gn1", "norm2": "gn2", "norm3": "gn3",
                        "downsample.norm": "gn_proj"}[module]
                out[f"{prefix}/{norm}/{leaf}"] = value
    return out


def mixer_to_google_npz(model: torch.nn.Module) -> dict[str, np.ndarray]:
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    out = {
        "stem/kernel": state["stem.proj.weight"].transpose(2, 3, 1, 0),
        "stem/bias": state["stem.proj.bias"],
        "pre_head_layer_norm/scale": state["norm.weight"],
        "pre_head_layer_norm/bias": state["norm.bias"],
        "head/kernel": state["head.weight"].T,
        "head/bias": state["head.bias"],
    }
    for i in range(len(model.blocks)):
        b, t = f"MixerBlock_{i}", f"blocks.{i}"
        for k, norm in enumerate(("norm1", "norm2")):
            out[f"{b}/LayerNorm_{k}/scale"] = state[f"{t}.{norm}.weight"]
            out[f"{b}/LayerNorm_{k}/bias"] = state[f"{t}.{norm}.bias"]
        for ours, theirs in (("token_mixing", "mlp_tokens"), ("channel_mixing", "mlp_channels")):
            for k in range(2):
                out[f"{b}/{ours}/Dense_{k}/kernel"] = state[f"{t}.{theirs}.fc{k + 1}.weight"].T
                out[f"{b}/{ours}/Dense_{k}/bias"] = state[f"{t}.{theirs}.fc{k + 1}.bias"]
    return out


def to_google_npz(model: torch.nn.Module) -> dict[str, np.ndarray]:
    """timm state -> the google-research/vision_transformer .npz names and layouts."""
    if isinstance(model, timm.models.MlpMixer):
        return mixer_to_google_npz(model)
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    dim = state["patch_embed.proj.weight"].shape[0]
    heads = model.blocks[0].attn.num_heads
    out = {
        **hybrid_stem_to_google(state),
        "embedding/kernel": state["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
        "embedding/bias": state["patch_embed.proj.bias"],
        "Transformer/posembed_input/pos_embedding": state["pos_embed"],
        "Transformer/encoder_norm/scale": state["norm.weight"],
        "Transformer/encoder_norm/bias": state["norm.bias"],
        "head/kernel": state["head.weight"].T,
        "head/bias": state["head.bias"],
    }
    if "cls_token" in state:
        out["cls"] = state["cls_token"]

    def per_head(weight, bias, prefix):
        out[f"{prefix}/kernel"] = weight.T.reshape(dim, heads, -1)
        out[f"{prefix}/bias"] = bias.reshape(heads, -1)

    for i in range(len(model.blocks)):
        b, t = f"Transformer/encoderblock_{i}", f"blocks.{i}"
        out[f"{b}/LayerNorm_0/scale"] = state[f"{t}.norm1.weight"]
        out[f"{b}/LayerNorm_0/bias"] = state[f"{t}.norm1.bias"]
        out[f"{b}/LayerNorm_2/scale"] = state[f"{t}.norm2.weight"]
        out[f"{b}/LayerNorm_2/bias"] = state[f"{t}.norm2.bias"]
        qkv_w, qkv_b = state[f"{t}.attn.qkv.weight"], state[f"{t}.attn.qkv.bias"]
        for j, name in enumerate(("query", "key", "value")):
            rows = slice(j * dim, (j + 1) * dim)
            per_head(qkv_w[rows], qkv_b[rows], f"{b}/MultiHeadDotProductAttention_1/{name}")
        out[f"{b}/MultiHeadDotProductAttention_1/out/kernel"] = (
            state[f"{t}.attn.proj.weight"].T.reshape(heads, -1, dim))
        out[f"{b}/MultiHeadDotProductAttention_1/out/bias"] = state[f"{t}.attn.proj.bias"]
        for k in range(2):
            out[f"{b}/MlpBlock_3/Dense_{k}/kernel"] = state[f"{t}.mlp.fc{k + 1}.weight"].T
            out[f"{b}/MlpBlock_3/Dense_{k}/bias"] = state[f"{t}.mlp.fc{k + 1}.bias"]
    if "attn_pool.latent" in state:
        m = "MAPHead_0"
        out[f"{m}/probe"] = state["attn_pool.latent"]
        per_head(state["attn_pool.q.weight"], state["attn_pool.q.bias"],
                 f"{m}/MultiHeadDotProductAttention_0/query")
        kv_w, kv_b = state["attn_pool.kv.weight"], state["attn_pool.kv.bias"]
        per_head(kv_w[:dim], kv_b[:dim], f"{m}/MultiHeadDotProductAttention_0/key")
        per_head(kv_w[dim:], kv_b[dim:], f"{m}/MultiHeadDotProductAttention_0/value")
        out[f"{m}/MultiHeadDotProductAttention_0/out/kernel"] = (
            state["attn_pool.proj.weight"].T.reshape(heads, -1, dim))
        out[f"{m}/MultiHeadDotProductAttention_0/out/bias"] = state["attn_pool.proj.bias"]
        out[f"{m}/LayerNorm_0/scale"] = state["attn_pool.norm.weight"]
        out[f"{m}/LayerNorm_0/bias"] = state["attn_pool.norm.bias"]
        for k in range(2):
            out[f"{m}/MlpBlock_0/Dense_{k}/kernel"] = state[f"attn_pool.mlp.fc{k + 1}.weight"].T
            out[f"{m}/MlpBlock_0/Dense_{k}/bias"] = state[f"attn_pool.mlp.fc{k + 1}.bias"]
    return out


def check_with_timm_reader(path: Path, model: torch.nn.Module, spec: dict) -> None:
    """timm's own npz reader must recover exactly the parameters we wrote."""
    fresh = build(spec, spec["train_size"])
    _load_weights(fresh, str(path))
    expected, loaded = model.state_dict(), fresh.state_dict()
    for key, value in expected.items():
        if not torch.equal(value, loaded[key]):
            raise AssertionError(f"npz writer: {key} differs after timm's _load_weights")


def resize_like_upstream(model_from: torch.nn.Module, model_to: torch.nn.Module) -> None:
    """Copy weights, resizing the position-embedding grid with scipy.ndimage.zoom(order=1),
    the way google-research/vision_transformer fine-tunes at a new resolution."""
    state = model_from.state_dict()
    posemb = state["pos_embed"].numpy()
    prefix = model_from.num_prefix_tokens
    old = model_from.patch_embed.grid_size
    new = model_to.patch_embed.grid_size
    grid = posemb[0, prefix:].reshape(old[0], old[1], -1)
    zoomed = scipy.ndimage.zoom(grid, (new[0] / old[0], new[1] / old[1], 1), order=1)
    state["pos_embed"] = torch.from_numpy(
        np.concatenate([posemb[:, :prefix], zoomed.reshape(1, -1, grid.shape[-1])], axis=1))
    model_to.load_state_dict(state)


def to_microsoft_layout(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """timm Swin state -> the original Microsoft layout: downsampling at the end of stages 0-2,
    `head` without `.fc`, and the stored relative_position_index buffers."""
    out = {}
    for key, value in model.state_dict().items():
        if ".downsample." in key:
            stage = int(key.split(".")[1])
            key = key.replace(f"layers.{stage}.", f"layers.{stage - 1}.", 1)
        out[key.replace("head.fc.", "head.")] = value
    for name, module in model.named_modules():
        if hasattr(module, "relative_position_index"):
            out[f"{name}.relative_position_index"] = module.relative_position_index.clone()
    return out


def run_case(name: str, spec: dict, out_dir: Path) -> None:
    torch.manual_seed(spec["seed"])
    model = build(spec, spec["train_size"])
    perturb(model, spec["seed"])
    if spec["format"] == "npz":
        arrays = to_google_npz(model)
        path = out_dir / f"{name}.npz"
        np.savez(path, **arrays)
        if spec["family"] != "mixer":
            check_with_timm_reader(path, model, spec)
        if spec.get("pre_logits"):
            # The original ImageNet-21k files add pre-logits: Dense(D -> D) + tanh before the
            # head. timm dropped that layer, so the reference applies it by hand below.
            rng = np.random.default_rng(spec["seed"])
            dim = arrays["head/kernel"].shape[0]
            arrays["pre_logits/kernel"] = rng.normal(0, 0.05, (dim, dim)).astype("float32")
            arrays["pre_logits/bias"] = rng.normal(0, 0.1, (dim,)).astype("float32")
            np.savez(path, **arrays)
    else:
        state = to_microsoft_layout(model) if spec["format"] == "microsoft" else model.state_dict()
        save_file({k: v.contiguous() for k, v in state.items()},
                  str(out_dir / f"{name}.safetensors"))

    evaluated = model
    if spec.get("eval_window"):  # Swin weights loaded at another window, the way timm does it
        evaluated = build({**spec, "window": spec["eval_window"]}, spec["eval_size"])
        evaluated.load_state_dict(swin_filter(model.state_dict(), evaluated))
    elif tuple(spec["eval_size"]) != tuple(spec["train_size"]):
        evaluated = build(spec, spec["eval_size"])
        resize_like_upstream(model, evaluated)

    rng = np.random.default_rng(spec["seed"] + 1)
    images = rng.uniform(0, 255, (spec["batch"], *spec["eval_size"], 3)).astype("float32")
    mean, std = np.asarray(spec["mean"], "float32"), np.asarray(spec["std"], "float32")
    normalized = torch.from_numpy(((images / 255.0 - mean) / std).transpose(0, 3, 1, 2).copy())
    if spec.get("pre_logits"):
        features = evaluated.forward_head(evaluated.forward_features(normalized), pre_logits=True)
        hidden = torch.tanh(features @ torch.from_numpy(arrays["pre_logits/kernel"])
                            + torch.from_numpy(arrays["pre_logits/bias"]))
        logits = evaluated.head(hidden)
    else:
        logits = evaluated(normalized)
    np.save(out_dir / f"{name}.images.npy", images)
    np.save(out_dir / f"{name}.logits.npy", logits.numpy())
    if spec.get("upstream_numerics"):  # the same weights under timm's stock numerics
        stock = build(spec, spec["eval_size"], stock=True)
        stock.load_state_dict(evaluated.state_dict())
        np.save(out_dir / f"{name}.timm_logits.npy", stock(normalized).numpy())


def main() -> None:
    out_dir = Path(sys.argv[1])
    cases = json.loads(Path(sys.argv[2]).read_text())
    for name, spec in cases.items():
        run_case(name, spec, out_dir)
        print(f"reference {name}: ok", flush=True)


if __name__ == "__main__":
    main()
