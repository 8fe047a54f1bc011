"""XCiT: parity with timm (every parameter and BatchNorm statistic perturbed; 224 px, a model
for any size at 256x320, nano/8 at a size the patches do not tile), parameter counts of every
builder, what weight decay and layer decay see, cost linear in tokens, saving, training,
TFLite, the applications arguments and bad input."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json

import keras
import numpy as np
import pytest

from tests.helpers import randomize, relative_error, run_python, run_reference
from vit_zoo import complexity, structure
from vit_zoo.layers.xcit import fourier_features
from vit_zoo.models import xcit
from vit_zoo.models.vit import ViT, ViTArch
from vit_zoo.models.xcit import XCiT, XCiTArch, decode_variant, timm_name
from vit_zoo.train.optimizers import weight_decay_per_variable
from vit_zoo.weights import CheckpointError, xcit_layout

pytestmark = pytest.mark.xdist_group("xcit")

TOLERANCE = 1e-4
TINY = XCiTArch("tiny", embed_dim=32, depth=1, num_heads=4, patch_size=8, mlp_ratio=2.0,
                class_attention_depth=1)
TIMM_NAMES = {builder: timm_name(variant) for builder, (_, variant) in xcit.BUILDERS.items()}
CASES = {
    "parity": {
        "t12": dict(arch="xcit_tiny_12_p16_224", seed=0, classes=1000, batch=2,
                    sizes=[[224, 224], [256, 320]]),
        "n12p8": dict(arch="xcit_nano_12_p8_224", seed=3, classes=10, batch=2, sizes=[[60, 90]]),
    },
    "counts": sorted(TIMM_NAMES.values()),
    "decay": {"t2": dict(arch="xcit_tiny_12_p16_224", kwargs=dict(depth=2, num_classes=10))},
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run_reference("timm_xcit.py", tmp_path_factory.mktemp("timm_xcit"), CASES)


def _load(reference, case: str, size: str, what: str) -> np.ndarray:
    return np.load(reference / f"{case}.{size}.{what}.npy")


def _tiny(seed: int = 0, **options):
    """A tiny XCiT, every variable random (norm scales and LayerScales around 1)."""
    options = {"input_shape": (48, 40, 3), "classes": 5, **options}
    return randomize(XCiT(TINY, **options), seed, scale=0.05, gamma_center=1.0)


def _images(shape, count: int = 2, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (count, *shape)).astype("float32")


# --- parity with timm -------------------------------------------------------------------------


def _tokens(model: keras.Model) -> keras.Model:
    """The same layers up to the final LayerNorm: every token, class token first."""
    return keras.Model(model.input, model.get_layer("norm").output)


def _run(model: keras.Model, images: np.ndarray) -> np.ndarray:
    # An eager call: no graph to trace for a model run once or twice.
    return keras.ops.convert_to_numpy(model(images, training=False))


def test_a_model_for_any_size_matches_timm_at_224_and_256x320(reference):
    """T12/16 built for (None, None, 3) from timm's .safetensors: the logits at 224 px and at
    256x320, and every token there (the class-attention blocks change the patch tokens too,
    which average pooling and feature outputs read), give timm's."""
    model = XCiT("T12/16", weights=reference / "t12.safetensors", input_shape=(None, None, 3),
                 classifier_activation=None)
    errors = {}
    for size in ("224x224", "256x320"):
        images = _load(reference, "t12", size, "images")
        errors[f"{size} logits"] = relative_error(_run(model, images),
                                                  _load(reference, "t12", size, "logits"))
    tokens = _run(_tokens(model), images)
    errors["256x320 tokens"] = relative_error(tokens, _load(reference, "t12", size, "features"))
    print("\nT12/16 (any-size model): " + ", ".join(f"{k} {v:.2e}" for k, v in errors.items()))
    assert tokens.shape == (2, 1 + 16 * 20, 192)
    assert max(errors.values()) <= TOLERANCE


