"""PVT v2: parity with timm (logits and stage features, timm and authors' key layouts, non-224
and non-square inputs), parameter counts of every builder, inputs of any size, loading rules,
saving, training, TFLite, bad input."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from tests.helpers import randomize, relative_error, run_python, run_reference
from vit_zoo import structure
from vit_zoo.models import pvt_v2
from vit_zoo.models.pvt_v2 import PVTv2, PVTv2Arch
from vit_zoo.weights import CheckpointError

pytestmark = pytest.mark.xdist_group("pvt_v2")

TOLERANCE = 1e-4
# Two stages of one block: strided key/value reduction (then none) in TINY, linear in
# TINY_LINEAR.
TINY = PVTv2Arch("tiny", (16, 32), (1, 1), num_heads=(1, 2), sr_ratios=(2, 1),
                 mlp_ratios=(2.0, 2.0))
TINY_LINEAR = PVTv2Arch("tiny_li", (16, 32), (1, 1), num_heads=(1, 2), mlp_ratios=(2.0, 2.0),
                        sr_ratios=(1, 1), linear=True)

CASES = {
    # timm layout at 224, with the four stage outputs of forward_intermediates
    "b0": dict(arch="pvt_v2_b0", variant="b0", size=[224, 224], layout="timm", features=True),
    "b2": dict(arch="pvt_v2_b2", variant="b2", size=[224, 224], layout="timm"),
    # linear SRA at a size whose stage maps (64x80 ... 8x10) no 7x7 pooling grid divides
    "b2_li_256x320": dict(arch="pvt_v2_b2_li", variant="b2_li", size=[256, 320],
                          layout="timm"),
    # the authors' key layout, a non-square size, another class count in the file
    "b0_original_160x288": dict(arch="pvt_v2_b0", variant="b0", size=[160, 288],
                                layout="original", classes=10),
}
TIMM_NAMES = {name: f"pvt_v2_{variant}" for name, (_, variant) in pvt_v2.BUILDERS.items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    cases = {name: {"seed": seed, "batch": 2, "classes": 1000, **spec}
             for seed, (name, spec) in enumerate(CASES.items(), start=61)}
    cases["param_counts"] = sorted(set(TIMM_NAMES.values()))
    return run_reference("timm_pvt_v2.py", tmp_path_factory.mktemp("timm_pvt_v2"), cases)


def _outputs(model, images) -> list[np.ndarray]:
    outputs = model(images, training=False)  # eager: no tracing for one call
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [keras.ops.convert_to_numpy(output) for output in outputs]


@pytest.mark.parametrize("name", list(CASES))
def test_logits_match_timm(reference, name):
    spec = CASES[name]
    images = np.load(reference / f"{name}.images.npy")
    model = PVTv2(spec["variant"], weights=reference / f"{name}.safetensors",
                  input_shape=(*spec["size"], 3), classifier_activation=None)
    error = relative_error(_outputs(model, images)[0], np.load(reference / f"{name}.logits.npy"))
    print(f"\n{name}: logits max relative error {error:.2e}")
    assert error <= TOLERANCE


def test_stage_features_match_forward_intermediates(reference):
    """include_top=False, pooling=None: the four stage maps at strides 4, 8, 16, 32, each
    equal to timm's forward_intermediates output."""
    images = np.load(reference / "b0.images.npy")
    model = pvt_v2.PVTv2_B0(include_top=False, weights=reference / "b0.safetensors")
    expected = np.load(reference / "b0.features.npz")
    outputs = _outputs(model, images)
    assert [o.shape[1:] for o in outputs] == [
        (56, 56, 32), (28, 28, 64), (14, 14, 160), (7, 7, 256)]
    for index, output in enumerate(outputs):
        error = relative_error(output, expected[f"arr_{index}"])
        print(f"\nstage {index}: max relative error {error:.2e}")
        assert error <= TOLERANCE


def test_parameter_counts_match_timm(reference):
    """Every named builder against timm's count. Built in a StatelessScope: variables get
    their shapes but no initial values, which is all a count needs (2x faster)."""
    counts = json.loads((reference / "param_counts.json").read_text())
    with keras.StatelessScope():
        ours = {name: getattr(pvt_v2, name)(input_shape=(32, 32, 3)).count_params()
                for name in TIMM_NAMES}
    assert ours == {name: counts[timm_name] for name, timm_name in TIMM_NAMES.items()}


def test_other_class_count_gets_a_new_zero_head(reference):
    with pytest.warns(UserWarning, match="checkpoint has 1000 classes, the model 7"):
        model = pvt_v2.PVTv2_B0(weights=reference / "b0.safetensors", classes=7)
    assert not np.any(keras.ops.convert_to_numpy(model.get_layer("head").kernel))
    pooled = pvt_v2.PVTv2_B0(include_top=False, pooling="avg",
                             weights=reference / "b0.safetensors")
    assert pooled.output_shape == (None, 256)


def test_weights_of_another_variant_are_refused(reference):
    with pytest.raises(CheckpointError,
                       match="(?s)nothing was loaded.*stage0_block0/attn/q/kernel"):
        pvt_v2.PVTv2_B1(weights=reference / "b0.safetensors")


