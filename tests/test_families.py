"""The checks every family passes, as one harness: saving and loading, parity with timm, a few
training steps.

The tiny models (every variable random) are tests/export_cases.py's; their TFLite conversion is
tests/test_export.py::test_tflite_float32_matches_keras_with_builtin_ops. Family-specific tests
stay in the family files (test_vit_model.py, test_swin.py, test_hybrid_mixer.py,
test_clip_model.py, ...).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import vit_zoo
from tests import export_cases as cases
from tests.helpers import randomize, relative_error, run_python
from tests.parity_cases import HYBRID_MIXER_CASES, SWIN_CASES, VIT_CASES
from vit_zoo.losses import CLIPLoss

TOLERANCE = 1e-4
FAMILIES = ["vit", "deit", "hybrid", "mixer", "swin", "clip"]


def _options(family: str) -> dict:
    """Builder options that change nothing at inference but must survive a save (stochastic
    depth); CLIP's builder has none."""
    return {} if family == "clip" else {"drop_path_rate": 0.1}


def _inputs(model, count: int = 2):
    """Images for an image model; for CLIP a dict with token ids too (more texts than images,
    so the two logit matrices differ in shape)."""
    images = cases.images_for(model, count)
    if not isinstance(model, vit_zoo.CLIPModel):
        return images
    return {"images": images, "token_ids": vit_zoo.CLIPTokenizer(cases.TEXT_CONTEXT)(cases.TEXTS)}


def _outputs(model, inputs) -> list[np.ndarray]:
    """Every output of the model (CLIP: logits per image and per text), in inference mode."""
    outputs = model(inputs, training=False)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    return [keras.ops.convert_to_numpy(output) for output in outputs]


# --- saving and loading ---------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".keras", ".weights.h5"])
@pytest.mark.parametrize("family", FAMILIES)
def test_save_and_load_round_trip_is_exact(family, suffix, tmp_path):
    """A .keras file reloads in safe mode (no custom_objects) as the same class, and serves as
    `weights=` of a fresh builder; a .weights.h5 file loads into a fresh builder: every output
    is identical."""
    options = _options(family)
    model = cases.build(family, **options)
    inputs = _inputs(model)
    expected = _outputs(model, inputs)
    path = tmp_path / f"{family}{suffix}"
    restored = {}
    if suffix == ".keras":
        model.save(path)
        restored["load_model"] = keras.saving.load_model(path, safe_mode=True)
        assert type(restored["load_model"]) is type(model)
    else:
        model.save_weights(path)
    restored["builder"] = cases.BUILDERS[family](weights=path, **options)
    for how, other in restored.items():
        outputs = _outputs(other, inputs)
        assert len(outputs) == len(expected), how
        for ours, theirs in zip(outputs, expected):
            np.testing.assert_array_equal(ours, theirs, err_msg=how)


_LOAD_IN_FRESH_PROCESS = """
import sys
import numpy as np
import keras
import vit_zoo

for stem in sys.argv[1:]:
    model = keras.saving.load_model(stem + ".keras", safe_mode=True)
    feed = dict(np.load(stem + ".inputs.npz"))
    outputs = model(feed if len(feed) > 1 else feed["images"], training=False)
    if not isinstance(outputs, (list, tuple)):
        outputs = [outputs]
    np.savez(stem + ".loaded.npz", *[keras.ops.convert_to_numpy(o) for o in outputs])
"""


def test_keras_files_load_in_a_fresh_process_in_safe_mode(tmp_path):
    """A process that only imports vit_zoo loads every family's .keras file in safe mode and
    gets identical outputs (also a ViT built for any size, at a size it was not built at)."""
    models = {family: cases.build(family, **_options(family)) for family in FAMILIES}
    models["vit_any_size"] = randomize(
        vit_zoo.ViT(cases.TINY_VIT, input_shape=(None, None, 3), classes=5), 0, 0.05, 1.0)
    expected = {}
    for name, model in models.items():
        if name == "vit_any_size":
            inputs = np.random.default_rng(0).uniform(0, 255, (2, 40, 24, 3)).astype("float32")
        else:
            inputs = _inputs(model)
        feed = inputs if isinstance(inputs, dict) else {"images": inputs}
        np.savez(tmp_path / f"{name}.inputs.npz", **feed)
        expected[name] = _outputs(model, inputs)
        model.save(tmp_path / f"{name}.keras")
    run_python(["-c", _LOAD_IN_FRESH_PROCESS, *(str(tmp_path / name) for name in models)])
    for name, outputs in expected.items():
        loaded = np.load(tmp_path / f"{name}.loaded.npz")
        assert len(loaded.files) == len(outputs), name
        for index, output in enumerate(outputs):
            np.testing.assert_array_equal(loaded[f"arr_{index}"], output, err_msg=name)


