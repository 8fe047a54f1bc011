"""Which model we are looking at, how its tokens lie on the image, and its attention.

Everything here reads a built vit_zoo model by its layer names and classes (the same contract
`vit_zoo.with_intermediates` relies on) and returns NumPy arrays; the math in the sibling
modules never sees Keras.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from vit_zoo.layers.embedding import PatchEmbedding, PositionEmbedding
from vit_zoo.layers.mixer import MixerBlock
from vit_zoo.layers.swin import SwinBlock
from vit_zoo.models.common import CallTap

#: What `family` answers.
FAMILIES = ("vit", "swin", "mixer")


@dataclass(frozen=True)
class TokenLayout:
    """How a ViT's token sequence maps onto its input image.

    num_prefix_tokens: tokens before the patches (1: class token; 2: DeiT's class and
        distillation tokens; 0: none).
    grid: (rows, columns) of patch tokens.
    cell_size: input pixels per token along (height, width): the image size divided by the
        grid, which for hybrids is the ResNet stem's stride times the patch size.
    query: whose attention summarizes the image: "class" (the class token's row, for models
        that classify from it) or "mean" (the mean of the patch tokens' rows, for models pooled
        by averaging the patch tokens).
    """

    num_prefix_tokens: int
    grid: tuple[int, int]
    cell_size: tuple[float, float]
    query: str = "class"


@dataclass(frozen=True)
class Attention:
    """Attention probabilities of every block, (B, heads, N, N) each, and their token layout."""

    layers: list[np.ndarray]
    layout: TokenLayout


def vision_model(model: keras.Model) -> keras.Model:
    """The image model to inspect: a CLIP model's image tower, else the model itself."""
    return getattr(model, "image_encoder", model)


def family(model: keras.Model) -> str:
    """"vit" (plain, DeiT, hybrid, CLIP image tower), "swin" or "mixer"; a ValueError for a
    model that is none of them."""
    model = vision_model(model)
    layers = {layer.name: layer for layer in model.layers}
    if any(isinstance(layer, SwinBlock) for layer in layers.values()):
        return "swin"
    if any(isinstance(layer, MixerBlock) for layer in layers.values()):
        return "mixer"
    if "patch_embed" in layers and "pos_embed" in layers:
        return "vit"
    raise ValueError(f"{model.name} is not a vit_zoo ViT, Swin or Mixer model: there is nothing "
                     "here to inspect.")


def require_attention(model: keras.Model) -> str:
    """The model's family, or a ValueError saying why a Mixer has nothing to show."""
    kind = family(model)
    if kind == "mixer":
        raise ValueError(
            f"{vision_model(model).name} is an MLP-Mixer: it mixes tokens with MLPs and has no "
            "attention, so attention rollout, attention maps and attention distance do not "
            "exist for it (patch_embedding_filters does).")
    return kind


def require_global_attention(model: keras.Model, what: str) -> None:
    """A ValueError unless the model is a ViT-like model with global self-attention."""
    if require_attention(model) == "swin":
        raise ValueError(
            f"{what} needs global self-attention over one token grid; Swin attends inside "
            "local windows on a grid that shrinks stage by stage. Use "
            "attention_maps(model, images, layer=(stage, block)) for its window attention.")


