"""The timm parity cases: random perturbed weights in an upstream layout, plus timm's logits."""

from __future__ import annotations

from vit_zoo import numerics as nm


def _case(arch, variant, fmt, *, seed, train=(224, 224), eval=None, activation=None,
          classes=1000, pooling="token", pre_logits=False, batch=2, family="vit",
          upstream_numerics=False):
    if activation is None:  # what each layout's default numerics say
        activation = "gelu_tanh" if fmt == "npz" else "gelu"
    return dict(
        family=family, upstream_numerics=upstream_numerics,
        arch=arch, variant=variant, format=fmt, seed=seed, train_size=list(train),
        eval_size=list(eval or train), activation=activation, classes=classes,
        pooling=pooling, pre_logits=pre_logits, batch=batch,
        mean=list(nm.INCEPTION_MEAN), std=list(nm.INCEPTION_STD),
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
