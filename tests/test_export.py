"""Deployment of every family: SavedModel signatures (fresh process, saved_model_cli), image
bytes, CLIP text and zero-shot, TF Serving warm-up and config, TFLite float32, bad input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import vit_zoo
import vit_zoo.export as export
from tests import export_cases as cases
from tests.helpers import relative_error, run_python
from vit_zoo.export.images import decode_images
from vit_zoo.transforms import EvalTransform

TOLERANCE = 1e-4
CLIP_LABELS = ["cat", "dog", "seven"]
CLIP_TEMPLATES = ["a photo of a {}.", "a drawing of a {}."]


class Exports:
    """Each case's model exported once per module, on first use."""

    def __init__(self, base: Path):
        self.base = base
        self.models: dict[str, keras.Model] = {}

    def model(self, name: str) -> keras.Model:
        if name not in self.models:
            self.models[name] = cases.build(name)
        return self.models[name]

    def saved_model(self, name: str) -> Path:
        path = self.base / name / "1"
        if not path.exists():
            clip = name == "clip"
            export.saved_model(self.model(name), path, labels=CLIP_LABELS if clip else None,
                               templates=CLIP_TEMPLATES if clip else None, warmup=True)
        return path


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    return Exports(tmp_path_factory.mktemp("saved_models"))


def _keras_outputs(name: str, model) -> dict[str, np.ndarray]:
    """What each case's default signature must return, computed with the Keras model."""
    if name == "clip_text":
        ids = vit_zoo.CLIPTokenizer(cases.TEXT_CONTEXT)(cases.TEXTS)
        return {"embeddings": keras.ops.convert_to_numpy(model(ids))}
    images = cases.images_for(model)
    if name == "clip":
        classifier = vit_zoo.zero_shot.zero_shot_classifier(model, CLIP_LABELS, CLIP_TEMPLATES)
        return {"probabilities": vit_zoo.zero_shot.zero_shot_predict(model, classifier, images)}
    outputs = model(images)
    if isinstance(outputs, (list, tuple)):
        return {f"features_{i}": keras.ops.convert_to_numpy(o) for i, o in enumerate(outputs)}
    outputs = keras.ops.convert_to_numpy(outputs)
    if name.endswith("features"):
        return {"features": outputs}
    return {"logits" if name == "vit" else "probabilities": outputs}


SERVE_IN_FRESH_PROCESS = """
import sys, numpy as np, tensorflow as tf
for name, folder, inputs in zip(sys.argv[1::3], sys.argv[2::3], sys.argv[3::3]):
    signature = tf.saved_model.load(folder).signatures["serving_default"]
    feed = dict(np.load(inputs, allow_pickle=False))
    if "texts" in feed:
        feed["texts"] = feed["texts"].astype(object)
    outputs = signature(**{key: tf.constant(value) for key, value in feed.items()})
    np.savez(inputs.replace(".inputs.npz", ".served.npz"),
             **{key: value.numpy() for key, value in outputs.items()})
"""


def _default_inputs(name: str, model) -> dict[str, np.ndarray]:
    if name == "clip_text":
        return {"texts": np.array(cases.TEXTS, dtype=np.bytes_)}
    return {"images": cases.images_for(model)}


def test_saved_models_serve_keras_outputs_in_a_fresh_process(exports, tmp_path):
    """Every family, reloaded with tf.saved_model.load by a process that never imports
    vit_zoo (as TF Serving loads it), gives the Keras model's outputs."""
    args = []
    for name in cases.BUILDERS:
        np.savez(tmp_path / f"{name}.inputs.npz", **_default_inputs(name, exports.model(name)))
        args += [name, str(exports.saved_model(name)), str(tmp_path / f"{name}.inputs.npz")]
    run_python(["-c", SERVE_IN_FRESH_PROCESS, *args])
    for name in cases.BUILDERS:
        served = np.load(tmp_path / f"{name}.served.npz")
        for key, expected in _keras_outputs(name, exports.model(name)).items():
            assert relative_error(served[key], expected) <= TOLERANCE, (name, key)
        if "top_k_indices" in served:
            assert np.array_equal(served["top_k_indices"][:, 0],
                                  served["probabilities"].argmax(-1)), name


