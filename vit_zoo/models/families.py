"""The model families as the training job and the command line see them: how each one builds
from a variant, a builder name or a custom shape, and what it can be trained for.

A new family adds one `Family` here (and its builder module); the training job
(vit_zoo.train.runner) knows no family by name.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

import keras

from vit_zoo.models import clip, convmixer, mixer, mvit_v2, pvt_v2, swin, swin_v2, vit, xcit


@dataclass(frozen=True)
class Family:
    """One family of models.

    name: "vit" (plain ViTs, DeiT and the hybrids), "swin", "mixer", "clip".
    build: the family's builder, `build(arch_or_variant, **arguments)`.
    decode: a variant string ("B/16", "T") or an Arch -> the family's Arch.
    custom: a custom shape (the Arch's fields as a dict) -> an Arch.
    builders: builder name ("ViT_B16") -> variant ("B/16").
    objectives: what the training job can train it for.
    """

    name: str
    build: Callable[..., keras.Model]
    decode: Callable
    custom: Callable[[dict], object]
    builders: dict[str, str]
    objectives: tuple[str, ...]
    #: Builder arguments that are not part of the Arch but may be given in a custom shape.
    shape_arguments: tuple[str, ...] = field(default=())

    def arguments(self) -> set[str]:
        """The keyword arguments `build` takes."""
        return set(inspect.signature(self.build).parameters)


def _custom(arch_type, **fixed) -> Callable[[dict], object]:
    """A custom shape dict -> arch_type("custom", **shape); a wrong key is named in the error."""
    fields = {f.name: f for f in dataclasses.fields(arch_type) if f.name not in ("variant", *fixed)}

    def make(shape: dict):
        unknown = set(shape) - set(fields)
        missing = [name for name, f in fields.items() if name not in shape
                   and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if unknown or missing:
            raise ValueError(f"A custom {arch_type.__name__} shape takes {list(fields)}; "
                             f"unknown: {sorted(unknown)}, missing: {missing}.")
        values = {name: tuple(value) if isinstance(value, list) else value
                  for name, value in shape.items()}
        return arch_type("custom", **fixed, **values)

    return make


def _clip_custom(shape: dict) -> clip.CLIPArch:
    """{"image": <ViT shape>, "resolution", "embed_dim", "text_width", "text_heads",
    "text_depth"} -> a CLIPArch whose image tower is the custom ViT."""
    shape = dict(shape)
    image = shape.pop("image", None)
    if not isinstance(image, dict):
        raise ValueError("A custom CLIP shape needs 'image': the image tower's ViT shape "
                         "(hidden_dim, depth, num_heads, mlp_dim, patch_size).")
    return _custom(clip.CLIPArch)({**shape, "image_variant": _custom(vit.ViTArch)(image)})


FAMILIES = {
    "vit": Family("vit", vit.ViT, vit.decode_variant, _custom(vit.ViTArch),
                  {name: variant for name, (_, variant) in vit.BUILDERS.items()},
                  ("classification", "masked_patches")),
    "swin": Family("swin", swin.Swin, swin.decode_variant, _custom(swin.SwinArch),
                   {name: variant for name, (_, variant) in swin.BUILDERS.items()},
                   ("classification",), shape_arguments=("window_size",)),
    "mixer": Family("mixer", mixer.Mixer, mixer.decode_variant, _custom(mixer.MixerArch),
                    {name: variant for name, (_, variant) in mixer.BUILDERS.items()},
                    ("classification",)),
    "pvt_v2": Family("pvt_v2", pvt_v2.PVTv2, pvt_v2.decode_variant, _custom(pvt_v2.PVTv2Arch),
                     {name: variant for name, (_, variant) in pvt_v2.BUILDERS.items()},
                     ("classification",)),
    "swin_v2": Family("swin_v2", swin_v2.SwinV2, swin_v2.decode_variant, _custom(swin.SwinArch),
                      {name: variant for name, (_, variant) in swin_v2.BUILDERS.items()},
                      ("classification",),
                      shape_arguments=("window_size", "pretrained_window_size")),
    "xcit": Family("xcit", xcit.XCiT, xcit.decode_variant, _custom(xcit.XCiTArch),
                   {name: variant for name, (_, variant) in xcit.BUILDERS.items()},
                   ("classification",)),
    "convmixer": Family("convmixer", convmixer.ConvMixer, convmixer.decode_variant,
                        _custom(convmixer.ConvMixerArch),
                        {name: variant for name, (_, variant) in convmixer.BUILDERS.items()},
                        ("classification",)),
    "mvit_v2": Family("mvit_v2", mvit_v2.MViTv2, mvit_v2.decode_variant,
                      _custom(mvit_v2.MViTv2Arch),
                      {name: variant for name, (_, variant) in mvit_v2.BUILDERS.items()},
                      ("classification",)),
    "clip": Family("clip", clip.CLIP, clip.decode_variant, _clip_custom,
                   {name: variant for name, (_, variant) in clip.BUILDERS.items()},
                   ("contrastive",)),
}


def by_builder_name(name: str) -> tuple[Family, str] | None:
    """("ViT_B16" | "R50_ViT_B16" | "Swin_T" | "CLIP_ViT_B32" ...) -> (family, variant)."""
    for family in FAMILIES.values():
        if name in family.builders:
            return family, family.builders[name]
    return None


def builder_names() -> list[str]:
    return [name for family in FAMILIES.values() for name in family.builders]
