"""vit_zoo.inspect and `vit-zoo explain`: known answers on hand-made attention, shapes on tiny
models of every family, PNG files, and the command on a digits ViT trained here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vit_zoo
from vit_zoo import inspect
from vit_zoo.inspect import figures
from vit_zoo.inspect.rollout import discard_lowest, fuse_heads
from vit_zoo.models.clip import CLIPArch
from vit_zoo.models.mixer import MixerArch
from vit_zoo.models.swin import SwinArch
from vit_zoo.models.vit import ViTArch

ROOT = Path(__file__).parent.parent
TINY = ViTArch("tiny", hidden_dim=32, depth=2, num_heads=2, mlp_dim=64, patch_size=8)
# The ResNet root alone (stride 4) and 2-px patches on it: 8-px cells, a 4x4 grid at 32 px.
TINY_HYBRID = ViTArch("tiny_hybrid", hidden_dim=32, depth=2, num_heads=2, mlp_dim=64,
                      patch_size=2, stem_depths=())


def _uniform(batch, heads, length):
    return np.full((batch, heads, length, length), 1.0 / length)


def _mean_pairwise_distance(grid, cell):
    """Mean over all ordered pairs of patches (self-pairs included) of the distance between
    their centres, by a plain double loop."""
    positions = [(r, c) for r in range(grid[0]) for c in range(grid[1])]
    total = 0.0
    for r1, c1 in positions:
        for r2, c2 in positions:
            total += ((r1 - r2) ** 2 + (c1 - c2) ** 2) ** 0.5 * cell
    return total / len(positions) ** 2


# Known answers on hand-made attention.

def test_uniform_attention_gives_a_uniform_rollout_and_the_mean_pairwise_distance():
    grid = (3, 4)
    for prefix, query in ((1, "class"), (2, "class"), (0, "mean")):
        attentions = [_uniform(2, 3, prefix + 12) for _ in range(3)]
        rollout = inspect.rollout_from_attentions(attentions, grid, prefix, query=query)
        np.testing.assert_allclose(rollout, np.full((2, 3, 4), 1 / 12), rtol=1e-12)
        distance = inspect.mean_distance_from_attentions(attentions, grid, 16, prefix)
        np.testing.assert_allclose(distance, np.full((3, 3), _mean_pairwise_distance(grid, 16)),
                                   rtol=1e-6)


def test_attention_to_self_only_gives_the_identity_and_zero_distance():
    eye = np.broadcast_to(np.eye(13), (2, 3, 13, 13))
    np.testing.assert_allclose(inspect.rollout_matrix([eye, eye, eye]), np.broadcast_to(
        np.eye(13), (2, 13, 13)))
    np.testing.assert_array_equal(inspect.mean_distance_from_attentions([eye, eye], (3, 4), 16),
                                  np.zeros((2, 3)))


def test_one_hot_attention_to_a_patch_puts_the_whole_rollout_there():
    grid, target = (3, 4), (1, 2)
    for prefix in (1, 2):
        attention = np.zeros((1, 2, prefix + 12, prefix + 12))
        attention[..., prefix + target[0] * grid[1] + target[1]] = 1.0  # every token, every head
        rollout = inspect.rollout_from_attentions([attention] * 4, grid, prefix)
        expected = np.zeros((1, *grid))
        expected[0, target[0], target[1]] = 1.0
        np.testing.assert_allclose(rollout, expected, atol=1e-12)


def test_head_fusion_max_and_min_on_a_hand_made_case():
    # Class token + a 1x3 grid; two heads. The class row fuses to max [.4 .3 .3 .4] and
    # min [.1 .2 .2 .1]; adding the identity only touches the class column, so the map is the
    # fused row's patch part, normalized: [.3 .3 .4] and [.4 .4 .2].
    heads = np.array([[[0.1, 0.2, 0.3, 0.4], [0.25, 0.25, 0.25, 0.25],
                       [0.7, 0.1, 0.1, 0.1], [0.4, 0.3, 0.2, 0.1]],
                      [[0.4, 0.3, 0.2, 0.1], [0.1, 0.6, 0.1, 0.2],
                       [0.1, 0.1, 0.7, 0.1], [0.2, 0.2, 0.2, 0.4]]])[None]
    np.testing.assert_allclose(fuse_heads(heads, "max")[0, 0], [0.4, 0.3, 0.3, 0.4])
    np.testing.assert_allclose(fuse_heads(heads, "min")[0, 1], [0.1, 0.25, 0.1, 0.2])
    maps = {fusion: inspect.rollout_from_attentions([heads], (1, 3), head_fusion=fusion)[0, 0]
            for fusion in ("mean", "max", "min")}
    np.testing.assert_allclose(maps["max"], [0.3, 0.3, 0.4])
    np.testing.assert_allclose(maps["min"], [0.4, 0.4, 0.2])
    np.testing.assert_allclose(maps["mean"], [0.25, 0.25, 0.25] / np.float64(0.75))
    # Two blocks: the second block's (A + I) / 2 times the first's, written out by hand for
    # head fusion "max": block 1 rows [1.4 .3 .3 .4]/2.4, ...; only the class row matters.
    second = np.zeros((1, 1, 4, 4))
    second[..., :, 3] = 1.0  # every token reads the last patch
    two = inspect.rollout_matrix([heads, second], "max")[0]
    first_rows = (fuse_heads(heads, "max")[0] + np.eye(4))
    first_rows /= first_rows.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(two[0], 0.5 * first_rows[0] + 0.5 * first_rows[3])
    with pytest.raises(ValueError, match="head_fusion"):
        inspect.rollout_from_attentions([heads], (1, 3), head_fusion="median")


def test_discard_ratio_drops_the_weakest_weights_but_never_the_class_column_or_self():
    attention = np.array([[0.1, 0.2, 0.3, 0.4],
                          [0.4, 0.3, 0.2, 0.1],
                          [0.05, 0.3, 0.05, 0.6],
                          [0.3, 0.5, 0.15, 0.05]])[None]
    # Each patch row has two candidates (not column 0, not itself): ratio 0.5 drops one.
    expected = np.array([[0.1, 0.0, 0.3, 0.4],
                         [0.4, 0.3, 0.2, 0.0],
                         [0.05, 0.0, 0.05, 0.6],
                         [0.3, 0.5, 0.0, 0.05]])
    np.testing.assert_allclose(discard_lowest(attention, 0.5)[0], expected)
    np.testing.assert_allclose(discard_lowest(attention, 0.0)[0], attention[0])
    # With DeiT's two prefix tokens column 1 is protected too: one candidate per patch row,
    # and 0.5 of one rounds down to none.
    np.testing.assert_allclose(discard_lowest(attention, 0.5, num_prefix_tokens=2)[0],
                               attention[0])
    # Through the rollout: the class row keeps [.1 0 .3 .4] -> map [0 3/7 4/7].
    rollout = inspect.rollout_from_attentions([attention[:, None]], (1, 3), discard_ratio=0.5)
    np.testing.assert_allclose(rollout[0, 0], [0.0, 3 / 7, 4 / 7])
    with pytest.raises(ValueError, match="discard_ratio"):
        inspect.rollout_from_attentions([attention[:, None]], (1, 3), discard_ratio=1.0)


def test_mean_distance_leaves_the_class_token_out_and_renormalizes():
    # A 1x2 grid, 10 px cells. Patch 0 gives half its attention to the class token and a
    # quarter to each patch: renormalized over the patches, half of it travels 10 px.
    attention = np.array([[1.0, 0.0, 0.0],
                          [0.5, 0.25, 0.25],
                          [0.0, 1.0, 0.0]])[None, None]
    distance = inspect.mean_distance_from_attentions([attention], (1, 2), 10)
    np.testing.assert_allclose(distance, [[(5.0 + 10.0) / 2]])


def test_identical_position_embeddings_are_similar_everywhere():
    vector = np.random.default_rng(0).normal(size=16)
    similarity = inspect.similarity_from_embeddings(np.broadcast_to(vector, (3, 4, 16)))
    np.testing.assert_allclose(similarity, np.ones((3, 4, 3, 4)), rtol=1e-6)


def test_window_maps_go_back_where_the_windows_were():
    # A 4x4 map in 2x2 windows, shifted by 1: every query attends to its window's first token,
    # which sits at (2a, 2b) of the shifted map, i.e. at (2a + 1, 2b + 1) of the original.
    probabilities = np.zeros((2 * 4, 3, 4, 4))
    probabilities[..., 0] = 1.0
    maps = inspect.window_maps_to_grid(probabilities, (4, 4), (2, 2), (4, 4), (1, 1))
    expected = np.zeros((4, 4))
    expected[1::2, 1::2] = 1.0  # all four queries give it 1; their mean is 1
    np.testing.assert_allclose(maps, np.broadcast_to(expected, (2, 3, 4, 4)))
    # A 3x3 map padded to 4x4: padded queries are left out of the average and padded keys cut.
    probabilities = np.zeros((4, 1, 4, 4))
    probabilities[..., 0] = 1.0  # every query reads its window's first token, except:
    probabilities[1, :, 1, :] = [0, 0, 1, 0]  # window (0, 1): padded query (0, 3) reads (1, 2)
    probabilities[3, :, 3, :] = [0, 0, 0, 1]  # window (1, 1): padded query reads padded key
    maps = inspect.window_maps_to_grid(probabilities, (3, 3), (2, 2), (4, 4), (0, 0))[0, 0]
    expected = np.zeros((3, 3))
    expected[0::2, 0::2] = 1.0
    np.testing.assert_allclose(maps, expected)


def test_upsample_and_overlay():
    grid = np.array([[0.0, 1.0], [2.0, 3.0]])
    np.testing.assert_array_equal(inspect.upsample(grid, (4, 4), "nearest"),
                                  np.kron(grid, np.ones((2, 2))))
    smooth = inspect.upsample(grid, (4, 4))
    assert smooth.shape == (4, 4) and smooth[0, 0] == 0.0 and smooth[-1, -1] == 3.0
    np.testing.assert_allclose(smooth.mean(), grid.mean())  # symmetric weights keep the mean
    picture = inspect.overlay(np.full((4, 4, 3), 255.0), grid, alpha=0.5)
    assert picture.shape == (4, 4, 3) and 0.0 <= picture.min() and picture.max() <= 1.0


# Tiny models of every family.

def _images(size=32, count=2, seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (count, size, size, 3)).astype("float32")


def _tiny_clip():
    arch = CLIPArch("tiny", TINY, 32, 16, 16, 2, 1)
    return vit_zoo.CLIP(arch, context_length=8)


VIT_LIKE = {
    "vit": (lambda: vit_zoo.ViT(TINY, input_shape=(32, 32, 3), classes=3), 1, "class"),
    "deit": (lambda: vit_zoo.ViT(TINY, input_shape=(32, 32, 3), classes=3,
                                 distillation_token=True), 2, "class"),
    "avg_pooled": (lambda: vit_zoo.ViT(TINY, input_shape=(32, 32, 3), classes=3,
                                       pooling="avg"), 0, "mean"),
    "hybrid": (lambda: vit_zoo.ViT(TINY_HYBRID, input_shape=(32, 32, 3), classes=3), 1, "class"),
    "clip": (_tiny_clip, 1, "class"),
}


@pytest.mark.parametrize("kind", list(VIT_LIKE))
def test_model_level_functions_on_vit_like_models(kind):
    build, prefix, query = VIT_LIKE[kind]
    model, images = build(), _images()
    attention = inspect.collect_attention(model, images)
    assert attention.layout == inspect.TokenLayout(prefix, (4, 4), (8.0, 8.0), query)
    assert [a.shape for a in attention.layers] == [(2, 2, prefix + 16, prefix + 16)] * 2
    np.testing.assert_allclose(attention.layers[0].sum(axis=-1), 1.0, rtol=1e-5)

    rollout = inspect.attention_rollout(model, images, "max", 0.2)
    np.testing.assert_allclose(rollout, inspect.rollout_from_attentions(
        attention.layers, (4, 4), prefix, "max", 0.2, query), rtol=1e-5)
    np.testing.assert_allclose(rollout.sum(axis=(1, 2)), 1.0, rtol=1e-6)
    maps = inspect.maps_from_attentions(attention.layers, (4, 4), prefix, query)
    assert maps.shape == (2, 2, 2, 4, 4)
    np.testing.assert_allclose(inspect.attention_maps(model, images, layer=1, head=0),
                               maps[:, 1, 0], rtol=1e-6)
    distance = inspect.mean_attention_distance(model, images)
    assert distance.shape == (2, 2)
    assert (distance > 0).all() and (distance < 32 * 2**0.5).all()
    similarity = inspect.position_embedding_similarity(model)
    assert similarity.shape == (4, 4, 4, 4)
    np.testing.assert_allclose(np.einsum("ijij->ij", similarity), 1.0, rtol=1e-5)
    if kind == "hybrid":
        with pytest.raises(ValueError, match="ResNet feature channels"):
            inspect.patch_embedding_filters(model)
    else:
        filters = inspect.patch_embedding_filters(model, count=10)
        assert filters.shape == (10, 8, 8, 3)
        assert filters.min() == 0.0 and filters.max() == 1.0


def test_position_similarity_of_a_model_with_identical_embeddings_is_one():
    model = vit_zoo.ViT(TINY, input_shape=(32, 32, 3), include_top=False)
    variable = model.get_layer("pos_embed").embedding
    variable.assign(np.broadcast_to(np.linspace(-1, 1, 32), variable.shape))
    np.testing.assert_allclose(inspect.position_embedding_similarity(model),
                               np.ones((4, 4, 4, 4)), rtol=1e-6)


def test_patch_filters_are_the_principal_components_of_the_kernel():
    # A kernel whose filters vary along one pixel direction only has that as its first
    # component (up to sign, fixed positive at its peak), scaled to [0, 1].
    direction = np.zeros(4 * 4 * 3)
    direction[5] = 1.0
    weights = np.random.default_rng(0).normal(size=32)
    kernel = (direction[:, None] * weights[None, :]).reshape(4, 4, 3, 32)
    first = inspect.principal_filters(kernel, count=1)[0]
    np.testing.assert_allclose(first, direction.reshape(4, 4, 3), atol=1e-12)


def test_swin_window_maps_lie_on_each_stage_grid():
    arch = SwinArch("tiny", embed_dim=16, depths=(2, 2), num_heads=(1, 2))
    model = vit_zoo.Swin(arch, input_shape=(32, 32, 3), classes=3, window_size=4)
    images = _images()
    maps = inspect.swin_block_maps(model, images)
    assert {key: m.shape for key, m in maps.items()} == {
        (0, 0): (2, 1, 8, 8), (0, 1): (2, 1, 8, 8), (1, 0): (2, 2, 4, 4), (1, 1): (2, 2, 4, 4)}
    # Each window's values sum to 1: block (0, 0)'s windows are the 4x4 tiles of the map,
    # block (0, 1)'s the tiles of the map rolled back by the shift of 2.
    for key, rolled in (((0, 0), maps[0, 0]), ((0, 1), np.roll(maps[0, 1], (-2, -2), (2, 3)))):
        tiles = rolled.reshape(2, 1, 2, 4, 2, 4).sum(axis=(3, 5))
        np.testing.assert_allclose(tiles, 1.0, rtol=1e-5, err_msg=str(key))
    np.testing.assert_allclose(inspect.attention_maps(model, images, layer=(1, 1), head=1),
                               maps[1, 1][:, 1], rtol=1e-6)
    assert inspect.patch_embedding_filters(model, count=5).shape == (5, 4, 4, 3)
    with pytest.raises(ValueError, match=r"layer=\(stage, block\)"):
        inspect.attention_maps(model, images)
    with pytest.raises(ValueError, match="windows"):
        inspect.attention_rollout(model, images)
    with pytest.raises(ValueError, match="position embedding"):
        inspect.position_embedding_similarity(model)


def test_mixer_has_no_attention():
    arch = MixerArch("tiny", hidden_dim=32, depth=2, tokens_mlp_dim=16, channels_mlp_dim=64,
                     patch_size=8)
    model = vit_zoo.Mixer(arch, input_shape=(32, 32, 3), classes=3)
    for function in (inspect.attention_rollout, inspect.attention_maps,
                     inspect.mean_attention_distance):
        with pytest.raises(ValueError, match="has no attention"):
            function(model, _images())
    assert inspect.patch_embedding_filters(model, count=3).shape == (3, 8, 8, 3)


def test_a_mismatched_image_size_is_reported():
    model = vit_zoo.ViT(TINY, input_shape=(32, 32, 3), include_top=False)
    with pytest.raises(ValueError, match="32x32 px"):
        inspect.attention_rollout(model, _images(size=48))


# Figures.

def test_figures_are_written_as_png(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    image = _images(count=1)[0]
    written = [
        figures.rollout_overlay(image, rng.random((4, 4)), tmp_path / "rollout.png", "a title"),
        figures.layer_maps(image, rng.random((2, 3, 4, 4)), tmp_path / "layers.png"),
        figures.block_maps(image, {"a": rng.random((8, 8)), "b": rng.random((4, 4))},
                           tmp_path / "blocks.png"),
        figures.mean_distance_plot(rng.random((4, 3)) * 20, tmp_path / "distance.png", 32),
        figures.position_similarity_grid(rng.uniform(-1, 1, (3, 4, 3, 4)),
                                         tmp_path / "similarity.png"),
        figures.patch_filter_grid(rng.random((10, 4, 4, 3)), tmp_path / "nested" / "f.png"),
    ]
    for path in written:
        with Image.open(path) as picture:
            assert picture.format == "PNG" and picture.mode == "RGBA"
            assert picture.size[0] > 100 and picture.size[1] > 100


def test_figures_without_matplotlib_say_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r'pip install "vit_zoo\[viz\]"'):
        figures.patch_filter_grid(np.zeros((1, 4, 4, 3)), tmp_path / "f.png")


# `vit-zoo explain`.

def _ink_share_and_rollout_mass(image, rollout, cell):
    """Share of grid cells with ink, and the rollout mass on them. A cell has ink when its
    mean brightness is over a quarter of full scale (the digits are light on black)."""
    grey = image.mean(axis=-1)
    rows, columns = rollout.shape
    cells = grey.reshape(rows, cell, columns, cell).mean(axis=(1, 3))
    ink = cells > 255 / 4
    return ink.mean(), rollout[ink].sum()


@pytest.mark.slow
def test_explain_writes_figures_that_sit_on_the_strokes(tmp_path):
    """`vit-zoo explain` on a plain ViT trained here on the digits: every figure is written and
    the rollout sits on the ink. The demo's hybrid would not do: its tokens see their
    neighbourhood through the ResNet root, so its rollout barely prefers the strokes (0.48 of the
    mass on 0.45 of the cells, about as much as with the map rotated 180 degrees). Three blocks,
    15 epochs (16 s on an AMD EPYC): 0.59 of the mass on ink, 0.46 with the map transposed."""
    from PIL import Image

    from vit_zoo.train.data import digit_arrays
    from vit_zoo.train.demo import demo_config
    from vit_zoo.train.runner import train

    config = demo_config(epochs=15, output=str(tmp_path / "run"))
    config.model.shape = {**config.model.shape, "patch_size": 4, "stem_depths": None, "depth": 3}
    config.run.verbose = 0
    train(config)
    test_images = digit_arrays(16)[1][0][:6]  # the run's own test split (seed 0)
    paths = []
    for index, image in enumerate(test_images):
        path = tmp_path / f"digit{index}.png"
        Image.fromarray(np.round(image).astype("uint8")).save(path)
        paths.append(str(path))
    out = tmp_path / "explained"
    result = subprocess.run(
        [sys.executable, "-m", "vit_zoo.cli", "explain", *paths, "--model",
         str(tmp_path / "run" / "model.keras"), "--out", str(out)],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = [out / f"digit{i}_{kind}.png" for i in range(6) for kind in ("rollout", "layers")]
    expected += [out / name for name in ("mean_distance.png", "position_embedding.png",
                                         "patch_filters.png", "attention.npz")]
    assert sorted(result.stdout.split()) == sorted(str(path) for path in expected)
    assert all(path.stat().st_size > 0 for path in expected)
    shape = config.model.shape
    cell = shape["patch_size"]
    grid = config.model.image_size // cell
    arrays = np.load(out / "attention.npz")
    assert arrays["rollout"].shape == (6, grid, grid)
    assert arrays["layer_maps"].shape == (6, shape["depth"], shape["num_heads"], grid, grid)
    assert arrays["mean_distance"].shape == (shape["depth"], shape["num_heads"])
    shares, masses = zip(*(_ink_share_and_rollout_mass(image, rollout, cell)
                           for image, rollout in zip(test_images, arrays["rollout"])))
    assert np.mean(masses) > np.mean(shares) + 0.05, (shares, masses)


def test_explain_refuses_a_missing_image_readably(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "vit_zoo.cli", "explain", str(tmp_path / "nope.png"),
         "--model", "ViT_B16", "--weights", "augreg-imagenet21k+imagenet2012",
         "--out", str(tmp_path / "out")],
        env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    # TensorFlow may log to stderr while importing; the message is the last line, alone.
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line == f"vit-zoo: error: no such image file: {tmp_path / 'nope.png'}"
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_explain_checks_its_inputs_before_loading_anything(tmp_path, capsys):
    from vit_zoo import cli

    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    a_file = tmp_path / "file"
    a_file.write_text("")
    model = tmp_path / "missing.keras"
    cases = {
        ("--model", "ViT_B16"): "needs --weights",
        ("--model", "Mixer_B16", "--weights", "x"): "MLP-Mixer",
        ("--model", "NoSuchModel"): "unknown model",
        ("--model", str(model)): "no such model file",
        ("--model", "ViT_B16", "--weights", "x", "--discard-ratio", "1.5"): "--discard-ratio",
    }
    image = tmp_path / "image.png"
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), "uint8")).save(image)
    for flags, message in cases.items():
        assert cli.main(["explain", str(image), "--out", str(tmp_path / "o"), *flags]) == 2
        assert message in capsys.readouterr().err
    flags = ["--model", "ViT_B16", "--weights", "x"]
    assert cli.main(["explain", str(not_an_image), "--out", str(tmp_path / "o"), *flags]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert cli.main(["explain", str(image), "--out", str(a_file), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("vit-zoo: error: --out") and "Traceback" not in err
    # Past the cheap checks, an unknown weights tag is still the user's to fix.
    assert cli.main(["explain", str(image), "--out", str(tmp_path / "o"), *flags]) == 2
    assert capsys.readouterr().err.startswith("vit-zoo: error: ")
    assert not (tmp_path / "o").exists()
