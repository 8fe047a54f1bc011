"""Layer-level checks: resampling against scipy and torch, configs, stochastic depth."""

import numpy as np
import pytest
import scipy.ndimage
from keras import ops

from tests.helpers import run_python
from vit_zoo import layers

SIZES = [((14, 14), (24, 24)), ((24, 24), (14, 14)), ((14, 14), (10, 21)), ((7, 7), (7, 7)),
         ((14, 14), (1, 5))]


def _grid(shape, seed=0):
    return np.random.default_rng(seed).normal(size=(*shape, 5)).astype("float32")


@pytest.mark.parametrize("source, target", SIZES)
def test_bilinear_matches_scipy_zoom_order_1(source, target):
    grid = _grid(source)
    ours = ops.convert_to_numpy(layers.resample_grid(grid, target, "bilinear"))
    zoom = (target[0] / source[0], target[1] / source[1], 1)
    expected = scipy.ndimage.zoom(grid, zoom, order=1)
    assert expected.shape == ours.shape
    np.testing.assert_allclose(ours, expected, atol=1e-5)


_TORCH_BICUBIC = """
import sys, numpy as np, torch, torch.nn.functional as F
grid = np.load(sys.argv[1])
out = F.interpolate(torch.from_numpy(grid).permute(2, 0, 1)[None], size=(int(sys.argv[3]),
    int(sys.argv[4])), mode="bicubic", antialias=True, align_corners=False)
np.save(sys.argv[2], out[0].permute(1, 2, 0).numpy())
"""


@pytest.mark.parametrize("source, target", SIZES[:4])
def test_bicubic_matches_torch_antialiased_bicubic(tmp_path, source, target):
    grid = _grid(source, seed=1)
    np.save(tmp_path / "grid.npy", grid)
    run_python(["-c", _TORCH_BICUBIC, str(tmp_path / "grid.npy"), str(tmp_path / "out.npy"),
                str(target[0]), str(target[1])])
    ours = ops.convert_to_numpy(layers.resample_grid(grid, target, "bicubic"))
    np.testing.assert_allclose(ours, np.load(tmp_path / "out.npy"), atol=1e-5)


def test_same_size_resampling_is_identity():
    grid = _grid((9, 6))
    for method in layers.INTERPOLATIONS:
        np.testing.assert_array_equal(
            ops.convert_to_numpy(layers.resample_grid(grid, (9, 6), method)), grid)


@pytest.mark.parametrize(
    "layer",
    [
        layers.PatchEmbedding(4, 8, use_bias=False),
        layers.PositionEmbedding((3, 5), num_prefix_tokens=0, interpolation="bicubic"),
        layers.EncoderBlock(2, 16, "quick_gelu", 1e-5, 0.1, 0.2, 0.3, layer_scale_init=0.5),
        layers.Mlp(16, "gelu_tanh", 0.1, output_dim=3),
        layers.MultiHeadSelfAttention(4, use_bias=False, attention_dropout=0.1),
        layers.MultiHeadAttentionPooling(2, 8, "gelu", 1e-5),
        layers.TokenPooling("avg", num_prefix_tokens=2),
        layers.DropPath(0.25, seed=3),
        layers.LayerScale(0.3),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_config_round_trip(layer):
    clone = type(layer).from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_drop_path_drops_whole_examples_and_keeps_the_mean():
    drop = layers.DropPath(0.25, seed=0)
    x = np.ones((4000, 3, 2), "float32")
    y = ops.convert_to_numpy(drop(x, training=True))
    per_example = y.reshape(4000, -1)
    assert set(np.unique(per_example)) <= {np.float32(0.0), np.float32(1.0 / 0.75)}
    assert np.all(per_example.min(axis=1) == per_example.max(axis=1))  # all-or-nothing
    assert abs(per_example.mean() - 1.0) < 0.05
    np.testing.assert_array_equal(ops.convert_to_numpy(drop(x, training=False)), x)


def test_attention_scores_path_equals_fused_path():
    attention = layers.MultiHeadSelfAttention(4)
    tokens = np.random.default_rng(0).normal(size=(2, 7, 16)).astype("float32")
    fused = ops.convert_to_numpy(attention(tokens))
    explicit, probabilities = attention(tokens, return_attention_scores=True)
    np.testing.assert_allclose(ops.convert_to_numpy(explicit), fused, rtol=1e-5, atol=1e-6)
    assert probabilities.shape == (2, 4, 7, 7)
    np.testing.assert_allclose(ops.convert_to_numpy(probabilities).sum(-1), 1.0, rtol=1e-6)


def test_unknown_activation_and_interpolation_are_refused():
    with pytest.raises(ValueError, match="Unknown MLP activation 'relu6'"):
        layers.Mlp(8, "relu6")
    with pytest.raises(ValueError, match="interpolation must be one of"):
        layers.PositionEmbedding((2, 2), interpolation="nearest")


def test_group_norm_matches_keras_group_normalization():
    import keras

    x = np.random.default_rng(2).normal(1.0, 3.0, size=(2, 5, 7, 64)).astype("float32")
    ours = layers.GroupNorm(32, epsilon=1e-6)
    theirs = keras.layers.GroupNormalization(32, epsilon=1e-6)
    ours.build(x.shape)
    theirs.build(x.shape)
    gamma, beta = np.linspace(0.5, 2, 64, dtype="float32"), np.linspace(-1, 1, 64, dtype="float32")
    for layer in (ours, theirs):
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
    np.testing.assert_allclose(ops.convert_to_numpy(ours(x)), ops.convert_to_numpy(theirs(x)),
                               atol=2e-5)
    with pytest.raises(ValueError, match="cannot be split into 32 groups"):
        layers.GroupNorm(32).build((1, 4, 4, 48))
