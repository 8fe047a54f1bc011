"""What families declare about themselves, against the references.

Weight decay: for one small model per family, the set of variables our optimizer exempts equals
the set timm (ViT, DeiT, hybrid, Swin, Mixer) or open_clip (CLIP) exempts, after the family's own
key translator (the one that loads their checkpoints) maps their parameter names to ours. The
exempt parameters are written as ones and the decayed ones as zeros, so a translator that
merges parameters (q, k, v into one kernel) cannot hide a disagreement inside a merged tensor.

Blocks and heads: layer-wise learning-rate decay and distillation find them by declaration.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

import vit_zoo
from tests.helpers import run_reference
from vit_zoo import structure
from vit_zoo.models.clip import CLIPArch
from vit_zoo.models.mixer import decode_variant as mixer_variant
from vit_zoo.models.swin import SwinArch
from vit_zoo.models.vit import decode_variant as vit_variant
from vit_zoo.train.optimizers import layer_decay_per_variable, weight_decay_per_variable
from vit_zoo.weights import clip_layout, mixer_layout, swin_layout, vit_layout

CLASSES = 10


def _timm(arch: str, **kwargs) -> dict:
    """A timm model by its registered name, with `kwargs` overriding its shape."""
    return dict(kind="timm", arch=arch, kwargs=dict(num_classes=CLASSES, **kwargs))


def _vit(variant: str, size: int, **kwargs):
    """A two-block version of a ViT variant (plain, DeiT or hybrid)."""
    arch = dataclasses.replace(vit_variant(variant), depth=2)
    return vit_zoo.ViT(arch, input_shape=(size, size, 3), classes=CLASSES, **kwargs)


_CLIP = dict(embed_dim=64, image_size=64, text_width=64, text_heads=2, text_depth=2)
# name: (reference spec, our builder, the translator of the reference's layout)
CASES = {
    "vit": (_timm("vit_tiny_patch16_224", depth=2, img_size=32),
            lambda: _vit("Ti/16", 32),
            vit_layout.from_timm),
    "deit": (_timm("deit_tiny_distilled_patch16_224", depth=2, img_size=32),
             lambda: _vit("Ti/16", 32, distillation_token=True),
             vit_layout.from_timm),
    "hybrid": (_timm("vit_tiny_r_s16_p8_224", depth=2, img_size=64),
               lambda: _vit("R+Ti/16", 64),
               vit_layout.from_timm),
    "swin": (_timm("swin_tiny_patch4_window7_224", depths=(2, 2), num_heads=(3, 6),
                   img_size=56),
             lambda: vit_zoo.Swin(SwinArch("T2", 96, (2, 2), (3, 6)), input_shape=(56, 56, 3),
                                  window_size=7, classes=CLASSES),
             swin_layout.from_timm),
    "mixer": (dict(kind="timm_class", module="mlp_mixer", **{"class": "MlpMixer"},
                   kwargs=dict(patch_size=32, num_blocks=2, embed_dim=512, img_size=64,
                               num_classes=CLASSES)),
              lambda: vit_zoo.Mixer(dataclasses.replace(mixer_variant("S/32"), depth=2),
                                    input_shape=(64, 64, 3), classes=CLASSES),
              mixer_layout.from_timm),
    "clip": (dict(kind="open_clip", embed_dim=_CLIP["embed_dim"],
                  vision=dict(layers=12, width=192, head_width=64, patch_size=32,
                              image_size=_CLIP["image_size"]),
                  text=dict(context_length=77, vocab_size=49408, width=_CLIP["text_width"],
                            heads=_CLIP["text_heads"], layers=_CLIP["text_depth"])),
             lambda: vit_zoo.CLIP(CLIPArch("tiny", "Ti/32", _CLIP["image_size"],
                                           _CLIP["embed_dim"], _CLIP["text_width"],
                                           _CLIP["text_heads"], _CLIP["text_depth"])),
             clip_layout.from_open_clip),
}


@pytest.fixture(scope="module")
def decay_reference(tmp_path_factory):
    return run_reference("decay_rules.py", tmp_path_factory.mktemp("decay_rules"),
                         {name: spec for name, (spec, _, _) in CASES.items()})


def _reference_exempt(reference, name: str, translate) -> dict[str, bool]:
    """{our variable path: exempt from decay by the reference's rule}."""
    listed = json.loads((reference / f"{name}.json").read_text())
    exempt = set(listed["exempt"])
    raw = {key: np.full(shape, 1.0 if key in exempt else 0.0, "float32")
           for key, shape in listed["shapes"].items()}
    ours, unknown = translate(raw)
    assert not unknown, f"the {name} translator left reference parameters unmapped: {unknown}"
    verdicts = {}
    for path, value in ours.items():
        assert np.all(value == value.flat[0]), (
            f"{path} merges reference parameters that are decayed and exempt")
        verdicts[path] = bool(value.flat[0])
    return verdicts


# Beyond rank <= 1 (biases, norms, LayerScale, a temperature), what each reference exempts.
EXEMPT_OF_RANK_2_OR_MORE = {
    "vit": {"cls_token/token", "pos_embed/embedding"},
    "deit": {"cls_token/token", "dist_token/token", "pos_embed/embedding"},
    "hybrid": {"cls_token/token", "pos_embed/embedding"},
    "swin": {f"stage{s}_block{b}/attn/relative_position_bias_table"
             for s in range(2) for b in range(2)},
    "mixer": set(),
    "clip": {"cls_token/token"},  # open_clip decays its 2-D positional embeddings
}


@pytest.mark.parametrize("name", list(CASES))
def test_weight_decay_exempts_what_the_reference_exempts(decay_reference, name):
    _, build, translate = CASES[name]
    expected = _reference_exempt(decay_reference, name, translate)
    model = build()
    decays = weight_decay_per_variable(model, 0.05)
    assert set(decays) == set(expected), "our variables and the reference's differ"
    exempt = {path for path, decay in decays.items() if decay == 0.0}
    shapes = {variable.path: tuple(variable.shape) for variable in model.trainable_variables}
    print(f"{name} decayed: {sorted(set(decays) - exempt)}")
    print(f"{name} exempt: {sorted(exempt)}")
    wrong = {path: "exempt" if path in exempt else "decayed"
             for path, reference_exempt in expected.items() if (path in exempt) != reference_exempt}
    assert not wrong, f"{name}: we treat these unlike the reference: {wrong}"
    assert {path for path in exempt if len(shapes[path]) >= 2} == EXEMPT_OF_RANK_2_OR_MORE[name]


def test_blocks_are_declared_and_swin_merging_joins_the_block_it_feeds():
    model = CASES["swin"][1]()
    [blocks] = structure.block_groups(model)
    assert [block.name for block in blocks] == [f"stage{s}_block{b}" for s in range(2)
                                                for b in range(2)]
    ids = structure.layer_ids(model)
    assert ids["patch_embed/kernel"] == (0, 4)
    assert ids["stage1_merge/reduction/kernel"] == ids["stage1_block0/attn/qkv/kernel"] == (3, 4)
    assert ids["norm/gamma"] == ids["head/kernel"] == (5, 4)


def test_two_towers_decay_by_their_own_depth_and_the_temperature_learns_at_full_rate():
    model = CASES["clip"][1]()
    assert [len(group) for group in structure.block_groups(model)] == [12, 2]
    multipliers = layer_decay_per_variable(model, 0.5)
    assert multipliers["block_0/attn/qkv/kernel"] == 0.5**12
    assert multipliers["text_block_0/attn/qkv/kernel"] == 0.5**2
    assert multipliers["text_embedding/token_embedding"] == 0.5**3
    assert multipliers[model.logit_scale.path] == 1.0


def test_heads_are_found_by_role_not_by_name():
    model = CASES["deit"][1]()
    heads = structure.heads(model)
    assert {role: layer.name for role, layer in heads.items()} == {
        "class": "head", "distillation": "head_dist"}
    backbone = _vit("Ti/16", 32, include_top=False, pooling="avg")
    assert structure.heads(backbone) == {}
