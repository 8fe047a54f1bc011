"""vit_zoo: vision transformers for Keras 3, with the upstream weights.

    import vit_zoo
    model = vit_zoo.ViT_B16(weights="augreg-imagenet21k+imagenet2012")
"""

from vit_zoo import layers, losses, models, numerics, text, train, weights, zero_shot
from vit_zoo.imagenet import decode_predictions, preprocess_input
from vit_zoo.models.clip import (
    CLIP,
    CLIP_ViT_B16,
    CLIP_ViT_B32,
    CLIP_ViT_L14,
    CLIP_ViT_L14_336,
    CLIPImageEncoder,
    CLIPModel,
    CLIPTextEncoder,
)
from vit_zoo.models.convmixer import (
    ConvMixer,
    ConvMixer_768_32,
    ConvMixer_1024_20,
    ConvMixer_1536_20,
)
from vit_zoo.models.mixer import (
    Mixer,
    Mixer_B16,
    Mixer_B32,
    Mixer_L16,
    Mixer_L32,
    Mixer_S16,
    Mixer_S32,
)
from vit_zoo.models.mvit_v2 import (
    MViTv2,
    MViTv2_B,
    MViTv2_B_cls,
    MViTv2_H_cls,
    MViTv2_L,
    MViTv2_L_cls,
    MViTv2_S,
    MViTv2_S_cls,
    MViTv2_T,
)
from vit_zoo.models.pvt_v2 import (
    PVTv2,
    PVTv2_B0,
    PVTv2_B1,
    PVTv2_B2,
    PVTv2_B2_LI,
    PVTv2_B3,
    PVTv2_B4,
    PVTv2_B5,
)
from vit_zoo.models.swin import Swin, Swin_B, Swin_L, Swin_S, Swin_T
from vit_zoo.models.swin_v2 import SwinV2, SwinV2_B, SwinV2_S, SwinV2_T
from vit_zoo.models.vit import (
    R26_ViT_B32,
    R26_ViT_S32,
    R50_ViT_B16,
    R50_ViT_L32,
    R_ViT_Ti16,
    ViT,
    ViT_B8,
    ViT_B16,
    ViT_B32,
    ViT_H14,
    ViT_L16,
    ViT_L32,
    ViT_S16,
    ViT_S32,
    ViT_Ti16,
    stem_features,
    with_intermediates,
)
from vit_zoo.models.xcit import (
    XCiT,
    XCiT_L24_P8,
    XCiT_L24_P16,
    XCiT_M24_P8,
    XCiT_M24_P16,
    XCiT_N12_P8,
    XCiT_N12_P16,
    XCiT_S12_P8,
    XCiT_S12_P16,
    XCiT_S24_P8,
    XCiT_S24_P16,
    XCiT_T12_P8,
    XCiT_T12_P16,
    XCiT_T24_P8,
    XCiT_T24_P16,
)
from vit_zoo.text import CLIPTokenizer

__version__ = "0.1.0"


def __getattr__(name: str):
    # Deployment needs TensorFlow (SavedModel, TFLite) or nothing heavy at all (the serving
    # client): imported on first use, so `import vit_zoo` stays backend-agnostic (and they are
    # left out of __all__, so a star import does not pull TensorFlow in either).
    if name in ("export", "serving"):
        import importlib

        return importlib.import_module(f"vit_zoo.{name}")
    raise AttributeError(f"module 'vit_zoo' has no attribute {name!r}")


__all__ = [
    "MViTv2",
    "MViTv2_B",
    "MViTv2_B_cls",
    "MViTv2_H_cls",
    "MViTv2_L",
    "MViTv2_L_cls",
    "MViTv2_S",
    "MViTv2_S_cls",
    "MViTv2_T",
    "SwinV2",
    "SwinV2_B",
    "SwinV2_S",
    "SwinV2_T",
    "XCiT",
    "XCiT_L24_P8",
    "XCiT_L24_P16",
    "XCiT_M24_P8",
    "XCiT_M24_P16",
    "XCiT_N12_P8",
    "XCiT_N12_P16",
    "XCiT_S12_P8",
    "XCiT_S12_P16",
    "XCiT_S24_P8",
    "XCiT_S24_P16",
    "XCiT_T12_P8",
    "XCiT_T12_P16",
    "XCiT_T24_P8",
    "XCiT_T24_P16",
    "PVTv2",
    "PVTv2_B0",
    "PVTv2_B1",
    "PVTv2_B2",
    "PVTv2_B2_LI",
    "PVTv2_B3",
    "PVTv2_B4",
    "PVTv2_B5",
    "ConvMixer",
    "ConvMixer_768_32",
    "ConvMixer_1024_20",
    "ConvMixer_1536_20",
    "CLIP",
    "CLIPImageEncoder",
    "CLIPModel",
    "CLIPTextEncoder",
    "CLIP_ViT_B16",
    "CLIP_ViT_B32",
    "CLIP_ViT_L14",
    "CLIP_ViT_L14_336",
    "CLIPTokenizer",
    "Mixer",
    "Mixer_B16",
    "Mixer_B32",
    "Mixer_L16",
    "Mixer_L32",
    "Mixer_S16",
    "Mixer_S32",
    "R26_ViT_B32",
    "R26_ViT_S32",
    "R50_ViT_B16",
    "R50_ViT_L32",
    "R_ViT_Ti16",
    "Swin",
    "Swin_B",
    "Swin_L",
    "Swin_S",
    "Swin_T",
    "ViT",
    "ViT_B8",
    "ViT_B16",
    "ViT_B32",
    "ViT_H14",
    "ViT_L16",
    "ViT_L32",
    "ViT_S16",
    "ViT_S32",
    "ViT_Ti16",
    "decode_predictions",
    "layers",
    "losses",
    "models",
    "numerics",
    "preprocess_input",
    "stem_features",
    "text",
    "train",
    "weights",
    "zero_shot",
    "with_intermediates",
]