def test_another_class_count_gets_a_zero_head_and_everything_else_loads(reference):
    """XCiT_T12_P16 at its default 224 px with 7 classes: a warning, a zero head, and every
    token before the head as timm computes it."""
    with pytest.warns(UserWarning, match="checkpoint has 1000 classes, the model 7"):
        model = xcit.XCiT_T12_P16(weights=reference / "t12.safetensors", classes=7)
    assert not np.any(keras.ops.convert_to_numpy(model.get_layer("head").kernel))
    images = _load(reference, "t12", "224x224", "images")
    error = relative_error(_run(_tokens(model), images),
                           _load(reference, "t12", "224x224", "features"))
    print(f"\nT12/16 224x224 tokens (fixed-size model): {error:.2e}")
    assert error <= TOLERANCE


def test_nano_p8_matches_timm_where_patches_do_not_tile_the_image(reference):
    """Nano (the class-attention blocks normalize the class token only), 8 px patches, 60x90
    px: the stem's stride-2 convolutions meet odd sizes (60 -> 30 -> 15 -> 8)."""
    model = xcit.XCiT_N12_P8(weights=reference / "n12p8.safetensors", input_shape=(60, 90, 3),
                             classifier_activation=None)
    error = relative_error(_run(model, _load(reference, "n12p8", "60x90", "images")),
                           _load(reference, "n12p8", "60x90", "logits"))
    print(f"\nN12/8 60x90 logits: {error:.2e}")
    assert error <= TOLERANCE


def test_weights_of_another_variant_are_refused_by_name(reference):
    """A one-block 32-wide XCiT refuses T12/16's weights, naming variables and shapes."""
    with pytest.raises(CheckpointError, match=r"nothing was loaded:\n  block_1/\S+: shape "
                       r"\([\d, ]+\) has no matching model variable"):
        XCiT(TINY, weights=reference / "t12.safetensors")


# --- parameters, weight decay, layer decay, cost ----------------------------------------------


def _counts(builder: str) -> tuple[int, int]:
    """(trainable, non-trainable) sizes of a builder's model, built without allocating it:
    Keras keeps variables waiting for initialization per thread, so a thread of its own leaves
    nothing behind."""

    def count() -> tuple[int, int]:
        with keras.StatelessScope(initialize_variables=False):
            model = getattr(xcit, builder)(input_shape=(32, 32, 3))
        return tuple(sum(int(np.prod(v.shape)) for v in variables)
                     for variables in (model.trainable_weights, model.non_trainable_weights))

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(count).result()


@pytest.mark.parametrize("builder", list(TIMM_NAMES))
def test_parameter_count_equals_timm(reference, builder):
    """Trainable variables = timm's parameters; the BatchNorm moving statistics = timm's
    running_mean / running_var buffers."""
    expected = json.loads((reference / "counts.json").read_text())[TIMM_NAMES[builder]]
    assert _counts(builder) == (expected["parameters"], expected["running_stats"])


def test_weight_decay_exempts_what_timm_exempts(reference):
    """Through the layout translator, exempt ones and decayed zeros: rank <= 1 (LayerScale
    gammas, norms, biases), the class token and the position encoding's projection are
    exempt; the XCA temperature (heads, 1, 1) is decayed, as timm's optimizer factory does."""
    listed = json.loads((reference / "decay.t2.json").read_text())
    raw = {key: np.full(shape, float(key in listed["exempt"]), "float32")
           for key, shape in listed["shapes"].items()}
    translated, unknown = xcit_layout.from_timm(raw)
    assert not unknown
    expected = {path: bool(value.flat[0]) for path, value in translated.items()}
    model = XCiT(dataclasses.replace(decode_variant("T12/16"), depth=2), classes=10,
                 input_shape=(32, 32, 3))
    decays = weight_decay_per_variable(model, 0.05)
    assert set(decays) == set(expected)
    exempt = {path for path, decay in decays.items() if decay == 0.0}
    assert {path for path, is_exempt in expected.items() if is_exempt} == exempt
    rank = {variable.path: len(variable.shape) for variable in model.trainable_variables}
    assert {path for path in exempt if rank[path] >= 2} == {
        "cls_token/token", "pos_embed/token_projection/kernel"}
    assert "block_0/attn/temperature" not in exempt


