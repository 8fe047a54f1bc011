"""CLIP ("Learning Transferable Visual Models From Natural Language Supervision", Radford et al.
2021): an image tower and a text tower trained so that matching pairs get similar embeddings.

Variants "B/32", "B/16", "L/14" and "L/14@336" decoded by one table. The image tower is this
package's ViT with CLIP's two differences (no patch bias, a LayerNorm `norm_pre` before the
blocks) and a bias-free projection; the text tower is a causal transformer over CLIP's BPE ids,
pooled at the end-of-text token (the largest id) and projected. `CLIP(...)` returns a
`CLIPModel`; `CLIPImageEncoder` and `CLIPTextEncoder` build one tower alone:

    clip = vit_zoo.CLIP_ViT_B32(weights="openai")
    image_embeddings = clip.encode_image(images)              # RGB in [0, 255], (N, 224, 224, 3)
    text_embeddings = clip.encode_text(token_ids)             # int32 (N, 77)
    logits_per_image, logits_per_text = clip({"images": images, "token_ids": token_ids})
    features = CLIPImageEncoder("B/32", weights="openai", include_top=False, pooling="token")

Layer names are the contract with vit_zoo.weights.clip_layout: the image tower keeps the ViT
names (so `vit_zoo.with_intermediates(clip.image_encoder)` works), text-tower names start with
`text_`, and the temperature is `logits/logit_scale`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import keras

from vit_zoo import names
from vit_zoo import numerics as nm
from vit_zoo.layers.contrastive import ContrastiveLogits
from vit_zoo.layers.encoder import EncoderBlock
from vit_zoo.layers.normalization import LayerNormalization
from vit_zoo.layers.text import EndOfTextPooling, TextEmbedding
from vit_zoo.losses import ContrastiveLossMixin
from vit_zoo.models import common
from vit_zoo.models.vit import ViT
from vit_zoo.models.vit import decode_variant as decode_vit_variant
from vit_zoo.weights import clip_layout
from vit_zoo.weights.checkpoint import Checkpoint, open_checkpoint
from vit_zoo.weights.loading import load_checkpoint

FAMILY = "clip"
CONTEXT_LENGTH = 77
VOCAB_SIZE = 49408
TRANSLATORS = {
    "open_clip_safetensors": clip_layout.from_open_clip,
    "hf_clip_safetensors": clip_layout.from_hf,
}
LAYOUT_NUMERICS = {layout: nm.OPENAI_CLIP for layout in (*TRANSLATORS, "keras", "keras_weights")}

# variant: (image tower ViT variant, resolution, embedding width, text width, text heads,
# text depth). OpenAI's image towers use 64-wide heads, as the ViT table does.
_VARIANTS = {
    "B/32": ("B/32", 224, 512, 512, 8, 12),
    "B/16": ("B/16", 224, 512, 512, 8, 12),
    "L/14": ("L/14", 224, 768, 768, 12, 12),
    "L/14@336": ("L/14", 336, 768, 768, 12, 12),
}
VARIANTS = tuple(_VARIANTS)


@dataclass(frozen=True)
class CLIPArch:
    """The shape of a CLIP variant; the image tower's shape is the ViT variant `image_variant`."""

    variant: str
    image_variant: str
    resolution: int
    embed_dim: int
    text_width: int
    text_heads: int
    text_depth: int
    vocab_size: int = VOCAB_SIZE


def decode_variant(variant: str | CLIPArch) -> CLIPArch:
    """'B/32' -> CLIPArch(image_variant='B/32', resolution=224, embed_dim=512, ...).

    A CLIPArch passes through unchanged: custom shapes need no table entry.
    """
    if isinstance(variant, CLIPArch):
        return variant
    if variant not in _VARIANTS:
        raise ValueError(f"Unknown CLIP variant {variant!r}; expected one of {list(_VARIANTS)}.")
    return CLIPArch(variant, *_VARIANTS[variant])


