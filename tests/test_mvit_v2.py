"""MViT v2: parity with timm (MViTv2-T, and small configurations for the class token, the
MLP-widening blocks of MViTv2-L and relative-position tables resampled to another input size),
stage feature maps, parameter counts of every builder, saving, training, TFLite, bad input."""

import concurrent.futures
import json

import keras
import numpy as np
import pytest

import vit_zoo
from tests.helpers import randomize, relative_error, run_python, run_reference
from vit_zoo import structure
from vit_zoo.models import mvit_v2
from vit_zoo.models.mvit_v2 import MViTv2, MViTv2Arch

pytestmark = pytest.mark.xdist_group("mvit_v2")

TOLERANCE = 1e-4
TINY = MViTv2Arch("tiny", 16, (1, 2, 1, 1), 1)
#: One block a stage: the smallest graph to train (strided and unstrided query pooling).
TINY_TRAIN = MViTv2Arch("tiny-train", 16, (1, 1, 1, 1), 1)
#: MViTv2-L's scheme: stages keep their input width, their last block's MLP widens.
TINY_WIDEN_IN_MLP = MViTv2Arch("tiny-mlp", 16, (2, 2, 1, 2), 2, expand_attention=False)
TINY_CLS = MViTv2Arch("tiny-cls", 16, (1, 1, 1, 1), 1, class_token=True)


def _timm_cfg(arch: MViTv2Arch) -> dict:
    return {"embed_dim": arch.embed_dim, "depths": list(arch.depths),
            "num_heads": arch.num_heads, "expand_attn": arch.expand_attention,
            "use_cls_token": arch.class_token}


#: name: (our variant, timm spec). tiny_resized: weights of a 64 px model in a 96 px one.
CASES = {
    "mvitv2_t": ("T", {"timm": "mvitv2_tiny", "train_size": 224, "eval_size": 224}),
    "tiny_resized": (TINY, {"cfg": _timm_cfg(TINY), "train_size": 64, "eval_size": 96}),
    "tiny_widen_in_mlp": (TINY_WIDEN_IN_MLP, {"cfg": _timm_cfg(TINY_WIDEN_IN_MLP),
                                              "train_size": 64, "eval_size": 64}),
    "tiny_cls": (TINY_CLS, {"cfg": _timm_cfg(TINY_CLS), "train_size": 64, "eval_size": 64}),
}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    cases = {name: {**spec, "classes": 7 if name != "mvitv2_t" else 1000, "batch": 2,
                    "seed": index}
             for index, (name, (_, spec)) in enumerate(CASES.items())}
    return run_reference("timm_mvit_v2.py", tmp_path_factory.mktemp("timm_mvit_v2"),
                         {"cases": cases, "count": list(mvit_v2.TIMM_NAMES.values())})


def _outputs(reference, name: str, include_top: bool):
    """Our model's outputs on the case's images: logits, or the four stage maps."""
    variant, spec = CASES[name]
    size = spec["eval_size"]
    model = MViTv2(variant, include_top=include_top, weights=reference / f"{name}.safetensors",
                   input_shape=(size, size, 3), classifier_activation=None)
    outputs = model(np.load(reference / f"{name}.images.npy"), training=False)  # eager: no trace
    if include_top:
        return keras.ops.convert_to_numpy(outputs)
    return [keras.ops.convert_to_numpy(output) for output in outputs]


def _stage_map_errors(reference, name: str, maps: list[np.ndarray]) -> list[float]:
    """Relative error of each stage map against timm's forward_intermediates(norm=True)."""
    features = np.load(reference / f"{name}.features.npz")
    expected = [features[f"arr_{index}"] for index in range(len(features.files))]
    assert [m.shape for m in maps] == [e.shape for e in expected]
    return [relative_error(ours, theirs) for ours, theirs in zip(maps, expected)]