def test_xca_and_class_attention_blocks_are_the_units_of_layer_decay():
    model = XCiT(TINY, input_shape=(32, 32, 3))
    [blocks] = structure.block_groups(model)
    assert [block.name for block in blocks] == ["block_0", "cls_attn_block_0"]
    ids = structure.layer_ids(model)
    assert ids["patch_embed/conv_0/kernel"] == ids["pos_embed/token_projection/kernel"] == (0, 2)
    assert ids["block_0/attn/qkv/kernel"] == (1, 2)
    # The class token joins the block it feeds (timm counts it with the stem).
    assert ids["cls_token/token"] == ids["cls_attn_block_0/attn/q/kernel"] == (2, 2)
    assert ids["norm/gamma"] == ids["head/kernel"] == (3, 2)


def test_cost_grows_with_the_token_count_not_its_square():
    """Doubling the side (4x the tokens) at most quadruples XCiT's multiply-accumulates
    (a little less: the position encoding costs H + W); a ViT of the same width and depth
    grows faster, by its N x N attention."""
    def growth(build) -> float:
        return complexity.macs(build(128)) / complexity.macs(build(64))

    xcit_growth = growth(lambda side: XCiT(TINY, input_shape=(side, side, 3)))
    vit = ViTArch("tiny", TINY.embed_dim, TINY.depth, TINY.num_heads, TINY.mlp_dim, 8)
    vit_growth = growth(lambda side: ViT(vit, input_shape=(side, side, 3)))
    print(f"\nMACs 64 -> 128 px: XCiT x{xcit_growth:.3f}, ViT x{vit_growth:.3f}")
    assert 3.9 < xcit_growth <= 4.0 < vit_growth


def test_fourier_features_follow_the_formula():
    """Pair k of position p (of n) is (sin, cos)(2 pi p / (n + 1e-6) / 10000^(2k / 32))."""
    features = keras.ops.convert_to_numpy(fourier_features(5, 32, 10000.0))
    angle = 2 * np.pi * 3 / (5 + 1e-6) / 10000 ** (2 * 7 / 32)  # position 3, pair 7
    np.testing.assert_allclose(features[2, 14:16], [np.sin(angle), np.cos(angle)], rtol=1e-5)


# --- saving, training, export ---------------------------------------------------------------

_LOAD_IN_FRESH_PROCESS = """
import sys
import keras
import numpy as np
import vit_zoo
import vit_zoo  # registers the XCiT layers

for stem in sys.argv[1:]:
    model = keras.saving.load_model(stem + ".keras", safe_mode=True)
    outputs = model(np.load(stem + ".images.npy"), training=False)
    np.save(stem + ".loaded.npy", keras.ops.convert_to_numpy(outputs))
"""


def test_keras_file_reloads_in_a_fresh_process_and_as_weights(tmp_path):
    """A .keras file loads in safe mode in a process that imports only vit_zoo, with identical
    outputs (also a model for any size, run at a size it was not built at); the same file and
    a .weights.h5 serve as `weights=` of a fresh builder."""
    models = {
        "fixed": (_tiny(drop_path_rate=0.1, dropout_rate=0.1), _images((48, 40, 3))),
        "any_size": (_tiny(1, input_shape=(None, None, 3), include_top=False, pooling="avg"),
                     _images((24, 56, 3))),
    }
    expected = {}
    for name, (model, images) in models.items():
        expected[name] = _run(model, images)
        np.save(tmp_path / f"{name}.images.npy", images)
        model.save(tmp_path / f"{name}.keras")
    run_python(["-c", _LOAD_IN_FRESH_PROCESS, *(str(tmp_path / name) for name in models)])
    for name, outputs in expected.items():
        np.testing.assert_array_equal(np.load(tmp_path / f"{name}.loaded.npy"), outputs)
    model, images = models["fixed"]
    model.save_weights(tmp_path / "fixed.weights.h5")
    for path in ("fixed.keras", "fixed.weights.h5"):
        rebuilt = XCiT(TINY, input_shape=(48, 40, 3), classes=5, weights=tmp_path / path)
        np.testing.assert_array_equal(_run(rebuilt, images), expected["fixed"])


