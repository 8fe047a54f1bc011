"""The numeric conventions a checkpoint was trained with.

Parity with the reference implementations depends on these, and they belong to the weights,
not to the architecture: Google's JAX ViTs use tanh-GELU and x / 127.5 - 1, timm-trained ViTs
exact GELU, OpenAI CLIP quick-GELU and its own mean/std.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Numerics:
    """MLP activation, LayerNorm epsilon and input normalization of a checkpoint.

    `mean` and `std` apply to RGB scaled to [0, 1]: x_model = (x / 255 - mean) / std.
    The last three fields only matter for the hybrids' ResNet stem: GroupNorm epsilon and how
    convolution kernels are standardized ("std": (w - mean) / (std + eps), the JAX original;
    "var": (w - mean) / sqrt(var + eps), timm's re-implementation).
    """

    activation: str
    layer_norm_epsilon: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    group_norm_epsilon: float = 1e-6
    weight_standardization: str = "std"
    weight_standardization_epsilon: float = 1e-5


#: Google's JAX/Flax ViT, Mixer and hybrid releases (.npz): tanh-GELU, eps 1e-6, x / 127.5 - 1.
GOOGLE = Numerics("gelu_tanh", 1e-6, INCEPTION_MEAN, INCEPTION_STD)
#: ViTs trained or fine-tuned with timm in PyTorch (e.g. augreg2): exact GELU.
#: The stem fields are timm's hybrid ResNetV2 numerics: GroupNorm eps 1e-5, sqrt(var + 1e-8).
TIMM_VIT = Numerics("gelu", 1e-6, INCEPTION_MEAN, INCEPTION_STD, 1e-5, "var", 1e-8)
#: Swin (Microsoft releases, via timm): exact GELU, eps 1e-5, ImageNet mean/std.
SWIN = Numerics("gelu", 1e-5, IMAGENET_MEAN, IMAGENET_STD)
#: OpenAI CLIP: quick-GELU, eps 1e-5, CLIP mean/std.
OPENAI_CLIP = Numerics("quick_gelu", 1e-5, CLIP_MEAN, CLIP_STD)
#: PVT v2 (the authors' releases, via timm): exact GELU, eps 1e-6, ImageNet mean/std.
PVT_V2 = Numerics("gelu", 1e-6, IMAGENET_MEAN, IMAGENET_STD)
#: MViT v2 (the Meta releases, via timm): exact GELU, eps 1e-6, ImageNet mean/std.
MVIT_V2 = Numerics("gelu", 1e-6, IMAGENET_MEAN, IMAGENET_STD)
#: XCiT (Facebook's releases, via timm): exact GELU, eps 1e-6, ImageNet mean/std (BatchNorm
#: epsilon 1e-5 is fixed in its layers).
XCIT = Numerics("gelu", 1e-6, IMAGENET_MEAN, IMAGENET_STD)
#: ConvMixer (the authors' releases, via timm): exact GELU, ImageNet mean/std; its only
#: normalization is BatchNorm, whose epsilon (1e-5) sits in the layer_norm_epsilon field.
CONVMIXER = Numerics("gelu", 1e-5, IMAGENET_MEAN, IMAGENET_STD)
#: ConvMixer-768/32 was trained with ReLU.
CONVMIXER_RELU = Numerics("relu", 1e-5, IMAGENET_MEAN, IMAGENET_STD)

#: `preprocess_input(mode=...)` names for the normalizations above.
MODES = {
    "inception": (INCEPTION_MEAN, INCEPTION_STD),
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "clip": (CLIP_MEAN, CLIP_STD),
}
