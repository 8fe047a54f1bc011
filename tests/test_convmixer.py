"""ConvMixer: parity with timm (ConvMixer-768/32 and shallow custom shapes, every parameter and
BatchNorm statistic perturbed), parameter counts, any input size, checkpoint errors, bad
input, a .keras file in a fresh process, training steps, TFLite."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import math

import keras
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tests.helpers import relative_error, run_python, run_reference
from vit_zoo import structure
from vit_zoo.models import convmixer as cm
from vit_zoo.weights import CheckpointError

pytestmark = pytest.mark.xdist_group("convmixer")

TOLERANCE = 1e-4
#: Shallow custom shapes beside the released 768/32: cheap, and their logits depend strongly
#: on the image (a deep random ConvMixer's tend not to, unless its BatchNorm statistics fit
#: its activations, which is why the reference calibrates them).
SHALLOW = cm.ConvMixerArch("custom", dim=64, depth=2, kernel_size=5, patch_size=4)
EVEN_KERNEL = cm.ConvMixerArch("custom", dim=32, depth=3, kernel_size=4, patch_size=3)


def _shape(arch: cm.ConvMixerArch) -> dict:
    """The arguments of timm's ConvMixer for a custom shape."""
    return {key: value for key, value in dataclasses.asdict(arch).items() if key != "variant"}


# Reference cases (tests/reference/timm_convmixer.py). The 768/32 case runs at 112 px (the
# model takes any multiple of its patch) to keep its forward pass cheap.
CASES = {
    "convmixer_768_32": dict(timm="convmixer_768_32", seed=51, size=[112, 112], batch=2,
                             classes=1000),
    "shallow_gelu": dict(shape=_shape(SHALLOW), activation="gelu", seed=52,
                         size=[48, 80], batch=2, classes=10),
    # An even kernel: PyTorch's and Keras's "same" padding both put the extra row below.
    "shallow_relu_even_kernel": dict(shape=_shape(EVEN_KERNEL), activation="relu",
                                     seed=53, size=[45, 33], batch=2, classes=10),
}
TIMM_NAMES = {"ConvMixer_768_32": "convmixer_768_32",
              "ConvMixer_1024_20": "convmixer_1024_20_ks9_p14",
              "ConvMixer_1536_20": "convmixer_1536_20"}
TINY = cm.ConvMixerArch("tiny", dim=16, depth=2, kernel_size=3, patch_size=4)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """<case>.safetensors (timm layout), <case>.images.npy, <case>.logits.npy, and
    param_counts.json, from timm in its own process."""
    counts = {"param_counts": {"kind": "param_counts", "models": list(TIMM_NAMES.values())}}
    return run_reference("timm_convmixer.py", tmp_path_factory.mktemp("timm_convmixer"),
                         {**CASES, **counts})


def _model(name: str, **kwargs) -> keras.Model:
    """The case's architecture, as a user builds it (the builder for a released variant)."""
    spec = CASES[name]
    if name == "convmixer_768_32":
        return cm.ConvMixer_768_32(input_shape=(*spec["size"], 3), **kwargs)
    arch = SHALLOW if name == "shallow_gelu" else EVEN_KERNEL
    numerics = cm.CONVMIXER_RELU if spec["activation"] == "relu" else None
    return cm.ConvMixer(arch, numerics=numerics, **kwargs)


def _randomized(model: keras.Model, seed: int = 0) -> keras.Model:
    """Every variable random: norm scales around 1, moving variances positive."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        if variable.path.endswith("moving_variance"):
            value = rng.uniform(0.5, 1.5, variable.shape)
        else:
            center = 1.0 if variable.path.endswith("gamma") else 0.0
            value = rng.normal(center, 0.1, variable.shape)
        variable.assign(value.astype("float32"))
    return model


def _tiny(seed: int = 0, **kwargs) -> keras.Model:
    options = dict(input_shape=(32, 32, 3), classes=5, classifier_activation=None)
    return _randomized(cm.ConvMixer(TINY, **{**options, **kwargs}), seed)


def _images(shape, count: int = 2, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (count, *shape)).astype("float32")


# --- parity with timm -----------------------------------------------------------------------


@pytest.mark.parametrize("name", list(CASES))
def test_logits_match_timm(reference, name):
    """timm-layout weights with every parameter and BatchNorm statistic perturbed give timm's
    logits; in timm the two images' logits clearly differ, so the comparison sees the input."""
    expected = np.load(reference / f"{name}.logits.npy")
    assert relative_error(expected[0], expected[1]) > 0.1
    shape = {} if name == "convmixer_768_32" else {"input_shape": (None, None, 3)}
    model = _model(name, weights=reference / f"{name}.safetensors", classifier_activation=None,
                   **shape)
    images = np.load(reference / f"{name}.images.npy")
    error = relative_error(model(images, training=False), expected)
    print(f"{name}: max |ours - timm| / max |timm| = {error:.2e}")
    assert error <= TOLERANCE
    if name == "convmixer_768_32":  # its weights were trained with ReLU, the others GELU
        assert model.get_layer("block_0").activation == "relu"