@pytest.mark.parametrize("name", ["vit", "deit", "hybrid", "mixer", "swin", "clip", "clip_text"])
def test_saved_model_cli_runs_the_default_signature(exports, tmp_path, name):
    """`saved_model_cli run`, TensorFlow's own command-line runner, on every family."""
    model = exports.model(name)
    feed = _default_inputs(name, model)
    if name == "clip_text":
        inputs = ["--input_exprs", f"texts={cases.TEXTS!r}"]  # a literal: safe mode
    else:
        np.save(tmp_path / "images.npy", feed["images"])
        inputs = ["--inputs", f"images={tmp_path / 'images.npy'}"]
    cli = Path(sys.executable).with_name("saved_model_cli")
    subprocess.run([str(cli), "run", "--dir", str(exports.saved_model(name)), "--tag_set",
                    "serve", "--signature_def", "serving_default", *inputs, "--outdir",
                    str(tmp_path / "out")], check=True, capture_output=True, timeout=300)
    for key, expected in _keras_outputs(name, model).items():
        assert relative_error(np.load(tmp_path / "out" / f"{key}.npy"), expected) <= TOLERANCE


@pytest.mark.parametrize("name", cases.IMAGE_CASES)
def test_image_bytes_signature_equals_float_signature(exports, name):
    """PNG bytes of an image already at the model's size decode to the same floats, so the two
    signatures must agree exactly (up to float summation order)."""
    signatures = tf.saved_model.load(str(exports.saved_model(name))).signatures
    images = cases.images_for(exports.model(name))
    encoded = [tf.io.encode_png(image.astype("uint8")).numpy() for image in images]
    default = signatures["serving_default"]
    float_name = {"clip": "zero_shot", "vit_features": "features", "swin_stages": "features"}
    twin = f"{float_name[name]}_image_bytes" if name in float_name else "predict_image_bytes"
    from_bytes = signatures[twin](image_bytes=tf.constant(encoded))
    from_floats = default(images=tf.constant(images))
    assert from_bytes.keys() == from_floats.keys()
    for key, value in from_floats.items():
        if value.dtype == tf.string:
            assert np.array_equal(from_bytes[key].numpy(), value.numpy())
        else:
            np.testing.assert_allclose(from_bytes[key].numpy(), value.numpy(), atol=1e-6)


def _encoded(image: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return buffer.getvalue()


def test_decode_resizes_and_crops_as_the_evaluation_transform():
    """Against NumPy: a 2x area downscale is the mean of 2x2 blocks; keep_aspect crops the
    centre square first; a 0.5 crop fraction keeps the central half; grey and RGBA images get
    RGB; JPEG decodes too."""
    rng = np.random.default_rng(0)
    wide = rng.integers(0, 256, (64, 96, 3)).astype("uint8")
    square = wide[:, 16:80].astype("float64")
    blocks = square.reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))
    got = decode_images([_encoded(wide, "PNG")], (32, 32), EvalTransform(1.0, "area"))[0]
    np.testing.assert_allclose(got.numpy(), blocks, atol=1e-3)
    got = decode_images([_encoded(wide, "PNG")], (32, 32), EvalTransform(0.5, "area"))[0]
    np.testing.assert_allclose(got.numpy(), square[16:48, 16:48], atol=1e-3)
    squashed = wide.astype("float64").reshape(32, 2, 32, 3, 3).mean(axis=(1, 3))
    got = decode_images([_encoded(wide, "PNG")], (32, 32),
                        EvalTransform(1.0, "area", keep_aspect=False))[0]
    np.testing.assert_allclose(got.numpy(), squashed, atol=1e-3)
    grey = wide[..., 0]
    got = decode_images([_encoded(grey, "PNG")], (64, 96), EvalTransform())[0].numpy()
    np.testing.assert_allclose(got, np.repeat(grey[..., None], 3, -1), atol=1e-3)
    rgba = np.concatenate([wide, np.full((64, 96, 1), 7, "uint8")], axis=-1)
    got = decode_images([_encoded(rgba, "PNG")], (64, 96), EvalTransform())[0].numpy()
    np.testing.assert_allclose(got, wide, atol=1e-3)
    smooth = np.broadcast_to(np.linspace(0, 255, 96, dtype="float32"), (64, 96))
    smooth = np.stack([smooth, smooth[::-1], np.full_like(smooth, 90)], -1).astype("uint8")
    jpeg = decode_images([_encoded(smooth, "JPEG")], (64, 96), EvalTransform())[0].numpy()
    assert np.abs(jpeg - smooth).mean() < 3  # lossy, but the same picture


def test_registered_weights_carry_their_evaluation_transform():
    from vit_zoo.transforms import for_record
    from vit_zoo.weights import lookup

    google = for_record(lookup("vit", "B/16", "augreg-imagenet21k+imagenet2012"))
    assert (google.crop_fraction, google.interpolation, google.keep_aspect) == (
        1.0, "bilinear", False)
    swin = for_record(lookup("swin", "T", "ms_in1k"))
    assert (swin.crop_fraction, swin.interpolation) == (0.9, "bicubic")
    assert for_record(lookup("swin", "B", "ms_in1k-384")).crop_fraction == 1.0
    assert for_record(lookup("clip", "B/32", "openai")).interpolation == "bicubic"


