"""The timm parity cases: random perturbed weights in an upstream layout, plus timm's logits."""

from __future__ import annotations

from vit_zoo import numerics as nm


def _case(arch, variant, fmt, *, seed, train=(224, 224), eval=None, activation=None,
          classes=1000, pooling="token", pre_logits=False, batch=2, family="vit",
          upstream_numerics=False, normalization=(nm.INCEPTION_MEAN, nm.INCEPTION_STD),
          eval_window=None):
    if activation is None:  # what each layout's default numerics say
        activation = "gelu_tanh" if fmt == "npz" else "gelu"
    return dict(
        family=family, upstream_numerics=upstream_numerics,
        arch=arch, variant=variant, format=fmt, seed=seed, train_size=list(train),
        eval_size=list(eval or train), activation=activation, classes=classes,
        pooling=pooling, pre_logits=pre_logits, batch=batch,
        mean=list(normalization[0]), std=list(normalization[1]), eval_window=eval_window,
    )


TI16, S32, B16 = "vit_tiny_patch16_224", "vit_small_patch32_224", "vit_base_patch16_224"
VIT_CASES = {
    "ti16_npz": _case(TI16, "Ti/16", "npz", seed=1),
    "s32_npz": _case(S32, "S/32", "npz", seed=2),
    "b16_npz": _case(B16, "B/16", "npz", seed=3),
    "b16_npz_at384": _case(B16, "B/16", "npz", seed=4, eval=(384, 384)),
    "ti16_npz_nonsquare": _case(TI16, "Ti/16", "npz", seed=5, eval=(160, 288)),
    "ti16_npz_prelogits": _case(TI16, "Ti/16", "npz", seed=6, classes=21843, pre_logits=True),
    "ti16_npz_map": _case(TI16, "Ti/16", "npz", seed=7, pooling="map"),
    "ti16_safetensors": _case(TI16, "Ti/16", "safetensors", seed=8),
    "s32_safetensors": _case(S32, "S/32", "safetensors", seed=9),
    "b16_safetensors": _case(B16, "B/16", "safetensors", seed=10),
    # DeiT: class + distillation tokens, two heads averaged at inference (timm's eval output).
    "deit_ti16_safetensors": _case("deit_tiny_distilled_patch16_224", "Ti/16", "safetensors",
                                   seed=11),
}

# Hybrids: Google .npz cases run the reference with the JAX originals' numerics patched into
# timm (and record timm's stock numerics too); .safetensors cases use timm's own numerics.
R50B16, R26S32, RTI16 = "vit_base_r50_s16_224", "vit_small_r26_s32_224", "vit_tiny_r_s16_p8_224"
HYBRID_MIXER_CASES = {
    "r50b16_npz": _case(R50B16, "R50+B/16", "npz", seed=21, family="hybrid",
                        upstream_numerics=True),
    "r26s32_npz": _case(R26S32, "R26+S/32", "npz", seed=22, family="hybrid",
                        upstream_numerics=True),
    "rti16_npz": _case(RTI16, "R+Ti/16", "npz", seed=23, family="hybrid", upstream_numerics=True),
    "r50b16_safetensors": _case(R50B16, "R50+B/16", "safetensors", seed=24, family="hybrid"),
    "r26s32_safetensors": _case(R26S32, "R26+S/32", "safetensors", seed=25, family="hybrid"),
    "mixer_b16_npz": _case("mixer_b16_224", "B/16", "npz", seed=26, family="mixer"),
    "mixer_s32_npz": _case("mixer_s32_224", "S/32", "npz", seed=27, family="mixer"),
    "mixer_b16_safetensors": _case("mixer_b16_224", "B/16", "safetensors", seed=28,
                                   family="mixer"),
}

# Swin: timm-layout .safetensors (the hub copies of the Microsoft releases), the Microsoft key
# layout, a size that is not a multiple of the window (timm built for that size), and window-7
# weights loaded into a window-12 model (timm resizing its bias tables on load).
_IMAGENET = (nm.IMAGENET_MEAN, nm.IMAGENET_STD)
SWIN_T, SWIN_B12 = "swin_tiny_patch4_window7_224", "swin_base_patch4_window12_384"
SWIN_CASES = {
    "swin_t": _case(SWIN_T, "T", "safetensors", seed=31, family="swin",
                    normalization=_IMAGENET),
    "swin_b_w12_384": _case(SWIN_B12, "B", "safetensors", seed=32, family="swin",
                            train=(384, 384), normalization=_IMAGENET),
    "swin_t_256x320": _case(SWIN_T, "T", "safetensors", seed=33, family="swin",
                            train=(256, 320), normalization=_IMAGENET),
    "swin_t_microsoft": _case(SWIN_T, "T", "microsoft", seed=34, family="swin",
                              normalization=_IMAGENET),
    "swin_t_w7_as_w12": _case(SWIN_T, "T", "safetensors", seed=35, family="swin",
                              eval=(384, 384), eval_window=12, normalization=_IMAGENET),
}

# CLIP (tests/reference/open_clip_models.py): ViT-B/32 with random perturbed weights in the
# OpenAI / open_clip key layout and in the Hugging Face CLIPModel layout (configured as OpenAI's
# B/32: quick-GELU, EOT id 49407 so that pooling is at the end-of-text token), plus open_clip's
# parameter counts for every variant. EOT positions vary, including the last slot.
_CLIP_INPUTS = dict(images=2, image_size=224, context_length=77, eot_positions=[5, 31, 76])
_HF_CLIP_B32 = dict(
    vision_config=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                       num_hidden_layers=12, patch_size=32, image_size=224,
                       hidden_act="quick_gelu"),
    text_config=dict(hidden_size=512, intermediate_size=2048, num_attention_heads=8,
                     num_hidden_layers=12, max_position_embeddings=77, vocab_size=49408,
                     hidden_act="quick_gelu", bos_token_id=49406, eos_token_id=49407),
    projection_dim=512,
)
CLIP_CASES = {
    "open_clip_b32": dict(kind="open_clip", model="ViT-B-32-quickgelu", seed=41, **_CLIP_INPUTS),
    "hf_b32": dict(kind="hf", config=_HF_CLIP_B32, seed=42, **_CLIP_INPUTS),
    "param_counts": dict(kind="param_counts", models={
        "B/32": "ViT-B-32", "B/16": "ViT-B-16", "L/14": "ViT-L-14", "L/14@336": "ViT-L-14-336",
    }),
}
