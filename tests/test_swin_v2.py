"""Swin V2: parity with timm (SwinV2-T at windows 8 and 16, window-8 weights in a window-16
model, a tiny Microsoft-layout model at a non-square size, a tiny model with pretrained window
sizes and a clamped temperature), stage feature maps against timm's forward_intermediates,
parameter counts, weight-decay exemptions, loading rules, saving, training, TFLite, bad input.

The reference (tests/reference/timm_swin_v2.py) runs once per module, in its own process."""

from __future__ import annotations

import concurrent.futures
import json
import math
import shutil

import keras
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tests.helpers import randomize, relative_error, run_python, run_reference
from vit_zoo import numerics as nm
from vit_zoo import structure
from vit_zoo.layers.swin_v2 import SwinV2Block, log_relative_coordinates
from vit_zoo.models.swin import SwinArch
from vit_zoo.models.swin_v2 import SwinV2, SwinV2_B, SwinV2_S, SwinV2_T, record_windows
from vit_zoo.weights import CheckpointError, download, registry, swin_v2_layout
from vit_zoo.weights.registry import HF_TIMM, WeightsRecord

pytestmark = pytest.mark.xdist_group("swin_v2")

TOLERANCE = 1e-4
T8, T16 = "swinv2_tiny_window8_256", "swinv2_tiny_window16_256"
TINY = SwinArch("tiny", 32, (2, 2, 2), (2, 4, 8))  # for the parity cases
#: Saving, training, export: two stages (a 10x10 and a 5x5 map, both padded to windows of 4
#: and shifted), the least that exercises every layer; each stage more costs seconds of tracing.
TWO_STAGES = SwinArch("two-stages", 32, (2, 2), (2, 4))
_TINY_TIMM = dict(embed_dim=32, depths=(2, 2, 2), num_heads=(2, 4, 8))
_T = dict(size=(256, 256), classes=1000, batch=1, format="timm")
CASES = {
    "t_w8": dict(_T, arch=T8, window=8, seed=41, features=True),
    "t_w16": dict(_T, arch=T16, window=16, seed=42),
    # t_w8's weights in timm's window-16 model: same parameters, bias from other coordinates
    "t_w8_as_w16": dict(_T, arch=T16, window=16, seed=43, weights_from="t_w8"),
    # 40x56: a 10x14 first stage padded to 12x16 windows of 4, shifted; odd sizes merged
    "tiny_microsoft_40x56": dict(options=_TINY_TIMM, window=4, size=(40, 56), classes=10,
                                 seed=44, batch=2, format="microsoft"),
    "tiny_pretrained_w6": dict(options=dict(_TINY_TIMM, pretrained_window_sizes=(6, 6, 3)),
                               window=4, size=(48, 48), classes=10, seed=45, batch=2,
                               format="timm", logit_scale_above_clamp=True, decay=True),
}
COUNTED = {"swinv2_tiny_window8_256": SwinV2_T, "swinv2_small_window8_256": SwinV2_S,
           "swinv2_base_window8_256": SwinV2_B}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return run_reference("timm_swin_v2.py", tmp_path_factory.mktemp("timm_swin_v2"),
                         {"cases": CASES, "count": list(COUNTED)})


def _tiny(**options) -> keras.Model:
    options = {"input_shape": (40, 40, 3), "classes": 10, "window_size": 4, **options}
    return SwinV2(TWO_STAGES, **options)


def _images(model, count: int = 2, seed: int = 1) -> np.ndarray:
    height, width = model.input_shape[1:3]
    return np.random.default_rng(seed).integers(0, 256, (count, height, width, 3)).astype(
        "float32")


# --- parity with timm -----------------------------------------------------------------------


def _run(model, images):
    """One eager call (for one or two images, cheaper than tracing `predict`'s function)."""
    outputs = model(images, training=False)
    if isinstance(outputs, (list, tuple)):
        return [keras.ops.convert_to_numpy(output) for output in outputs]
    return keras.ops.convert_to_numpy(outputs)


def _model_for(name: str, weights, **options) -> keras.Model:
    spec = CASES[name]
    if "arch" in spec:
        return SwinV2_T(weights=weights, window_size=spec["window"], classifier_activation=None,
                        **options)
    pretrained = spec["options"].get("pretrained_window_sizes")
    return SwinV2(TINY, weights=weights, input_shape=(*spec["size"], 3),
                  window_size=spec["window"], classifier_activation=None,
                  pretrained_window_size=pretrained, **options)