def token_grid(model: keras.Model, image_size: tuple[int, int]) -> tuple[int, int]:
    """The patch-token grid of a ViT-like model for images of `image_size` (height, width)."""
    layers = {layer.name: layer for layer in vision_model(model).layers}
    stride = layers["stem"].stride if "stem" in layers else 1
    patch = layers["patch_embed"].patch_size
    # The stem pads "SAME" (output ceil(size / stride)); the patches are "VALID".
    return tuple(-(-int(side) // stride) // patch for side in image_size)


def token_layout(model: keras.Model, image_size: tuple[int, int]) -> TokenLayout:
    """The TokenLayout of a ViT-like model (ViT, DeiT, hybrid, CLIP image tower)."""
    layers = {layer.name: layer for layer in vision_model(model).layers}
    grid = token_grid(model, image_size)
    if min(grid) < 1:
        raise ValueError(f"Images of {image_size[0]}x{image_size[1]} px give no patch tokens.")
    prefix = layers["pos_embed"].num_prefix_tokens
    pool = layers.get("pool")
    averaged = prefix == 0 or getattr(pool, "method", None) == "avg"
    return TokenLayout(
        num_prefix_tokens=prefix,
        grid=grid,
        cell_size=(image_size[0] / grid[0], image_size[1] / grid[1]),
        query="mean" if averaged else "class",
    )


def images_for(model: keras.Model, images) -> np.ndarray:
    """`images` as a float32 batch (B, H, W, 3), checked against the model's input size."""
    images = np.asarray(images, dtype="float32")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be RGB (B, height, width, 3) or (height, width, 3), got "
                         f"shape {images.shape}.")
    expected = vision_model(model).input_shape[1:3]
    for side, want, have in zip(("height", "width"), expected, images.shape[1:3]):
        if want is not None and want != have:
            raise ValueError(f"The model takes images of {expected[0]}x{expected[1]} px; these "
                             f"have {side} {have}. Resize them first (vit_zoo.inspect.load_image "
                             "applies the model's evaluation resize).")
    return images


def collect_attention(model: keras.Model, images, batch_size: int = 8) -> Attention:
    """Run a ViT-like model on `images` (RGB in [0, 255], the model's input size) and return
    every block's attention probabilities with the token layout.

    The probabilities come from `vit_zoo.with_intermediates`, pruned to the attention outputs so
    that nothing after the last block is computed.
    """
    from vit_zoo.models.vit import with_intermediates

    require_global_attention(model, "This")
    vision = vision_model(model)
    images = images_for(model, images)
    intermediates = with_intermediates(vision)
    outputs = {name: tensor for name, tensor in intermediates.output.items()
               if name.startswith("attention_")}
    probe = keras.Model(intermediates.inputs, outputs, name=f"{vision.name}_attention")
    arrays = run_batches(probe, images, batch_size)
    layers = [arrays[f"attention_{index}"] for index in range(len(arrays))]
    return Attention(layers, token_layout(vision, images.shape[1:3]))


def run_batches(probe: keras.Model, images: np.ndarray, batch_size: int):
    """`probe` called eagerly on `images` in batches, outputs as NumPy (concatenated). Eager
    calls rather than `predict`: an analysis model is run once or twice, and compiling it into
    a graph first would cost more than it saves."""
    results = []
    for start in range(0, len(images), batch_size):
        outputs = probe([images[start:start + batch_size]], training=False)
        results.append(keras.tree.map_structure(keras.ops.convert_to_numpy, outputs))
    return keras.tree.map_structure(lambda *parts: np.concatenate(parts), *results)


def swin_blocks(model: keras.Model) -> dict[tuple[int, int], SwinBlock]:
    """(stage, block) -> SwinBlock of a Swin model, in order."""
    blocks = {}
    for layer in vision_model(model).layers:
        if isinstance(layer, SwinBlock):
            stage, block = layer.name.removeprefix("stage").split("_block")
            blocks[int(stage), int(block)] = layer
    return blocks


def collect_window_attention(model: keras.Model, images,
                             blocks: list[tuple[int, int]] | None = None,
                             batch_size: int = 8) -> dict[tuple[int, int], np.ndarray]:
    """Window attention probabilities (B * windows, heads, n, n) of Swin blocks, keyed by
    (stage, block) (all blocks when `blocks` is None). `swin_blocks(model)[key]` has the
    block's `window`, `padded`, `shift` and `resolution`, which say where each window lies."""
    available = swin_blocks(model)
    blocks = list(available) if blocks is None else list(blocks)
    unknown = [key for key in blocks if key not in available]
    if unknown:
        raise ValueError(f"No Swin block {unknown[0]}; this model has "
                         f"{', '.join(f'({s}, {b})' for s, b in available)}.")
    images = images_for(model, images)
    # Taps on the blocks' own input tensors in the trained graph: the model is untouched, and
    # one probe computes the shared trunk once for all the blocks asked for.
    outputs = {}
    for stage, block in blocks:
        layer = available[stage, block]
        _, outputs[f"{stage}_{block}"] = CallTap(layer, return_attention_scores=True)(layer.input)
    probe = keras.Model(vision_model(model).inputs, outputs, name="swin_window_attention")
    arrays = run_batches(probe, images, batch_size)
    return {key: arrays[f"{key[0]}_{key[1]}"] for key in blocks}


def position_embedding(model: keras.Model) -> PositionEmbedding:
    """The PositionEmbedding layer of a ViT-like model; a ValueError for Swin and Mixer."""
    kind = family(model)
    if kind != "vit":
        raise ValueError(f"{vision_model(model).name} ({kind}) has no learned absolute position "
                         "embedding: Swin encodes position as a relative bias inside windows, "
                         "Mixer in its token-mixing MLPs.")
    return vision_model(model).get_layer("pos_embed")


def pixel_patch_embedding(model: keras.Model) -> PatchEmbedding:
    """The PatchEmbedding layer that projects RGB pixels (ViT, Swin, Mixer); a ValueError for
    hybrids, whose patch projection reads ResNet features."""
    family(model)  # refuse models that are not vit_zoo's
    for layer in vision_model(model).layers:
        if isinstance(layer, PatchEmbedding):
            channels = layer.kernel.shape[2]
            if channels != 3:
                raise ValueError(
                    f"The patch projection of {vision_model(model).name} reads {channels} "
                    "ResNet feature channels, not RGB pixels (a hybrid ViT): its filters are "
                    "not images.")
            return layer
    raise ValueError(f"{vision_model(model).name} has no patch projection.")