def test_mvitv2_t_matches_timm(reference):
    """MViTv2-T with every parameter perturbed, from a timm-layout .safetensors, built with
    include_top=False: the four stage maps (strides 4, 8, 16, 32, the last after the final
    norm) against timm's forward_intermediates(norm=True), and the logits of timm's head
    (average of the last map, then head.fc from the same file) against timm's."""
    from safetensors.numpy import load_file

    maps = _outputs(reference, "mvitv2_t", include_top=False)
    assert [m.shape[1:] for m in maps] == [(56, 56, 96), (28, 28, 192), (14, 14, 384),
                                           (7, 7, 768)]
    errors = _stage_map_errors(reference, "mvitv2_t", maps)
    head = load_file(reference / "mvitv2_t.safetensors")
    logits = maps[-1].mean(axis=(1, 2)) @ head["head.fc.weight"].T + head["head.fc.bias"]
    errors.append(relative_error(logits, np.load(reference / "mvitv2_t.logits.npy")))
    print(f"\nMViTv2-T: relative errors (stage maps, logits) {errors}")
    assert max(errors) <= TOLERANCE


@pytest.mark.parametrize("name", ["tiny_resized", "tiny_widen_in_mlp", "tiny_cls"])
def test_small_configurations_match_timm(reference, name):
    """Logits and stage maps: relative-position tables of a 64 px checkpoint resampled for
    96 px (against timm's checkpoint filter), MLP-widening blocks (MViTv2-L's scheme), a class
    token (left out of pooling and of the stage maps, pooled for the head)."""
    logits = _outputs(reference, name, include_top=True)
    errors = [relative_error(logits, np.load(reference / f"{name}.logits.npy"))]
    errors += _stage_map_errors(reference, name, _outputs(reference, name, include_top=False))
    print(f"\n{name}: relative errors (logits, stage maps) {errors}")
    assert max(errors) <= TOLERANCE


def _parameter_counts(classes: dict[str, int]) -> dict[str, int]:
    """{variant: parameters} of MViTv2(variant, classes=classes[variant]), built without
    allocating its variables (13 s of one core less for the eight models). Keras keeps the
    deferred variables in a per-thread list that the next stateless scope would initialize: a
    thread of its own leaves none behind."""

    def count() -> dict[str, int]:
        counts = {}
        for variant, number in classes.items():
            with keras.StatelessScope(initialize_variables=False):
                counts[variant] = MViTv2(variant, classes=number).count_params()
        return counts

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(count).result()


def test_parameter_counts_equal_timms(reference):
    """Every builder at the class count of timm's default model (19168 for its
    ImageNet-21k-winter _cls models)."""
    timm = json.loads((reference / "counts.json").read_text())
    assert set(timm) == set(mvit_v2.TIMM_NAMES.values())
    ours = _parameter_counts({variant: timm[name]["classes"]
                              for variant, name in mvit_v2.TIMM_NAMES.items()})
    print(f"\nparameters: {ours}")
    for variant, name in mvit_v2.TIMM_NAMES.items():
        assert ours[variant] == timm[name]["parameters"], (variant, ours[variant], timm[name])


def test_checkpoint_of_another_class_count_or_shape(reference):
    """Another class count: a zero head with a warning; another architecture: an error that
    names the variables, and nothing loaded."""
    path = reference / "tiny_resized.safetensors"
    with pytest.warns(UserWarning, match="Classification head not loaded"):
        model = MViTv2(TINY, weights=path, input_shape=(64, 64, 3), classes=3)
    assert not np.any(keras.ops.convert_to_numpy(model.get_layer("head").kernel))
    with pytest.raises(vit_zoo.weights.CheckpointError,
                       match="stage1_block0/shortcut_proj_attn/kernel: shape"):
        MViTv2(TINY_WIDEN_IN_MLP, weights=path, input_shape=(64, 64, 3))


def _tiny(arch: MViTv2Arch = TINY_CLS, **options):
    model = MViTv2(arch, input_shape=(64, 64, 3), classes=5, classifier_activation=None,
                   **options)
    return randomize(model, 0, scale=0.05, gamma_center=1.0)


_RELOAD = """
import sys
import numpy as np
import keras
import vit_zoo  # registers the MViT v2 layers

model = keras.saving.load_model(sys.argv[1], safe_mode=True)
np.save(sys.argv[3], keras.ops.convert_to_numpy(model(np.load(sys.argv[2]), training=False)))
"""


def test_keras_file_reloads_in_a_fresh_process_and_as_weights(tmp_path):
    """A .keras file loads in safe mode in a process that never built the model, and serves as
    `weights=` of a fresh builder: identical outputs."""
    model = _tiny(drop_path_rate=0.1)
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    expected = keras.ops.convert_to_numpy(model(images, training=False))
    model.save(tmp_path / "tiny.keras")
    np.save(tmp_path / "images.npy", images)
    run_python(["-c", _RELOAD, str(tmp_path / "tiny.keras"), str(tmp_path / "images.npy"),
                str(tmp_path / "loaded.npy")])
    np.testing.assert_array_equal(np.load(tmp_path / "loaded.npy"), expected)
    rebuilt = MViTv2(TINY_CLS, weights=tmp_path / "tiny.keras", input_shape=(64, 64, 3),
                     classes=5, classifier_activation=None, drop_path_rate=0.1)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(rebuilt(images, training=False)), expected)