def test_clip_signatures_tokenize_raw_text_and_classify_zero_shot(exports):
    model = exports.model("clip")
    signatures = tf.saved_model.load(str(exports.saved_model("clip"))).signatures
    texts = cases.TEXTS
    served = signatures["encode_text"](texts=tf.constant(texts))
    ids = vit_zoo.CLIPTokenizer(cases.TEXT_CONTEXT)(texts)
    expected = keras.ops.convert_to_numpy(model.encode_text(ids))
    assert relative_error(served["embeddings"].numpy(), expected) <= TOLERANCE
    norms = np.linalg.norm(served["normalized_embeddings"].numpy(), axis=-1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    images = cases.images_for(model)
    image_embeddings = signatures["encode_image"](images=tf.constant(images))["embeddings"]
    expected = keras.ops.convert_to_numpy(model.encode_image(images))
    assert relative_error(image_embeddings.numpy(), expected) <= TOLERANCE
    zero_shot = signatures["zero_shot"](images=tf.constant(images))
    assert zero_shot["labels"].numpy().tolist() == [[s.encode() for s in CLIP_LABELS]] * 3
    best = zero_shot["top_k_labels"].numpy()[:, 0]
    assert list(best) == [CLIP_LABELS[i].encode() for i in
                          zero_shot["probabilities"].numpy().argmax(-1)]


def test_warmup_requests_replay_against_the_signatures(exports):
    """Each warm-up record parses as TF Serving's PredictionLog and its request runs."""
    from tensorflow_serving.apis import prediction_log_pb2

    folder = exports.saved_model("clip")
    signatures = tf.saved_model.load(str(folder)).signatures
    replayed = []
    warmup = folder / "assets.extra" / "tf_serving_warmup_requests"
    for record in tf.data.TFRecordDataset(str(warmup)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        inputs = {key: tf.make_ndarray(value) for key, value in request.inputs.items()}
        signatures[request.model_spec.signature_name](**inputs)
        replayed.append(request.model_spec.signature_name)
    assert sorted(replayed) == sorted(signatures)


def test_serving_config_lists_every_model(exports):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    for name in ("vit", "swin"):
        exports.saved_model(name)
    path = export.serving_config(exports.base)
    config = text_format.Parse(path.read_text(), model_server_config_pb2.ModelServerConfig())
    entries = {entry.name: entry for entry in config.model_config_list.config}
    assert {"vit", "swin"} <= set(entries)
    assert entries["swin"].base_path == str((exports.base / "swin").resolve())
    assert entries["vit"].model_platform == "tensorflow"


@pytest.mark.parametrize("name", list(cases.BUILDERS))
def test_tflite_float32_matches_keras_with_builtin_ops(tmp_path, name, exports):
    """Every family (and feature extractors, CLIP's text tower) converts with builtin ops only
    (no Flex, CUSTOM or ROLL: Swin's shifted windows are gathers) and matches Keras. Texts end
    at several positions, one cut at the context so that its end-of-text (where the text tower
    pools) is the last slot; the text tower alone is converted at a fixed batch size, CLIP's
    `encode_text` with a resizable one. Full-size Swin-T: tests/test_swin.py."""
    model = exports.model(name)
    ids = vit_zoo.CLIPTokenizer(cases.TEXT_CONTEXT)(cases.TEXTS + ["a long caption " * 8])
    assert ids[-1, -1] == 49407  # end-of-text in the last slot
    batch_size = None
    if name == "clip":
        data = {"encode_image": cases.images_for(model), "encode_text": ids}
    elif name == "clip_text":
        data, batch_size = ids, len(ids)
    else:
        data = cases.images_for(model)
    report = export.tflite(model, tmp_path / f"{name}.tflite", batch_size=batch_size,
                           validation_data=data)
    assert report.max_relative_error <= TOLERANCE, str(report)
    assert not any(op.startswith("Flex") or op in ("CUSTOM", "ROLL") for op in report.ops), (
        report.ops)
    assert report.path.stat().st_size == report.size_bytes
    if name == "clip":
        assert report.signatures == ["encode_image", "encode_text"]


# --- bad input ------------------------------------------------------------------------------

def test_served_signatures_reject_bad_input_with_readable_errors(exports):
    signatures = tf.saved_model.load(str(exports.saved_model("vit"))).signatures
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        signatures["predict_image_bytes"](image_bytes=tf.constant([b"not an image"]))
    expected = r"images must be float32 \(N, 32, 32, 3\), RGB in \[0, 255\]"
    with pytest.raises(tf.errors.InvalidArgumentError, match=expected + "(.|\n)*1 32 32 4"):
        signatures["serving_default"](images=tf.zeros((1, 32, 32, 4)))
    with pytest.raises(tf.errors.InvalidArgumentError, match=expected + "(.|\n)*32 32 3"):
        signatures["serving_default"](images=tf.zeros((32, 32, 3)))
    text = tf.saved_model.load(str(exports.saved_model("clip_text"))).signatures["encode_text"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="expected to be a string tensor"):
        text(texts=tf.constant([1, 2]))


def test_saved_model_cli_reports_a_non_image(exports, tmp_path):
    cli = Path(sys.executable).with_name("saved_model_cli")
    result = subprocess.run(
        [str(cli), "run", "--dir", str(exports.saved_model("vit")), "--tag_set", "serve",
         "--signature_def", "predict_image_bytes", "--input_exprs",
         "image_bytes=[b'GIF89a broken']"],
        capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "InvalidArgumentError" in result.stderr and "Invalid GIF data" in result.stderr


def test_version_folders_are_never_overwritten_by_accident(exports, tmp_path):
    model = exports.model("vit")
    target = tmp_path / "m" / "1"
    export.saved_model(model, target)
    stamp = (target / "saved_model.pb").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.saved_model(model, target)
    assert (target / "saved_model.pb").stat().st_mtime_ns == stamp
    export.saved_model(model, target, overwrite=True)
    assert (target / "saved_model.pb").stat().st_mtime_ns != stamp
    with pytest.raises(ValueError, match="numeric version"):
        export.saved_model(model, tmp_path / "m" / "latest")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["1"]  # no staging left


def test_export_arguments_are_checked_before_any_work(exports, tmp_path):
    model = exports.model("vit")
    with pytest.raises(ValueError, match="representative_data"):
        export.tflite(model, tmp_path / "m.tflite", quantize="int8")
    with pytest.raises(ValueError, match="refused for CLIP text towers"):
        export.tflite(exports.model("clip_text"), tmp_path / "t.tflite", quantize="int8",
                      representative_data=np.ones((4, cases.TEXT_CONTEXT), "int32"))
    with pytest.raises(ValueError, match="quantize must be one of"):
        export.tflite(model, tmp_path / "m.tflite", quantize="int4")
    with pytest.raises(ValueError, match="3 labels given for a model with 10 classes"):
        export.saved_model(model, tmp_path / "m" / "1", labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="any size"):
        export.saved_model(vit_zoo.ViT(cases.TINY_VIT, input_shape=(None, None, 3)),
                           tmp_path / "d" / "1")
    with pytest.raises(ValueError, match="no classification head"):
        export.saved_model(exports.model("vit_features"), tmp_path / "f" / "1", labels=["a"])
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.tflite").exists()


def test_flex_ops_are_an_error_naming_them(tmp_path):
    class Unsupported(keras.layers.Layer):  # tf.roll has no builtin TFLite kernel
        def call(self, x):
            return tf.roll(x, shift=1, axis=1)

    images = keras.Input((8, 8, 3))
    model = keras.Model(images, keras.layers.Dense(2, name="head")(
        keras.layers.Flatten()(Unsupported()(images))))
    with pytest.raises(export.ConversionError, match="Roll"):
        export.tflite(model, tmp_path / "roll.tflite")
    assert not list(tmp_path.iterdir())


def test_report_is_json_friendly_and_readable(exports, tmp_path):
    report = export.tflite(exports.model("mixer"), tmp_path / "m.tflite",
                           validation_data=cases.images_for(exports.model("mixer")))
    text = str(report)
    assert "MiB" in text and "FULLY_CONNECTED" in text and "top-1 agreement 1.0000" in text
    json.dumps({"size": report.size_bytes, "ops": report.ops})


def test_tflite_of_a_vit_for_any_size_runs_at_several_sizes(tmp_path):
    """Free height and width: the position embeddings are resampled inside the file."""
    from tests.helpers import randomize
    from vit_zoo.export.tflite_export import interpreter, run_signature

    model = randomize(vit_zoo.ViT(cases.TINY_VIT, input_shape=(None, None, 3), classes=10,
                                  classifier_activation=None), 0, 0.05, 1.0)
    report = export.tflite(model, tmp_path / "any_size.tflite")
    rng = np.random.default_rng(0)
    for shape in [(2, 32, 32, 3), (1, 48, 64, 3)]:
        images = rng.uniform(0, 255, shape).astype("float32")
        lite = run_signature(interpreter(report.path), "serving_default", images)["output_0"]
        assert relative_error(lite, keras.ops.convert_to_numpy(model(images))) <= TOLERANCE