@pytest.mark.parametrize("name", list(CASES))
def test_logits_match_timm(reference, name):
    """Every parameter perturbed, loaded from the .safetensors the reference wrote."""
    weights = reference / f"{CASES[name].get('weights_from', name)}.safetensors"
    model = _model_for(name, weights)
    error = relative_error(_run(model, np.load(reference / f"{name}.images.npy")),
                           np.load(reference / f"{name}.logits.npy"))
    print(f"\n{name}: max|ours - timm| / max|timm| = {error:.2e}")
    assert error <= TOLERANCE


def test_four_stage_maps_match_forward_intermediates(reference):
    model = _model_for("t_w8", reference / "t_w8.safetensors", include_top=False)
    ours = _run(model, np.load(reference / "t_w8.images.npy"))
    theirs = np.load(reference / "t_w8.features.npz")
    assert [o.shape[1:] for o in ours] == [(64, 64, 96), (32, 32, 192), (16, 16, 384),
                                          (8, 8, 768)]  # strides 4, 8, 16, 32
    errors = [relative_error(stage, theirs[f"arr_{i}"]) for i, stage in enumerate(ours)]
    print(f"\nstage maps: max|ours - timm| / max|timm| = {', '.join(f'{e:.1e}' for e in errors)}")
    assert max(errors) <= TOLERANCE, errors


def _trainable_parameters(build) -> int:
    """Trainable parameters of `build()`, built without allocating its weights (5 s of one core
    less for the three models). Keras keeps deferred variables per thread: a thread of its own
    leaves none behind."""

    def count() -> int:
        with keras.StatelessScope(initialize_variables=False):
            return sum(math.prod(v.shape) for v in build().trainable_weights)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(count).result()


def test_parameter_counts_equal_timms(reference):
    counts = json.loads((reference / "params.json").read_text())
    for arch, builder in COUNTED.items():
        trainable = _trainable_parameters(builder)
        print(f"\n{arch}: {trainable} parameters, timm {counts[arch]['parameters']} "
              f"(+ {counts[arch]['buffers']} in buffers)")
        assert trainable == counts[arch]["parameters"], arch


def test_weight_decay_skips_what_timm_skips(reference):
    """timm's exempt parameters (rank <= 1, the position-bias MLP, the temperatures), named
    through our translator, are exactly the variables our optimizer never decays."""
    rules = json.loads((reference / "tiny_pretrained_w6.decay.json").read_text())
    # Exempt parameters as ones, decayed ones as zeros, translated together (the translator
    # tells a norm's bias from a Dense's by its sibling weight).
    marked = {name: np.full(shape, float(name in rules["exempt"]), "float32")
              for name, shape in rules["shapes"].items()}
    arrays, unknown = swin_v2_layout.from_timm(marked)
    assert not unknown and len(arrays) == len(marked)
    model = _model_for("tiny_pretrained_w6", None)
    assert {path for path, value in arrays.items() if value.all()} == \
        structure.never_decayed(model)
    assert len(structure.block_groups(model)[0]) == sum(TINY.depths)


# --- windows ----------------------------------------------------------------------------------


def test_coordinates_are_log_spaced_and_scaled_by_the_trained_window():
    coordinates = log_relative_coordinates((8, 8)).reshape(15, 15, 2)
    # offset 7 of a window of 8: 7 / 7 * 8 = 8 -> log2(9) / 3; offset 0 -> 0; symmetric
    assert coordinates[14, 7, 0] == pytest.approx(np.log2(9) / 3)
    assert coordinates[7, 7].tolist() == [0.0, 0.0]
    np.testing.assert_array_equal(coordinates[::-1, ::-1], -coordinates)
    # a window-16 model with weights from window 8 keeps window 8's scale for offsets it had
    wider = log_relative_coordinates((16, 16), (8, 8)).reshape(31, 31, 2)
    np.testing.assert_array_equal(wider[15 + 7, 15, 0], coordinates[14, 7, 0])