def test_blocks_and_variables_weight_decay_skips():
    """Every multiscale block is a block (layer-wise decay); weight decay skips the rank <= 1
    variables, the relative-position tables and the class token, as timm's no_weight_decay."""
    model = MViTv2(TINY_CLS, input_shape=(64, 64, 3), classes=5)
    assert len(structure.block_groups(model)[0]) == sum(TINY_CLS.depths)
    skipped = structure.never_decayed(model)
    tables = {v.path for v in model.weights if "/rel_pos_" in v.path}
    assert len(tables) == 2 * sum(TINY_CLS.depths)
    assert tables | {"cls_token/token"} <= skipped
    assert not any(v.path.endswith(("pool_q/kernel", "qkv/kernel")) for v in model.weights
                   if v.path in skipped)


def test_training_steps_lower_the_loss_and_move_every_variable():
    """Five `fit` steps on one batch (Adam, no weight decay) lower the loss; every variable,
    the relative-position tables and pooling kernels too, gets a gradient. (Average pooling:
    with class-token pooling the last block's spatial queries reach no output, in timm too.)"""
    keras.utils.set_random_seed(0)
    model = _tiny(TINY_TRAIN)
    rng = np.random.default_rng(3)
    images = rng.uniform(0, 255, (8, 64, 64, 3)).astype("float32")
    labels = rng.integers(0, 5, 8)
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    losses = model.fit(images, labels, batch_size=8, epochs=5, shuffle=False,
                       verbose=0).history["loss"]
    print(f"\nloss {losses[0]:.4f} -> {losses[-1]:.4f} after 4 updates")
    assert losses[-1] < losses[0], losses
    unchanged = [v.path for v, value in zip(model.trainable_variables, before)
                 if np.array_equal(keras.ops.convert_to_numpy(v), value)]
    assert not unchanged, unchanged


def test_converts_to_builtin_only_tflite_and_matches(tmp_path):
    import vit_zoo.export

    model = _tiny()
    images = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    report = vit_zoo.export.tflite(model, tmp_path / "mvit.tflite", validation_data=images)
    print(f"\nTFLite: max relative error {report.max_relative_error:.2e}, ops {report.ops}")
    assert report.max_relative_error <= 1e-5
    assert not any(op.startswith("Flex") for op in report.ops)


def test_pooled_features():
    """include_top=False with pooling: the final-norm features averaged over the map, or the
    class token of a _cls variant (both pool its normalized tokens, as timm's head does)."""
    assert MViTv2(TINY, include_top=False, pooling="avg",
                  input_shape=(64, 64, 3)).output_shape == (None, 128)
    model = MViTv2(TINY_CLS, include_top=False, pooling="token", input_shape=(64, 64, 3))
    assert model.output_shape == (None, 128) and model.layers[-1].method == "token"


def test_bad_input():
    with pytest.raises(ValueError, match="fixed input size"):
        MViTv2(TINY, input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="square images whose side is a multiple of 32"):
        MViTv2(TINY, input_shape=(64, 96, 3))
    with pytest.raises(ValueError, match="multiple of 32.*e.g. 224x224"):
        MViTv2(TINY, input_shape=(230, 230, 3))
    with pytest.raises(ValueError, match="3 channels"):
        MViTv2(TINY, input_shape=(64, 64, 4))
    with pytest.raises(ValueError, match="class-token pooling needs a _cls variant"):
        MViTv2(TINY, include_top=False, pooling="token", input_shape=(64, 64, 3))
    with pytest.raises(ValueError, match="Unknown MViT v2 variant 'XL'"):
        MViTv2("XL")
    with pytest.raises(ValueError, match="has 4 stages of at least one block"):
        MViTv2(MViTv2Arch("three", 16, (1, 1, 1), 1))
    with pytest.raises(ValueError, match="Unknown weights 'imagenet'"):
        mvit_v2.MViTv2_T(weights="imagenet")