def test_parameter_counts_equal_timm(reference):
    """Trainable parameters equal timm's `parameters()`, the BatchNorm moving statistics its
    running_mean / running_var buffers (counted without allocating any weight)."""
    timm = json.loads((reference / "param_counts.json").read_text())

    def count(builder):
        with keras.StatelessScope(initialize_variables=False):
            model = getattr(cm, builder)(classes=1000)
        return (sum(math.prod(v.shape) for v in model.trainable_weights),
                sum(math.prod(v.shape) for v in model.non_trainable_weights))

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        ours = {builder: pool.submit(count, builder).result() for builder in TIMM_NAMES}
    assert set(TIMM_NAMES) == set(cm.BUILDERS)
    for builder, timm_name in TIMM_NAMES.items():
        print(f"{builder}: {ours[builder][0]:,} parameters, timm {timm[timm_name]['params']:,}")
        assert ours[builder] == (timm[timm_name]["params"], timm[timm_name]["statistics"])


def test_any_input_size_divisible_by_the_patch(reference):
    model = _model("shallow_gelu", weights=reference / "shallow_gelu.safetensors",
                   input_shape=(None, None, 3))
    assert model(_images((28, 20, 3), 1), training=False).shape == (1, 10)
    with pytest.raises(ValueError, match="height 30 is not divisible by the patch size 4"):
        model(_images((30, 20, 3), 1), training=False)
    features = _model("shallow_gelu", weights=reference / "shallow_gelu.safetensors",
                      include_top=False, input_shape=(48, 80, 3))
    assert features.output_shape == (None, 12, 20, 64)
    pooled = cm.ConvMixer(SHALLOW, include_top=False, pooling="avg", input_shape=(48, 80, 3))
    assert pooled.output_shape == (None, 64)


# --- checkpoints ----------------------------------------------------------------------------


def test_other_class_count_gets_a_new_head(reference):
    weights = reference / "shallow_gelu.safetensors"
    with pytest.warns(UserWarning, match="checkpoint has 10 classes, the model 3"):
        model = _model("shallow_gelu", weights=weights, classes=3)
    assert not np.any(model.get_layer("head").kernel.numpy())
    expected = load_file(str(weights))["blocks.1.0.fn.0.weight"]  # (C, 1, k, k)
    loaded = model.get_layer("block_1").depthwise.kernel.numpy()  # (k, k, C, 1)
    np.testing.assert_array_equal(loaded, expected.transpose(2, 3, 0, 1))


def test_checkpoint_errors(reference, tmp_path):
    weights = reference / "shallow_gelu.safetensors"
    with pytest.raises(ValueError, match="trained with kernel_size=5; the model has "
                                         "kernel_size=3. Pass kernel_size=5"):
        cm.ConvMixer(SHALLOW, weights=weights, kernel_size=3)
    with pytest.raises(CheckpointError, match="nothing was loaded"):
        cm.ConvMixer(dataclasses.replace(SHALLOW, dim=32), weights=weights)
    raw = load_file(str(weights))
    save_file({**raw, "blocks.0.extra.weight": np.zeros((2, 2), "float32")},
              str(tmp_path / "extra.safetensors"))
    with pytest.raises(CheckpointError, match=r"blocks\.0\.extra\.weight: not a variable"):
        cm.ConvMixer(SHALLOW, weights=tmp_path / "extra.safetensors")


