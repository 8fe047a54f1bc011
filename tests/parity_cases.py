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
