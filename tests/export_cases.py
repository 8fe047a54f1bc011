"""Small models of every family, with every weight randomized, for the deployment tests.

Each case is small enough to export and convert in seconds; the shapes exercise what the full
models do (class and distillation tokens, a ResNet stem, token-mixing MLPs, shifted windows
with padding, BatchNorm, CLIP's two towers, several outputs).
"""

from __future__ import annotations

import numpy as np

import vit_zoo
from tests.helpers import randomize
from vit_zoo.models.clip import CLIPArch
from vit_zoo.models.convmixer import ConvMixerArch
from vit_zoo.models.mixer import MixerArch
from vit_zoo.models.mvit_v2 import MViTv2Arch
from vit_zoo.models.pvt_v2 import PVTv2Arch
from vit_zoo.models.swin import SwinArch
from vit_zoo.models.vit import ViTArch
from vit_zoo.models.xcit import XCiTArch

TINY_VIT = ViTArch("tiny", 64, 2, 4, 128, 8)
TINY_HYBRID = ViTArch("tiny-hybrid", 64, 2, 4, 128, 1, stem_depths=(1, 1))
TINY_MIXER = MixerArch("tiny", 64, 2, 32, 128, 8)
TINY_SWIN = SwinArch("tiny", 32, (2, 2), (2, 4))
TINY_CLIP = CLIPArch("tiny", TINY_VIT, 32, 32, 64, 2, 2)
TINY_CONVMIXER = ConvMixerArch("tiny", 16, 2, 3, 4)
TINY_MVIT_V2 = MViTv2Arch("tiny-cls", 16, (1, 1, 1, 1), 1, class_token=True)
TINY_XCIT = XCiTArch("tiny", 32, 1, 4, 8, mlp_ratio=2.0, class_attention_depth=1)
TINY_PVT_V2 = PVTv2Arch("tiny", (16, 32), (1, 1), num_heads=(1, 2), sr_ratios=(2, 1),
                        mlp_ratios=(2.0, 2.0))
TEXT_CONTEXT = 16


# Each builder passes its keyword arguments on (weights=..., drop_path_rate=...: the round
# trips of tests/test_families.py rebuild the same shape around a saved file).


def _vit(**options):
    return vit_zoo.ViT(TINY_VIT, input_shape=(32, 32, 3), classes=10, classifier_activation=None,
                       **options)


def _deit(**options):  # softmax after the two averaged heads: logits come from before it
    return vit_zoo.ViT(TINY_VIT, input_shape=(32, 32, 3), classes=10, distillation_token=True,
                       **options)


def _hybrid(**options):
    return vit_zoo.ViT(TINY_HYBRID, input_shape=(32, 32, 3), classes=10, **options)


def _mixer(**options):
    return vit_zoo.Mixer(TINY_MIXER, input_shape=(32, 32, 3), classes=10, **options)


def _swin(**options):  # 40 px: a 10x10 first stage, padded to two 7x7 windows a side, shifted
    return vit_zoo.Swin(TINY_SWIN, input_shape=(40, 40, 3), classes=10, window_size=7, **options)


def _pvt_v2(**options):  # spatial-reduction attention, depth-wise convolution in the MLP
    return vit_zoo.PVTv2(TINY_PVT_V2, input_shape=(64, 64, 3), classes=10, **options)


def _xcit(**options):  # cross-covariance attention, class attention, convolutional stem
    return vit_zoo.XCiT(TINY_XCIT, input_shape=(32, 32, 3), classes=10, **options)


def _swin_v2(**options):  # cosine attention, position-bias MLP, windows padded and shifted
    return vit_zoo.SwinV2(TINY_SWIN, input_shape=(40, 40, 3), classes=10, window_size=7,
                          **options)


def _mvit_v2(**options):  # pooling attention with relative positions, a class token
    return vit_zoo.MViTv2(TINY_MVIT_V2, input_shape=(64, 64, 3), classes=10, **options)


def _convmixer(**options):  # BatchNorm with random moving statistics
    return vit_zoo.ConvMixer(TINY_CONVMIXER, input_shape=(32, 32, 3), classes=10, **options)


def _vit_features(**options):
    return vit_zoo.ViT(TINY_VIT, include_top=False, pooling="token", input_shape=(32, 32, 3),
                       **options)


def _swin_stages(**options):
    return vit_zoo.Swin(TINY_SWIN, include_top=False, input_shape=(40, 40, 3), window_size=7,
                        **options)


def _clip(**options):
    return vit_zoo.CLIP(TINY_CLIP, context_length=TEXT_CONTEXT, **options)


def _clip_text(**options):
    return vit_zoo.CLIPTextEncoder(TINY_CLIP, context_length=TEXT_CONTEXT, **options)


BUILDERS = {
    "vit": _vit, "deit": _deit, "hybrid": _hybrid, "mixer": _mixer, "swin": _swin,
    "pvt_v2": _pvt_v2, "swin_v2": _swin_v2, "xcit": _xcit, "convmixer": _convmixer,
    "mvit_v2": _mvit_v2,
    "vit_features": _vit_features, "swin_stages": _swin_stages,
    "clip": _clip, "clip_text": _clip_text,
}
IMAGE_CASES = [name for name in BUILDERS if name != "clip_text"]


def build(name: str, seed: int = 0, **options):
    """The case's model with every variable random (norm scales around 1); `options` go to
    its builder."""
    return randomize(BUILDERS[name](**options), seed, scale=0.05, gamma_center=1.0)


def images_for(model, count: int = 3, seed: int = 1) -> np.ndarray:
    """Whole-number RGB values in [0, 255] (so a PNG of them decodes to the same floats)."""
    encoder = getattr(model, "image_encoder", model)
    height, width = encoder.input_shape[1:3]
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, height, width, 3)).astype("float32")


TEXTS = ["a photo of a cat.", "A DOG, running!", "numbers 1 2 3", ""]