def test_bad_input():
    with pytest.raises(ValueError, match="height 100 is not divisible by the patch size 7"):
        cm.ConvMixer_768_32(input_shape=(100, 224, 3))
    with pytest.raises(ValueError, match="3 channels"):
        cm.ConvMixer(TINY, input_shape=(32, 32, 4))
    with pytest.raises(ValueError, match="pooling must be 'avg' or None, got 'max'"):
        cm.ConvMixer(TINY, include_top=False, pooling="max")
    with pytest.raises(ValueError, match="Unknown ConvMixer variant 'B/16'"):
        cm.ConvMixer("B/16")
    with pytest.raises(ValueError, match="kernel_size must be a positive integer, got 0"):
        cm.ConvMixer(TINY, kernel_size=0)
    with pytest.raises(ValueError, match="Unknown ConvMixer activation 'swish'"):
        cm.ConvMixer(TINY, numerics=dataclasses.replace(cm.CONVMIXER, activation="swish"))
    with pytest.raises(ValueError, match="Unknown weights 'imagenet' for convmixer 768/32"):
        cm.ConvMixer_768_32(weights="imagenet")


# --- saving, training, export ---------------------------------------------------------------

_LOAD = """
import sys
import keras
import numpy as np
import vit_zoo
import vit_zoo.layers.convmixer  # registers the layers while vit_zoo.layers does not import them

model = keras.saving.load_model(sys.argv[1], safe_mode=True)
np.save(sys.argv[3], keras.ops.convert_to_numpy(model(np.load(sys.argv[2]), training=False)))
"""


def test_keras_file_reloads_in_a_fresh_process_and_as_weights(tmp_path):
    """The .keras file loads in safe mode in a process that only imports vit_zoo, and serves as
    `weights=` of a fresh builder, which takes its numerics (ReLU here, not the custom shape's
    default GELU) from the file: identical outputs both ways."""
    model = _tiny(numerics=cm.CONVMIXER_RELU, drop_path_rate=0.1, dropout_rate=0.1)
    images = _images((32, 32, 3))
    expected = keras.ops.convert_to_numpy(model(images, training=False))
    model.save(tmp_path / "tiny.keras")
    np.save(tmp_path / "images.npy", images)
    run_python(["-c", _LOAD, str(tmp_path / "tiny.keras"), str(tmp_path / "images.npy"),
                str(tmp_path / "loaded.npy")])
    np.testing.assert_array_equal(np.load(tmp_path / "loaded.npy"), expected)
    rebuilt = cm.ConvMixer(TINY, weights=tmp_path / "tiny.keras", input_shape=(32, 32, 3),
                           classes=5, classifier_activation=None)
    assert rebuilt.get_layer("block_1").activation == "relu"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(rebuilt(images)), expected)


def test_a_few_training_steps_lower_the_loss():
    """Five one-batch epochs (Adam, no weight decay): the loss falls, every trainable variable
    gets a gradient, and the BatchNorm moving statistics follow the batches. Stochastic depth
    and dropout are on; each block is a unit of layer-wise decay."""
    keras.utils.set_random_seed(0)
    model = _tiny(drop_path_rate=0.1, dropout_rate=0.1)
    assert [b.name for b in structure.block_groups(model)[0]] == ["block_0", "block_1"]
    x = _images((32, 32, 3), 8, seed=2)
    y = np.random.default_rng(3).integers(0, 5, 8)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [v.numpy() for v in model.weights]
    losses = model.fit(x, y, batch_size=8, epochs=5, shuffle=False, verbose=0).history["loss"]
    print(f"\nconvmixer: loss {losses[0]:.4f} -> {losses[-1]:.4f} after 4 updates")
    assert losses[-1] < losses[0], losses
    unchanged = [v.path for v, value in zip(model.weights, before)
                 if np.array_equal(v.numpy(), value)]
    assert not unchanged, unchanged


def test_tflite_export_matches(tmp_path):
    import vit_zoo.export

    model = _tiny()
    report = vit_zoo.export.tflite(model, tmp_path / "tiny.tflite",
                                   validation_data=_images((32, 32, 3)))
    print(f"\nconvmixer TFLite: max relative error {report.max_relative_error:.2e}, "
          f"ops {sorted(report.ops)}")
    assert report.max_relative_error <= 1e-5
    assert "DEPTHWISE_CONV_2D" in report.ops
    assert not any(op.startswith("Flex") for op in report.ops)