# --- parity with timm -----------------------------------------------------------------------

PARITY_CASES = {**VIT_CASES, **HYBRID_MIXER_CASES, **SWIN_CASES}
assert len(PARITY_CASES) == len(VIT_CASES) + len(HYBRID_MIXER_CASES) + len(SWIN_CASES)
#: The session fixture (tests/conftest.py) holding each family's reference files.
REFERENCES = {"vit": "vit_reference", "hybrid": "hybrid_mixer_reference",
              "mixer": "hybrid_mixer_reference", "swin": "swin_reference"}


def _parity_param(name: str):
    """The case, named after its family, on the xdist worker that computes its reference
    (conftest.py groups tests by the fixtures they name; this test asks for its fixture by
    value)."""
    family = PARITY_CASES[name]["family"]
    return pytest.param(name, id=f"{family}-{name}",
                        marks=pytest.mark.xdist_group(REFERENCES[family]))


def _reference_model(spec: dict, weights) -> keras.Model:
    shape = (*spec["eval_size"], 3)
    if spec["family"] == "swin":
        return vit_zoo.Swin(spec["variant"], weights=weights, input_shape=shape,
                            classifier_activation=None, window_size=spec["eval_window"])
    build = vit_zoo.Mixer if spec["family"] == "mixer" else vit_zoo.ViT
    return build(spec["variant"], weights=weights, input_shape=shape, classifier_activation=None)


@pytest.mark.parametrize("name", [_parity_param(name) for name in PARITY_CASES])
def test_logits_match_timm(request, name):
    """Random perturbed weights in each upstream layout give timm's logits: ViT and DeiT
    (.npz, .safetensors; 384 px, non-square, pre-logits, MAP), hybrids (.npz: the JAX
    originals' numerics patched into timm; .safetensors: timm's), Mixer, Swin (timm and
    Microsoft layouts, window 12, 256x320, window-7 weights in a window-12 model)."""
    spec = PARITY_CASES[name]
    reference = request.getfixturevalue(REFERENCES[spec["family"]])
    suffix = "npz" if spec["format"] == "npz" else "safetensors"
    model = _reference_model(spec, reference / f"{name}.{suffix}")
    images = np.load(reference / f"{name}.images.npy")
    expected = np.load(reference / f"{name}.logits.npy")
    assert relative_error(model.predict(images, verbose=0), expected) <= TOLERANCE


# --- training -------------------------------------------------------------------------------


def _training_batch(model, count: int = 8):
    """(x, y, loss) of a tiny random batch: random labels for a classifier (logits or
    probabilities, as its head gives), matching image/text pairs for CLIP."""
    rng = np.random.default_rng(3)
    images = cases.images_for(model, count, seed=2)
    if isinstance(model, vit_zoo.CLIPModel):
        token_ids = rng.integers(1, 49406, (count, cases.TEXT_CONTEXT)).astype("int32")
        # End-of-text (where the text tower pools) at varied positions, the last slot included.
        ends = np.linspace(3, cases.TEXT_CONTEXT - 1, count).astype(int)
        token_ids[np.arange(count), ends] = 49407
        token_ids[np.arange(cases.TEXT_CONTEXT) > ends[:, None]] = 0
        return {"images": images, "token_ids": token_ids}, None, CLIPLoss()
    labels = rng.integers(0, model.output_shape[-1], count)
    from_logits = model.layers[-1].activation is keras.activations.linear
    return images, labels, keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_few_training_steps_lower_the_loss_and_move_every_variable(family):
    """Five `fit` steps on one tiny batch (Adam without weight decay, so only a gradient moves
    a variable) lower the loss, and every trainable variable receives a gradient: none is
    left out of the graph (DeiT's distillation head, Swin's bias tables, CLIP's temperature)."""
    keras.utils.set_random_seed(0)
    model = cases.build(family)
    x, y, loss = _training_batch(model)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss)
    before = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
    # One step an epoch: each epoch's loss is the batch's loss before that step's update (no
    # dropout, so it equals the inference loss); the fifth is after four updates.
    losses = model.fit(x, y, batch_size=8, epochs=5, shuffle=False, verbose=0).history["loss"]
    print(f"\n{family}: loss {losses[0]:.4f} -> {losses[-1]:.4f} after 4 updates")
    assert len(losses) == 5
    assert losses[-1] < losses[0], losses
    unchanged = [variable.path for variable, value in zip(model.trainable_variables, before)
                 if np.array_equal(keras.ops.convert_to_numpy(variable), value)]
    assert not unchanged, unchanged
