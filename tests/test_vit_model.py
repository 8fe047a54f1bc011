"""ViT builder behaviour: shapes, pooling, .keras files as weights, intermediates, head handling.

Saving and loading every family: tests/test_families.py."""

import warnings

import keras
import numpy as np
import pytest

import vit_zoo
from tests.helpers import randomize
from vit_zoo.models.vit import ViTArch

TINY = ViTArch("tiny", hidden_dim=32, depth=2, num_heads=2, mlp_dim=64, patch_size=8)


def _images(batch=2, height=32, width=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (batch, height, width, 3)).astype("float32")


@pytest.mark.parametrize(
    "kwargs, shape",
    [
        (dict(include_top=True, classes=7), (2, 7)),
        (dict(include_top=False), (2, 1 + 16, 32)),
        (dict(include_top=False, pooling="token"), (2, 32)),
        (dict(include_top=False, pooling="avg"), (2, 32)),
        (dict(include_top=False, pooling="map"), (2, 32)),
        (dict(classes=5, representation_size=16), (2, 5)),
    ],
)
def test_output_shapes(kwargs, shape):
    model = vit_zoo.ViT(TINY, input_shape=(32, 32, 3), **kwargs)
    assert model.predict(_images(), verbose=0).shape == shape


def test_named_builders_decode_their_variant():
    model = vit_zoo.ViT_S32(input_shape=(64, 96, 3), classes=3)
    assert model.get_layer("patch_embed").kernel.shape == (32, 32, 3, 384)
    assert model.get_layer("pos_embed").grid_size == (2, 3)
    assert len([layer for layer in model.layers if layer.name.startswith("block_")]) == 12
    assert model.name == "vit_s32"


def test_non_square_and_dynamic_inputs():
    model = vit_zoo.ViT(TINY, input_shape=(None, None, 3), classes=4)
    for height, width in ((32, 32), (48, 24), (16, 64)):
        assert model.predict(_images(1, height, width), verbose=0).shape == (1, 4)


def test_softmax_head_and_custom_activation():
    model = randomize(vit_zoo.ViT(TINY, input_shape=(32, 32, 3), classes=6))
    np.testing.assert_allclose(model.predict(_images(), verbose=0).sum(axis=1), 1.0, rtol=1e-5)
    logits = vit_zoo.ViT(TINY, input_shape=(32, 32, 3), classes=6, classifier_activation=None)
    assert logits.get_layer("head").activation is keras.activations.linear


def test_include_preprocessing_false_matches_preprocess_input():
    with_layer = randomize(vit_zoo.ViT(TINY, input_shape=(32, 32, 3), classes=3))
    without = vit_zoo.ViT(TINY, input_shape=(32, 32, 3), classes=3, include_preprocessing=False)
    without.set_weights(with_layer.get_weights())
    images = _images()
    np.testing.assert_allclose(
        with_layer.predict(images, verbose=0),
        without.predict(vit_zoo.preprocess_input(images, "inception"), verbose=0),
        rtol=1e-5,
        atol=1e-6,
    )


def test_input_tensor_is_used():
    tensor = keras.Input((32, 32, 3))
    model = vit_zoo.ViT(TINY, input_tensor=tensor, classes=2)
    assert model.inputs[0] is tensor


def test_keras_file_as_weights_with_new_classes_resets_head_once(tmp_path):
    source = randomize(vit_zoo.ViT(TINY, input_shape=(32, 32, 3), classes=5))
    source.save(tmp_path / "source.keras")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = vit_zoo.ViT(TINY, input_shape=(48, 48, 3), classes=9,
                            weights=tmp_path / "source.keras")
    messages = [str(w.message) for w in caught if "head not loaded" in str(w.message)]
    assert len(messages) == 1 and "5 classes, the model 9" in messages[0]
    assert not np.any(model.get_layer("head").kernel.numpy())
    np.testing.assert_array_equal(
        model.get_layer("block_1").mlp.fc2.kernel.numpy(),
        source.get_layer("block_1").mlp.fc2.kernel.numpy(),
    )
    # 32 px -> 48 px: the 4x4 grid was resampled to 6x6, class slot kept as is.
    resized = model.get_layer("pos_embed").embedding.numpy()
    original = source.get_layer("pos_embed").embedding.numpy()
    assert resized.shape == (1, 1 + 36, 32)
    np.testing.assert_array_equal(resized[:, 0], original[:, 0])


def test_with_intermediates_exposes_blocks_and_attention():
    model = randomize(vit_zoo.ViT(TINY, input_shape=(32, 32, 3), classes=3, pooling="map"))
    probe = vit_zoo.with_intermediates(model)
    images = _images()
    outputs = probe.predict(images, verbose=0)
    assert {"embedding", "block_0", "block_1", "attention_0", "attention_1", "encoded",
            "pooled", "map_attention", "logits"} <= set(outputs)
    assert outputs["attention_0"].shape == (2, 2, 16, 16)  # MAP models have no class token
    np.testing.assert_allclose(outputs["attention_1"].sum(axis=-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(outputs["logits"], model.predict(images, verbose=0), rtol=1e-5,
                               atol=1e-6)
    # The probe shares the model's variables: no copies.
    assert {id(v) for v in probe.weights} == {id(v) for v in model.weights}


def test_attention_dropout_and_drop_path_only_act_in_training():
    model = randomize(vit_zoo.ViT(TINY, input_shape=(32, 32, 3), classes=3, dropout_rate=0.2,
                                   attention_dropout=0.2, drop_path_rate=0.3))
    images = _images()
    first, second = model(images, training=False), model(images, training=False)
    np.testing.assert_array_equal(first, second)
    assert not np.allclose(model(images, training=True), first)


def test_layer_scale_and_bicubic_options_round_trip(tmp_path):
    model = randomize(vit_zoo.ViT(TINY, input_shape=(None, None, 3), classes=3,
                                   layer_scale_init=0.1, position_interpolation="bicubic"))
    assert model.get_layer("block_0").ls1 is not None
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    images = _images(1, 40, 56)
    np.testing.assert_array_equal(restored.predict(images, verbose=0),
                                  model.predict(images, verbose=0))
