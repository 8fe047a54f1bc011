"""Hybrid ResNet+ViT and MLP-Mixer: timm's stock numerics next to the JAX originals', other
sizes, stem features, checkpoint errors. Parity with timm, saving and training:
tests/test_families.py."""

import numpy as np
import pytest

import vit_zoo
from tests.helpers import relative_error
from tests.parity_cases import HYBRID_MIXER_CASES
from vit_zoo import numerics as nm
from vit_zoo.weights import CheckpointError

TOLERANCE = 1e-4


def _build(spec, **kwargs):
    build = vit_zoo.Mixer if spec["family"] == "mixer" else vit_zoo.ViT
    return build(spec["variant"], classifier_activation=None, **kwargs)


def _case(reference, name):
    spec = HYBRID_MIXER_CASES[name]
    suffix = "npz" if spec["format"] == "npz" else "safetensors"
    return (spec, reference / f"{name}.{suffix}", np.load(reference / f"{name}.images.npy"),
            np.load(reference / f"{name}.logits.npy"))


@pytest.mark.parametrize("name", [n for n, s in HYBRID_MIXER_CASES.items()
                                  if s["upstream_numerics"]])
def test_timm_numerics_on_the_same_weights(hybrid_mixer_reference, name):
    """numerics=TIMM_VIT reproduces timm's stock numerics; the gap between the two is reported."""
    spec, weights, images, upstream = _case(hybrid_mixer_reference, name)
    stock = np.load(hybrid_mixer_reference / f"{name}.timm_logits.npy")
    model = _build(spec, weights=weights, input_shape=(*spec["eval_size"], 3),
                   numerics=nm.TIMM_VIT)
    assert relative_error(model.predict(images, verbose=0), stock) <= TOLERANCE
    gap = relative_error(stock, upstream)
    print(f"{name}: timm stock numerics vs JAX originals, relative gap {gap:.2e}")
    assert gap > TOLERANCE / 10  # the numerics choice is live, not a no-op


def test_dynamic_size_hybrid(hybrid_mixer_reference):
    spec, weights, images, expected = _case(hybrid_mixer_reference, "rti16_npz")
    model = _build(spec, weights=weights, input_shape=(None, None, 3))
    assert relative_error(model.predict(images, verbose=0), expected) <= TOLERANCE
    assert model.predict(np.zeros((1, 160, 96, 3), "float32"), verbose=0).shape == (1, 1000)


def test_hybrid_at_384_from_224_weights(hybrid_mixer_reference):
    spec, weights, _, _ = _case(hybrid_mixer_reference, "r26s32_npz")
    model = _build(spec, weights=weights, input_shape=(384, 384, 3))
    assert model.get_layer("pos_embed").grid_size == (12, 12)
    source = np.load(weights)["Transformer/posembed_input/pos_embedding"]
    np.testing.assert_array_equal(model.get_layer("pos_embed").embedding.numpy()[:, 0],
                                  source[:, 0])


def test_stem_features_for_dense_tasks():
    model = vit_zoo.R50_ViT_B16(include_top=False, input_shape=(224, 224, 3))
    features = vit_zoo.stem_features(model).predict(np.zeros((1, 224, 224, 3), "float32"),
                                                    verbose=0)
    assert [f.shape for f in features] == [(1, 56, 56, 64), (1, 56, 56, 256), (1, 28, 28, 512),
                                           (1, 14, 14, 1024)]
    with pytest.raises(ValueError, match="no ResNet stem"):
        vit_zoo.stem_features(vit_zoo.ViT_Ti16())


def test_mixer_needs_a_fixed_size():
    with pytest.raises(ValueError, match="fixed input size"):
        vit_zoo.Mixer_S32(input_shape=(None, None, 3))


def test_mixer_weights_at_another_size_name_sizes_that_fit(hybrid_mixer_reference):
    _, weights, _, _ = _case(hybrid_mixer_reference, "mixer_s32_npz")
    with pytest.raises(ValueError, match=r"trained on 49 patches; a 256x256 input gives 64.*"
                                         r"224x224"):
        vit_zoo.Mixer_S32(weights=weights, input_shape=(256, 256, 3))
    assert vit_zoo.Mixer_S32(weights=weights).input_shape == (None, 224, 224, 3)


def test_mixer_weights_of_another_variant(hybrid_mixer_reference):
    _, weights, _, _ = _case(hybrid_mixer_reference, "mixer_s32_npz")
    with pytest.raises(CheckpointError, match="stem/kernel: checkpoint has shape"):
        vit_zoo.Mixer_S16(weights=weights, input_shape=(112, 112, 3))  # 49 patches too


def test_hybrid_weights_of_another_variant(hybrid_mixer_reference):
    _, weights, _, _ = _case(hybrid_mixer_reference, "r26s32_npz")
    with pytest.raises(CheckpointError, match="stem/block4/unit1/conv1/kernel"):
        vit_zoo.R50_ViT_B16(weights=weights)


def test_keras_file_keeps_the_stem_numerics(tmp_path):
    source = vit_zoo.R_ViT_Ti16(input_shape=(64, 64, 3), classes=3, numerics=nm.TIMM_VIT)
    source.save(tmp_path / "timm_numerics.keras")
    model = vit_zoo.R_ViT_Ti16(input_shape=(64, 64, 3), classes=3,
                               weights=tmp_path / "timm_numerics.keras")
    stem = model.get_layer("stem")
    assert (stem.standardization, stem.conv_epsilon, stem.norm_epsilon) == ("var", 1e-8, 1e-5)
    assert model.get_layer("block_0").activation == "gelu"
