"""Swin Transformer: window index and mask formulas, stage outputs, small inputs, full-size
TFLite, bad input. Parity with timm, saving and training: tests/test_families.py."""

import numpy as np
import pytest

import vit_zoo
from tests.helpers import randomize
from vit_zoo.layers.swin import relative_position_index, shift_mask
from vit_zoo.models.swin import SwinArch

TOLERANCE = 1e-4
TINY = SwinArch("tiny", embed_dim=32, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))


def _randomized(model, seed=0):
    return randomize(model, seed, scale=0.05, gamma_center=1.0)


def test_relative_position_index_formula():
    index = relative_position_index((7, 7), (7, 7))
    # token (dy, dx) = (0, 0) attending to (6, 6): offsets (-6, -6) -> table row 0
    assert index[0, 48] == 0 and index[48, 0] == 12 * 13 + 12 and index[10, 10] == 6 * 13 + 6
    # a 4x4 window inside a 7x7 table uses the table's central offsets
    small = relative_position_index((4, 4), (7, 7))
    assert small.max() == (3 + 6) * 13 + (3 + 6) and small.min() == (6 - 3) * 13 + (6 - 3)


def test_shift_mask_separates_regions():
    mask = shift_mask((14, 14), (7, 7), (3, 3))
    assert mask.shape == (4, 49, 49)
    assert not mask[0].any()  # the top-left window holds one region only
    assert set(np.unique(mask[3])) == {0.0, -100.0}  # the bottom-right one mixes four


def test_four_stage_outputs_for_dense_tasks():
    model = vit_zoo.Swin_T(include_top=False, input_shape=(256, 320, 3))
    assert [tuple(o.shape[1:]) for o in model.outputs] == [
        (64, 80, 96), (32, 40, 192), (16, 20, 384), (8, 10, 768)]
    pooled = vit_zoo.Swin_T(include_top=False, pooling="avg", input_shape=(224, 224, 3))
    assert pooled.output_shape == (None, 768)


def test_small_inputs_use_one_window_without_shift():
    model = vit_zoo.Swin(TINY, input_shape=(64, 96, 3), classes=3)
    last = model.get_layer("stage3_block1")  # 2x3 map, window 7 configured
    assert last.window == (2, 3) and last.shift == (0, 0)
    first = model.get_layer("stage0_block1")  # 16x24 map: padded to 21x28, shifted
    assert first.padded == (21, 28) and first.shift == (3, 3)
    assert model.predict(np.zeros((1, 64, 96, 3), "float32"), verbose=0).shape == (1, 3)


def test_converts_to_builtin_only_tflite_and_matches(tmp_path):
    """Full-size Swin-T through vit_zoo.export.tflite (builtin ops only, run with LiteRT)."""
    import vit_zoo.export

    model = _randomized(vit_zoo.Swin_T(classifier_activation=None))
    images = np.random.default_rng(1).uniform(0, 255, (1, 224, 224, 3)).astype("float32")
    report = vit_zoo.export.tflite(model, tmp_path / "swin_t.tflite", validation_data=images)
    assert report.max_relative_error <= TOLERANCE
    assert "ROLL" not in report.ops and not any(op.startswith("Flex") for op in report.ops)


def test_bad_input():
    with pytest.raises(ValueError, match="fixed input size"):
        vit_zoo.Swin_T(input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="not divisible by the patch size 4"):
        vit_zoo.Swin_T(input_shape=(226, 224, 3))
    with pytest.raises(ValueError, match="3 channels"):
        vit_zoo.Swin_T(input_shape=(224, 224, 4))
    with pytest.raises(ValueError, match="pooling must be 'avg' or None"):
        vit_zoo.Swin_T(include_top=False, pooling="token")
    with pytest.raises(ValueError, match="Unknown Swin variant 'XL'"):
        vit_zoo.Swin("XL")
    with pytest.raises(ValueError, match="Unknown weights 'imagenet'.*'ms_in1k'"):
        vit_zoo.Swin_T(weights="imagenet")


def test_weights_of_another_variant(swin_reference):
    with pytest.raises(vit_zoo.weights.CheckpointError, match="nothing was loaded"):
        vit_zoo.Swin_S(weights=swin_reference / "swin_t.safetensors")
