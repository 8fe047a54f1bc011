"""The timm parity cases: random perturbed weights in an upstream layout, plus timm's logits."""

from __future__ import annotations

from vit_zoo import numerics as nm


def _case(arch, variant, fmt, *, seed, train=(224, 224), eval=None, activation=None,
          classes=1000, pooling="token", pre_logits=False, batch=2):
    if activation is None:  # what each layout's default numerics say
        activation = "gelu_tanh" if fmt == "npz" else "gelu"
    return dict(
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