def test_a_few_training_steps_lower_the_loss_and_move_every_variable():
    """Five `fit` steps on one batch (Adam, no weight decay: only a gradient moves a variable)
    lower the loss, and every trainable variable (temperatures, LayerScales, the position
    encoding, BatchNorm scales) gets a gradient; BatchNorm's moving statistics update."""
    keras.utils.set_random_seed(0)
    model = _tiny(classifier_activation=None)
    images, labels = _images((48, 40, 3), count=8, seed=2), np.arange(8) % 5
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [v.numpy() for v in model.weights]
    losses = model.fit(images, labels, batch_size=8, epochs=5, verbose=0).history["loss"]
    print(f"\nXCiT tiny: loss {losses[0]:.4f} -> {losses[-1]:.4f} after 4 updates")
    assert losses[-1] < losses[0], losses
    unchanged = [v.path for v, value in zip(model.weights, before)
                 if np.array_equal(v.numpy(), value)]
    assert not unchanged, unchanged


def test_converts_to_builtin_only_tflite_and_matches(tmp_path):
    import vit_zoo.export

    model = _tiny(classifier_activation=None)
    report = vit_zoo.export.tflite(model, tmp_path / "xcit.tflite",
                                   validation_data=_images((48, 40, 3)))
    print(f"\n{report}")
    assert report.max_relative_error <= 1e-5
    assert not any(op.startswith("Flex") for op in report.ops)


# --- arguments and bad input ----------------------------------------------------------------


def test_applications_arguments():
    tensor = keras.Input((40, 56, 3))
    model = XCiT(TINY, include_top=False, pooling="token", input_tensor=tensor, name="mine")
    assert model.name == "mine" and model.output_shape == (None, 32)
    assert XCiT(TINY, include_top=False, input_shape=(40, 56, 3)).output_shape == (
        None, 1 + 5 * 7, 32)
    logits = XCiT(TINY, classes=3, classifier_activation=None, input_shape=(32, 32, 3))
    assert logits.output_shape == (None, 3) and logits.get_layer("head").activation is \
        keras.activations.linear
    raw = _tiny(include_preprocessing=False)
    assert "preprocessing" not in [layer.name for layer in raw.layers]
    assert decode_variant("L24/8") == XCiTArch("L24/8", 768, 24, 16, 8, True, 1e-5)
    assert decode_variant("N12/16").tokens_norm is False
    assert [timm_name(v) for v in ("N12/16", "M24/8")] == [
        "xcit_nano_12_p16_224", "xcit_medium_24_p8_224"]


def test_bad_input():
    with pytest.raises(ValueError, match="Unknown XCiT variant 'T12/4'.*patch 8 or 16"):
        XCiT("T12/4")
    with pytest.raises(ValueError, match="Unknown XCiT variant 'X12/16'"):
        XCiT("X12/16")
    with pytest.raises(ValueError, match="pooling must be one of .*'token', 'avg'.*'map'"):
        XCiT(TINY, include_top=False, pooling="map")
    with pytest.raises(ValueError, match="3 channels"):
        XCiT(TINY, input_shape=(32, 32, 1))
    with pytest.raises(ValueError, match="Unknown weights 'imagenet' for xcit T12/16"):
        xcit.XCiT_T12_P16(weights="imagenet")
    with pytest.raises(ValueError, match="8 or 16 px patches"):
        XCiT(dataclasses.replace(TINY, patch_size=4))