@pytest.mark.parametrize("arch", [TINY, TINY_LINEAR], ids=["strided", "linear"])
def test_a_model_for_any_size_matches_fixed_size_models(arch):
    """input_shape=(None, None, 3), traced once for unknown height and width (as a SavedModel
    or TFLite signature is), gives the fixed-size models' outputs at each size; the linear
    variant's pooling matrices are then computed in the graph, for maps no 7x7 grid divides."""
    import tensorflow as tf

    any_size = randomize(PVTv2(arch, input_shape=(None, None, 3), classes=5), 0, 0.05, 1.0)
    traced = tf.function(lambda images: any_size(images, training=False),
                         input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    for height, width in ((64, 96), (160, 64)):
        fixed = PVTv2(arch, input_shape=(height, width, 3), classes=5)
        fixed.set_weights(any_size.get_weights())
        images = np.random.default_rng(height).uniform(0, 255, (2, height, width, 3))
        images = images.astype("float32")
        np.testing.assert_allclose(traced(images).numpy(), _outputs(fixed, images)[0],
                                   rtol=1e-5, atol=1e-6)


def test_blocks_and_weight_decay():
    """Every block is a unit of layer-wise decay; nothing beyond rank <= 1 is exempt from
    weight decay (timm's PVT v2 `no_weight_decay()` is empty)."""
    model = PVTv2(TINY, input_shape=(64, 64, 3), classes=5)
    assert [b.name for b in structure.block_groups(model)[0]] == [
        "stage0_block0", "stage1_block0"]
    assert structure.never_decayed(model) == {
        v.path for v in model.trainable_variables if len(v.shape) <= 1}


_RELOAD = """
import sys
import numpy as np
import keras
import vit_zoo  # registers the PVT v2 layers

model = keras.saving.load_model(sys.argv[1], safe_mode=True)
np.save(sys.argv[3], keras.ops.convert_to_numpy(model(np.load(sys.argv[2]), training=False)))
"""


def test_keras_file_reloads_in_a_fresh_process_in_safe_mode(tmp_path):
    """A .keras file reloads in safe mode in a process that imports only vit_zoo's PVT v2
    module, and serves as `weights=` of a fresh builder (numerics read from its layers):
    identical outputs both ways."""
    options = dict(input_shape=(64, 64, 3), classes=5, dropout_rate=0.1, drop_path_rate=0.1)
    model = randomize(PVTv2(TINY_LINEAR, **options), 0, 0.05, 1.0)
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    expected = _outputs(model, images)[0]
    model.save(tmp_path / "tiny.keras")
    np.save(tmp_path / "images.npy", images)
    run_python(["-c", _RELOAD, str(tmp_path / "tiny.keras"), str(tmp_path / "images.npy"),
                str(tmp_path / "loaded.npy")])
    np.testing.assert_array_equal(np.load(tmp_path / "loaded.npy"), expected)
    rebuilt = PVTv2(TINY_LINEAR, weights=tmp_path / "tiny.keras", **options)
    np.testing.assert_array_equal(_outputs(rebuilt, images)[0], expected)


def test_a_few_training_steps_lower_the_loss_and_move_every_variable():
    keras.utils.set_random_seed(0)
    model = randomize(PVTv2(TINY, input_shape=(64, 64, 3), classes=5,
                            classifier_activation=None), 0, 0.05, 1.0)
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 255, (8, 64, 64, 3)).astype("float32")
    labels = rng.integers(0, 5, 8)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    losses = model.fit(images, labels, batch_size=8, epochs=5, verbose=0).history["loss"]
    print(f"\nloss {losses[0]:.4f} -> {losses[-1]:.4f} after 4 updates")
    assert losses[-1] < losses[0], losses
    unchanged = [v.path for v, value in zip(model.trainable_variables, before)
                 if np.array_equal(keras.ops.convert_to_numpy(v), value)]
    assert not unchanged, unchanged


def test_converts_to_builtin_only_tflite_and_matches(tmp_path):
    """The linear variant (its ops are a superset of the strided one's: the pooling matmuls
    besides the same convolutions, LayerNorms and attention) through vit_zoo.export.tflite."""
    import vit_zoo.export

    model = randomize(PVTv2(TINY_LINEAR, input_shape=(64, 96, 3), classes=5,
                            classifier_activation=None), 0, 0.05, 1.0)
    images = np.random.default_rng(1).uniform(0, 255, (2, 64, 96, 3)).astype("float32")
    report = vit_zoo.export.tflite(model, tmp_path / "pvt_v2.tflite", validation_data=images)
    print(f"\n{report}")
    assert report.max_relative_error <= 1e-5
    assert not any(op.startswith("Flex") for op in report.ops)


def test_bad_input():
    with pytest.raises(ValueError, match="height 230 is not divisible by 32.*such as 224"):
        pvt_v2.PVTv2_B0(input_shape=(230, 224, 3))
    with pytest.raises(ValueError, match="3 channels"):
        pvt_v2.PVTv2_B0(input_shape=(224, 224, 4))
    with pytest.raises(ValueError, match="pooling must be 'avg' or None"):
        pvt_v2.PVTv2_B0(include_top=False, pooling="token")
    with pytest.raises(ValueError, match="Unknown PVT v2 variant 'b6'"):
        PVTv2("b6")
    with pytest.raises(ValueError, match="one entry per stage"):
        PVTv2(PVTv2Arch("custom", (16, 32), (1, 1, 1)))
    with pytest.raises(ValueError, match="Unknown weights 'imagenet' for pvt_v2 b0"):
        pvt_v2.PVTv2_B0(weights="imagenet")
