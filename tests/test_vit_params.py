"""Every builder of the founding families (ViT, hybrids, Mixer, Swin) has exactly timm's
parameter count (random init, weights=None, 1000 classes); each derivative family's test file
checks its own builders."""

import json

import keras
import pytest

import vit_zoo
from tests.helpers import run_python
from vit_zoo.models import BUILDERS

TIMM_NAMES = {
    "ViT_Ti16": "vit_tiny_patch16_224", "ViT_S16": "vit_small_patch16_224",
    "ViT_S32": "vit_small_patch32_224", "ViT_B8": "vit_base_patch8_224",
    "ViT_B16": "vit_base_patch16_224", "ViT_B32": "vit_base_patch32_224",
    "ViT_L16": "vit_large_patch16_224", "ViT_L32": "vit_large_patch32_224",
    "ViT_H14": "vit_huge_patch14_224",
    "R50_ViT_B16": "vit_base_r50_s16_224", "R50_ViT_L32": "vit_large_r50_s32_224",
    "R26_ViT_B32": "vit_base_r26_s32_224", "R26_ViT_S32": "vit_small_r26_s32_224",
    "R_ViT_Ti16": "vit_tiny_r_s16_p8_224",
    "Mixer_S32": "mixer_s32_224", "Mixer_S16": "mixer_s16_224", "Mixer_B32": "mixer_b32_224",
    "Mixer_B16": "mixer_b16_224", "Mixer_L32": "mixer_l32_224", "Mixer_L16": "mixer_l16_224",
    "Swin_T": "swin_tiny_patch4_window7_224", "Swin_S": "swin_small_patch4_window7_224",
    "Swin_B": "swin_base_patch4_window7_224", "Swin_L": "swin_large_patch4_window7_224",
}
_SCRIPT = """
import json, sys, timm, torch
counts = {}
with torch.device("meta"):
    for name in sys.argv[1:]:
        model = timm.create_model(name, pretrained=False, num_classes=1000)
        counts[name] = sum(p.numel() for p in model.parameters())
print(json.dumps(counts))
"""


@pytest.fixture(scope="module")
def timm_counts():
    return json.loads(run_python(["-c", _SCRIPT, *TIMM_NAMES.values()]).strip().splitlines()[-1])


def test_every_builder_is_checked():
    founding = {name for name, (family, _) in BUILDERS.items()
                if family in ("vit", "hybrid", "mixer", "swin")}
    assert set(TIMM_NAMES) == founding


LARGE = ("ViT_L16", "ViT_L32", "ViT_H14", "R50_ViT_L32", "Mixer_L16", "Swin_L")


@pytest.mark.parametrize(
    "builder",
    [pytest.param(b, marks=pytest.mark.slow) if b in LARGE else b for b in TIMM_NAMES],
)
def test_parameter_count_equals_timm(builder, timm_counts):
    model = getattr(vit_zoo, builder)(classes=1000)
    assert model.count_params() == timm_counts[TIMM_NAMES[builder]]
    del model
    keras.backend.clear_session()