@keras.saving.register_keras_serializable(package="vit_zoo")
class CLIPModel(ContrastiveLossMixin, keras.Model):
    """Two towers and the similarity head.

    `image_encoder`: images (N, H, W, 3) -> projected image embeddings (N, E), not normalized.
    `text_encoder`: int32 token ids (N, context_length) -> projected text embeddings (N, E).
    Calling the model on {"images": ..., "token_ids": ...} (or an (images, token_ids) pair)
    returns (logits_per_image (N_img, N_txt), logits_per_text (N_txt, N_img)): cosine
    similarities times exp(logit_scale). With `fit` and `predict`, pass the dict: Keras reads a
    bare pair as (x, y). Train with `compile(loss=vit_zoo.losses.CLIPLoss())` on a dataset of
    such dicts (no labels); under a distribution strategy the negatives span the global batch.
    """

    def __init__(self, image_encoder: keras.Model, text_encoder: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.similarity = ContrastiveLogits(name="logits")
        width = image_encoder.output_shape[-1]
        self.similarity.build(((None, width), (None, text_encoder.output_shape[-1])))
        # Every part is built here, so the model needs no build call (nor a build config).
        self.built = True

    def encode_image(self, images, training=None):
        """Projected image embeddings (not normalized) of RGB images in [0, 255]."""
        return self.image_encoder(images, training=training)

    def encode_text(self, token_ids, training=None):
        """Projected text embeddings (not normalized) of int token ids (N, context_length)."""
        return self.text_encoder(token_ids, training=training)

    def call(self, inputs, training=None):
        if isinstance(inputs, dict):
            images, token_ids = inputs["images"], inputs["token_ids"]
        else:
            images, token_ids = inputs
        image_embeddings = self.encode_image(images, training=training)
        text_embeddings = self.encode_text(token_ids, training=training)
        return self.similarity([image_embeddings, text_embeddings])

    @property
    def logit_scale(self) -> keras.Variable:
        """log of the similarity temperature's inverse; logits = exp(logit_scale) * cosine."""
        return self.similarity.logit_scale

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "image_encoder": keras.saving.serialize_keras_object(self.image_encoder),
            "text_encoder": keras.saving.serialize_keras_object(self.text_encoder),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for tower in ("image_encoder", "text_encoder"):
            config[tower] = keras.saving.deserialize_keras_object(config[tower])
        return cls(**config)


def _image_encoder(
    arch: CLIPArch,
    numerics: nm.Numerics,
    include_top: bool,
    input_tensor,
    input_shape,
    pooling: str | None,
    include_preprocessing: bool,
    name: str,
) -> keras.Model:
    """The ViT with CLIP's stem, `ln_post` as its final norm, and the projection on top."""
    if pooling not in (None, "token"):
        raise ValueError(
            "CLIP image towers pool with the class token (the projection is trained on it): "
            f"pooling must be 'token' or None, got {pooling!r}."
        )
    if input_shape is None and input_tensor is None:
        input_shape = (arch.resolution, arch.resolution, 3)
    vit = ViT(
        decode_vit_variant(arch.image_variant),
        include_top=False,
        input_tensor=input_tensor,
        input_shape=input_shape,
        pooling="token" if include_top else pooling,
        include_preprocessing=include_preprocessing,
        name=name,
        numerics=numerics,
        patch_bias=False,
        pre_norm=True,
    )
    # open_clip decays CLIP's positional embedding (its rank is 2 there); ViT's rule, timm's,
    # exempts it.
    vit.get_layer(names.POSITION_EMBEDDING).weight_decay = True
    if not include_top:
        return vit
    projection = keras.layers.Dense(arch.embed_dim, use_bias=False, name="image_projection")
    inputs = vit.inputs[0] if len(vit.inputs) == 1 else vit.inputs  # keep a single input bare
    return keras.Model(inputs, projection(vit.outputs[0]), name=name)


def _text_encoder(
    arch: CLIPArch, numerics: nm.Numerics, context_length: int, name: str
) -> keras.Model:
    """Token ids -> embedding -> causal blocks -> token at the end-of-text -> ln_final -> proj."""
    token_ids = keras.Input(shape=(context_length,), dtype="int32", name="token_ids")
    tokens = TextEmbedding(arch.vocab_size, context_length, arch.text_width, name="text_embedding")(
        token_ids
    )
    for index in range(arch.text_depth):
        tokens = EncoderBlock(
            arch.text_heads,
            4 * arch.text_width,
            activation=numerics.activation,
            layer_norm_epsilon=numerics.layer_norm_epsilon,
            causal=True,
            name=f"text_block_{index}",
        )(tokens)
    # LayerNorm acts per token, so pooling first and normalizing one token per sequence gives
    # upstream's ln_final-then-pool result at 1/77 of the cost.
    pooled = EndOfTextPooling(name="text_pool")([tokens, token_ids])
    pooled = LayerNormalization(epsilon=numerics.layer_norm_epsilon, name="text_norm")(pooled)
    embeddings = keras.layers.Dense(arch.embed_dim, use_bias=False, name="text_projection")(pooled)
    return keras.Model(token_ids, embeddings, name=name)


def _keep_towers(checkpoint: Checkpoint, model: keras.Model, towers: set[str]) -> None:
    """Drop the arrays of the CLIP parts a one-tower model leaves out by design (the other
    tower, the temperature, a projection not built); all else goes to the loader's checks."""
    if checkpoint.arrays is None:  # .weights.h5: only fits the very model it was saved from
        return
    built = {variable.path.split("/", 1)[0] for variable in model.weights}
    optional = {"image_projection"} - built  # include_top=False
    checkpoint.arrays = {
        path: value
        for path, value in checkpoint.arrays.items()
        if clip_layout.tower_of(path) in towers and path.split("/", 1)[0] not in optional
    }


def _open(weights, arch: CLIPArch, numerics: nm.Numerics | None):
    checkpoint = open_checkpoint(weights, FAMILY, arch.variant, TRANSLATORS)
    numerics = common.resolve_numerics(numerics, checkpoint, LAYOUT_NUMERICS, nm.OPENAI_CLIP)
    return checkpoint, numerics


def CLIP(
    variant: str | CLIPArch = "B/32",
    weights: str | os.PathLike | None = None,
    input_shape: tuple | None = None,
    context_length: int = CONTEXT_LENGTH,
    include_preprocessing: bool = True,
    name: str | None = None,
    *,
    numerics: nm.Numerics | None = None,
) -> CLIPModel:
    """Build a CLIP dual encoder, optionally with upstream weights.

    Args:
        variant: "B/32", "B/16", "L/14" or "L/14@336"; or a CLIPArch for a custom shape.
        weights: None (random), "openai", or the path of a .safetensors file in the OpenAI /
            open_clip key layout or the Hugging Face CLIPModel layout, or a .keras file of a
            saved CLIPModel.
        input_shape: image shape (height, width, 3); defaults to the variant's resolution. Any
            multiple of the patch size works (position embeddings are resampled at load), or
            (None, None, 3) for any size.
        context_length: token sequence length of the text tower (77 upstream). Shorter
            lengths use the checkpoint's first position embeddings.
        include_preprocessing: images are RGB in [0, 255] and are normalized with the CLIP
            mean/std inside the model; False: images are already normalized.
        name: model name.
        numerics: override the activation / LayerNorm epsilon / normalization that otherwise
            come from the checkpoint record (OpenAI CLIP: quick-GELU, 1e-5, CLIP mean/std).
    """
    arch = decode_variant(variant)
    checkpoint, numerics = _open(weights, arch, numerics)
    model_name = name or python_name(arch.variant).lower()
    image_encoder = _image_encoder(
        arch,
        numerics,
        True,
        None,
        input_shape,
        "token",
        include_preprocessing,
        f"{model_name}_image_encoder",
    )
    text_encoder = _text_encoder(arch, numerics, context_length, f"{model_name}_text_encoder")
    model = CLIPModel(image_encoder, text_encoder, name=model_name)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model


def CLIPImageEncoder(
    variant: str | CLIPArch = "B/32",
    include_top: bool = True,
    weights: str | os.PathLike | None = None,
    input_tensor=None,
    input_shape: tuple | None = None,
    pooling: str | None = None,
    include_preprocessing: bool = True,
    name: str | None = None,
    *,
    numerics: nm.Numerics | None = None,
) -> keras.Model:
    """CLIP's image tower alone, as a functional keras.Model (a feature extractor).

    Args:
        variant, weights, input_shape, include_preprocessing, numerics: as for `CLIP`; a full
            CLIP checkpoint is accepted and its text tower ignored.
        include_top: end with the projection into the joint embedding space (output (N, E)).
        input_tensor: optional Keras tensor to use as the image input.
        pooling: without the top, "token" gives the class token after `ln_post` (N, D) and
            None the whole token sequence after `ln_post` (N, 1 + grid, D).
        name: model name.
    """
    arch = decode_variant(variant)
    checkpoint, numerics = _open(weights, arch, numerics)
    model = _image_encoder(arch, numerics, include_top, input_tensor, input_shape, pooling,
                           include_preprocessing,
                           name or f"{python_name(arch.variant).lower()}_image_encoder")
    return _load_tower(model, checkpoint, "image")


def CLIPTextEncoder(
    variant: str | CLIPArch = "B/32",
    weights: str | os.PathLike | None = None,
    context_length: int = CONTEXT_LENGTH,
    name: str | None = None,
    *,
    numerics: nm.Numerics | None = None,
) -> keras.Model:
    """CLIP's text tower alone: int32 token ids (N, context_length) -> text embeddings (N, E).

    Arguments as for `CLIP`; a full CLIP checkpoint is accepted and its image tower ignored.
    """
    arch = decode_variant(variant)
    checkpoint, numerics = _open(weights, arch, numerics)
    model = _text_encoder(arch, numerics, context_length,
                          name or f"{python_name(arch.variant).lower()}_text_encoder")
    return _load_tower(model, checkpoint, "text")


def _load_tower(model: keras.Model, checkpoint: Checkpoint | None, tower: str) -> keras.Model:
    """A one-tower model with its part of a (full CLIP) checkpoint loaded."""
    if checkpoint is not None:
        _keep_towers(checkpoint, model, {tower})
        load_checkpoint(model, checkpoint)
    return model


def python_name(variant: str) -> str:
    """Builder name of a variant: "B/32" -> "CLIP_ViT_B32", "L/14@336" -> "CLIP_ViT_L14_336"."""
    return "CLIP_ViT_" + variant.replace("/", "").replace("@", "_")


def _variant_builder(variant: str):
    arch = decode_variant(variant)
    return common.named_builder(
        CLIP,
        variant,
        python_name(variant),
        f"CLIP ViT-{variant}: image tower ViT-{arch.image_variant} at {arch.resolution} px, "
        f"text tower width {arch.text_width} x {arch.text_depth} causal blocks, "
        f"{arch.embed_dim}-d joint embeddings. Arguments as vit_zoo.CLIP (minus `variant`); "
        "`.image_encoder` and `.text_encoder` are the towers as functional models.",
    )


CLIP_ViT_B32 = _variant_builder("B/32")
CLIP_ViT_B16 = _variant_builder("B/16")
CLIP_ViT_L14 = _variant_builder("L/14")
CLIP_ViT_L14_336 = _variant_builder("L/14@336")
#: builder name -> (family, variant), for `vit-zoo list`.
BUILDERS = {python_name(v): (FAMILY, v) for v in VARIANTS}