def _record(repo: str, variant: str = "B", **fields) -> WeightsRecord:
    fields = {"resolution": 256, "classes": 1000, **fields}
    return WeightsRecord("swin_v2", variant, "test", f"{HF_TIMM}/{repo}/resolve/main/"
                         "model.safetensors", "timm_safetensors", nm.SWIN, **fields)


def test_window_from_the_release_name():
    assert record_windows(_record("swinv2_tiny_window16_256.ms_in1k")) == (16, None)
    assert record_windows(_record("swinv2_base_window12to24_192to384.ms_in22k_ft_in1k")) == (
        24, (12, 12, 12, 6))
    assert record_windows(None) == (None, None)


def test_a_registered_release_brings_its_windows_and_size(reference, monkeypatch):
    """A registered fine-tune (window 6 on 48 px -> window 4) builds with its window, its
    per-stage pretrained windows (6, 6, 3) and its resolution, and gives timm's logits."""
    record = _record("swinv2_tiny_window6to4_48to48.test", variant=TINY.variant,
                     resolution=48, classes=10)
    monkeypatch.setitem(registry._REGISTRY, ("swin_v2", TINY.variant), {"test": record})
    download.cache_dir().mkdir(parents=True)
    shutil.copy(reference / "tiny_pretrained_w6.safetensors",
                download.cache_dir() / record.filename)
    model = SwinV2(TINY, weights="test", classifier_activation=None)
    assert model.input_shape == (None, 48, 48, 3)
    assert model.get_layer("stage2_block0").attn.pretrained_window == (3, 3)
    error = relative_error(_run(model, np.load(reference / "tiny_pretrained_w6.images.npy")),
                           np.load(reference / "tiny_pretrained_w6.logits.npy"))
    assert error <= TOLERANCE


def test_stages_smaller_than_the_window_use_one_window():
    model = _tiny(window_size=8)  # 10x10 and 5x5 maps
    first, last = model.get_layer("stage0_block1"), model.get_layer("stage1_block1")
    assert (first.window, first.padded, first.shift) == ((8, 8), (16, 16), (4, 4))
    assert isinstance(last, SwinV2Block) and (last.window, last.shift) == ((5, 5), (0, 0))
    assert last.attn.coordinates.shape == (9 * 9, 2)  # coordinates of the window it uses


# --- loading rules ----------------------------------------------------------------------------


def test_another_class_count_gets_a_zero_head_with_a_warning(reference):
    weights = reference / "tiny_pretrained_w6.safetensors"
    with pytest.warns(UserWarning, match="Classification head not loaded"):
        model = _model_for("tiny_pretrained_w6", weights, classes=3)
    assert not np.any(keras.ops.convert_to_numpy(model.get_layer("head").kernel))


def test_weights_that_do_not_fit_name_the_variables(reference, tmp_path):
    weights = reference / "tiny_pretrained_w6.safetensors"
    wider = SwinArch("wider", 48, (2, 2, 2), (2, 4, 8))
    with pytest.raises(CheckpointError, match=r"nothing was loaded(.|\n)*patch_embed/kernel"):
        SwinV2(wider, weights=weights, input_shape=(48, 48, 3), window_size=4)
    arrays = load_file(weights)
    arrays["layers.0.blocks.0.attn.extra_table"] = np.zeros((3,), "float32")
    save_file(arrays, tmp_path / "extra.safetensors")
    with pytest.raises(CheckpointError, match="layers.0.blocks.0.attn.extra_table"):
        _model_for("tiny_pretrained_w6", tmp_path / "extra.safetensors")


# --- the applications arguments ---------------------------------------------------------------


def test_preprocessing_numerics_input_tensor_and_pooling():
    model = randomize(_tiny(), 0, 0.05, 1.0)
    raw = _images(model)
    plain = _tiny(include_preprocessing=False)
    values = {variable.path: variable for variable in model.weights}
    for variable in plain.weights:  # the same weights, without the normalization layer
        variable.assign(values[variable.path])
    normalized = (raw / 255.0 - np.asarray(nm.SWIN.mean)) / np.asarray(nm.SWIN.std)
    np.testing.assert_allclose(_run(plain, normalized.astype("float32")),
                               _run(model, raw), atol=1e-5)

    custom = nm.Numerics("gelu_tanh", 1e-6, nm.INCEPTION_MEAN, nm.INCEPTION_STD)
    tanh = _tiny(numerics=custom, input_tensor=keras.Input((40, 40, 3)), name="mine")
    block = tanh.get_layer("stage0_block0")
    assert (block.activation, block.layer_norm_epsilon, tanh.name) == ("gelu_tanh", 1e-6, "mine")
    assert _tiny(include_top=False, pooling="avg").output_shape == (None, 64)


def test_bad_input():
    with pytest.raises(ValueError, match="fixed input size"):
        SwinV2_T(input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="not divisible by the patch size 4"):
        SwinV2_T(input_shape=(258, 256, 3))
    with pytest.raises(ValueError, match="3 channels"):
        SwinV2_T(input_shape=(256, 256, 4))
    with pytest.raises(ValueError, match="pooling must be 'avg' or None"):
        SwinV2_T(include_top=False, pooling="token")
    with pytest.raises(ValueError, match="Unknown Swin V2 variant 'L'"):
        SwinV2("L")
    with pytest.raises(ValueError, match="window_size must be a positive int"):
        SwinV2_T(window_size=0)
    with pytest.raises(ValueError, match="pretrained_window_size must be .* 4 of them"):
        SwinV2_T(pretrained_window_size=(12, 12))
    with pytest.raises(ValueError, match="Unknown weights 'imagenet'"):
        SwinV2_T(weights="imagenet")


# --- saving, training, export, inspection -----------------------------------------------------

_LOAD = """
import sys
import keras
import numpy as np
import vit_zoo  # registers the Swin V2 layers
model = keras.saving.load_model(sys.argv[1], safe_mode=True)
np.save(sys.argv[3], keras.ops.convert_to_numpy(model(np.load(sys.argv[2]), training=False)))
"""


def test_keras_file_reloads_in_a_fresh_process_in_safe_mode(tmp_path):
    model = randomize(_tiny(drop_path_rate=0.1, pretrained_window_size=6), 0, 0.05, 1.0)
    images = _images(model)
    expected = keras.ops.convert_to_numpy(model(images, training=False))
    model.save(tmp_path / "tiny.keras")
    np.save(tmp_path / "images.npy", images)
    run_python(["-c", _LOAD, str(tmp_path / "tiny.keras"), str(tmp_path / "images.npy"),
                str(tmp_path / "out.npy")])
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), expected)
    rebuilt = _tiny(weights=tmp_path / "tiny.keras", pretrained_window_size=6)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(rebuilt(images)), expected)


def test_a_few_training_steps_lower_the_loss_and_move_every_variable():
    keras.utils.set_random_seed(0)
    model = randomize(_tiny(classifier_activation=None), 0, 0.05, 1.0)
    images = _images(model, 8, seed=2)
    labels = np.random.default_rng(3).integers(0, 10, 8)
    # Eagerly: tracing the training step costs ~16 s of one core even for this model; the ops
    # are the same (the inference graph is traced by the save and TFLite tests).
    model.compile(optimizer=keras.optimizers.Adam(1e-3), run_eagerly=True,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    losses = model.fit(images, labels, batch_size=8, epochs=5, verbose=0).history["loss"]
    assert losses[-1] < losses[0], losses
    unchanged = [v.path for v, value in zip(model.trainable_variables, before)
                 if np.array_equal(keras.ops.convert_to_numpy(v), value)]
    assert not unchanged, unchanged


def test_converts_to_builtin_only_tflite_and_matches(tmp_path):
    import vit_zoo.export

    model = randomize(_tiny(classifier_activation=None), 0, 0.05, 1.0)
    report = vit_zoo.export.tflite(model, tmp_path / "tiny.tflite",
                                   validation_data=_images(model))
    print(f"\n{report}")
    assert report.max_relative_error <= 1e-5
    assert not any(op.startswith("Flex") for op in report.ops)


def test_window_attention_maps_for_inspection():
    from vit_zoo.inspect.collect import collect_window_attention

    model = randomize(_tiny(), 0, 0.05, 1.0)
    maps = collect_window_attention(model, _images(model, 1), blocks=[(0, 1)])[0, 1]
    assert maps.shape == (9, 2, 16, 16)  # 10x10 padded to 3x3 windows of 4x4, 2 heads
    np.testing.assert_allclose(maps.sum(-1), 1.0, rtol=1e-5)
