"""OpenVINO export: every family converts, float32 agrees with Keras to 1e-5, bfloat16 picks the
same digit as Keras on the digits models, the IR reloads in a fresh process and through
`vit-zoo predict`, and what cannot convert is named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

pytest.importorskip("openvino")

from tests import export_cases as cases  # noqa: E402
from tests.helpers import run_python  # noqa: E402
from vit_zoo import export  # noqa: E402
from vit_zoo.export.openvino_export import (  # noqa: E402
    OpenVINOConversionError,
    compile_openvino,
    openvino_input_size,
    run_openvino,
)

FLOAT32_TOLERANCE = 1e-5
BFLOAT16_AGREEMENT = 0.99


def _inputs(name: str, model: keras.Model, count: int = 4) -> np.ndarray:
    if name == "clip_text":  # token ids of varied lengths, end-of-text the largest id
        rng = np.random.default_rng(0)
        ids = rng.integers(1, 49406, (count, model.input_shape[1])).astype("int32")
        for row, end in enumerate(range(3, 3 + count)):
            ids[row, end] = 49407
            ids[row, end + 1:] = 0
        return ids
    return cases.images_for(model, count)


def _exportable(name: str) -> keras.Model:
    model = cases.build(name)
    return model.image_encoder if name == "clip" else model


@pytest.mark.parametrize("name", list(cases.BUILDERS))
def test_float32_ir_matches_keras(tmp_path, name):
    model = _exportable(name)
    data = _inputs(name, model)
    report = export.openvino(model, tmp_path / f"{name}.xml", validation_data=data, threads=2)
    print(report)
    assert report.max_relative_error <= FLOAT32_TOLERANCE
    assert report.runtime_precision == "f32"
    assert (tmp_path / f"{name}.bin").stat().st_size > 0
    assert report.inputs == ["token_ids" if name == "clip_text" else "images"]
    expected = model.predict(data, verbose=0)
    ours = run_openvino(tmp_path / f"{name}.xml", data)  # the file, compiled anew
    first = expected[0] if isinstance(expected, list) else expected
    assert np.max(np.abs(ours - first)) / np.max(np.abs(first)) <= FLOAT32_TOLERANCE


@pytest.fixture(scope="module")
def digits_models(tmp_path_factory):
    """A ViT, a Swin and a Mixer trained on the 16 px digits by the training job, and the
    digits' test images."""
    from vit_zoo.train.data import digit_arrays
    from vit_zoo.train.runner import TrainConfig, train

    shapes = {
        "vit": {"family": "vit", "shape": {"hidden_dim": 64, "depth": 2, "num_heads": 2,
                                           "mlp_dim": 128, "patch_size": 4}},
        "swin": {"family": "swin", "shape": {"embed_dim": 32, "depths": [2, 2],
                                             "num_heads": [2, 4], "window_size": 2}},
        "mixer": {"family": "mixer", "shape": {"hidden_dim": 64, "depth": 2,
                                               "tokens_mlp_dim": 32, "channels_mlp_dim": 128,
                                               "patch_size": 4}},
    }
    # Trained until their logits have margins (a ViT learns the digits more slowly), so that
    # agreement measures the export, not coin flips between near-equal logits.
    epochs = {"vit": 8, "swin": 3, "mixer": 3}
    folder = tmp_path_factory.mktemp("openvino_digits")
    models = {}
    for name, model in shapes.items():
        config = TrainConfig.from_dict({
            "model": {"variant": "custom", "image_size": 16, **model},
            "data": {"batch_size": 32, "eval_crop_fraction": 1.0},
            "optimization": {"epochs": epochs[name], "learning_rate": 2e-3,
                             "warmup_epochs": 0.5},
            "run": {"verbose": 0, "output": str(folder / name)},
        })
        metrics = train(config)
        models[name] = (keras.saving.load_model(folder / name / "model.keras"),
                        metrics["test_accuracy"])
    (_, _), (test_images, _) = digit_arrays(16, 0.2, 0)
    return models, test_images


@pytest.mark.parametrize("name", ["vit", "swin", "mixer"])
def test_bfloat16_ir_picks_the_digit_keras_picks(digits_models, tmp_path, name):
    models, images = digits_models
    model, accuracy = models[name]
    report = export.openvino(model, tmp_path / f"{name}.xml", precision="bf16",
                             validation_data=images, threads=2)
    print(f"{name} (test accuracy {accuracy:.3f}): {report}")
    assert report.examples == len(images) == 360
    assert report.top1_agreement >= BFLOAT16_AGREEMENT
    # bfloat16 really ran where the CPU has it (the report says which), and differs from f32.
    if report.runtime_precision == "bf16":
        assert 1e-4 < report.max_relative_error < 5e-2
    assert str(compile_openvino(tmp_path / f"{name}.xml", threads=2).get_property(
        "INFERENCE_PRECISION_HINT")) == str(compile_openvino(
            tmp_path / f"{name}.xml", "bf16", threads=2).get_property("INFERENCE_PRECISION_HINT"))


def test_ir_reloads_in_a_fresh_process_and_vit_zoo_predict_reads_it(tmp_path):
    from PIL import Image

    model = cases.build("vit")
    data = cases.images_for(model, 2)
    export.openvino(model, tmp_path / "vit.xml")
    np.save(tmp_path / "images.npy", data)
    ir, inputs = str(tmp_path / "vit.xml"), str(tmp_path / "images.npy")
    script = (
        "import json, numpy as np\n"
        "from vit_zoo.export.openvino_export import run_openvino\n"
        f"print(json.dumps(run_openvino({ir!r}, np.load({inputs!r})).tolist()))\n"
    )
    fresh = np.array(json.loads(run_python(["-c", script]).strip().splitlines()[-1]))
    expected = model.predict(data, verbose=0)
    assert np.max(np.abs(fresh - expected)) / np.max(np.abs(expected)) <= FLOAT32_TOLERANCE
    assert openvino_input_size(tmp_path / "vit.xml") == tuple(model.input_shape[1:3])

    image = tmp_path / "digit.png"
    Image.fromarray(data[0].astype("uint8")).save(image)
    result = subprocess.run([sys.executable, "-m", "vit_zoo.cli", "predict",
                             str(tmp_path / "vit.xml"), str(image), "--top", "2",
                             "--labels", ",".join(f"c{i}" for i in range(model.output_shape[-1]))],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == str(image) and len(lines) == 3
    expected_top = int(np.argmax(model.predict(data[:1], verbose=0)))
    assert lines[1].split()[-1] == f"c{expected_top}"


def test_a_model_that_does_not_convert_names_the_op(tmp_path):
    import tensorflow as tf

    class LogGamma(keras.layers.Layer):
        def call(self, x):
            return tf.math.lgamma(x + 1.0)

    images = keras.Input((8, 8, 3), name="images")
    model = keras.Model(images, LogGamma()(images), name="lgamma_model")
    with pytest.raises(OpenVINOConversionError, match=r"lgamma_model \(features\).*Lgamma"):
        export.openvino(model, tmp_path / "lgamma.xml")
    assert not list(tmp_path.iterdir())  # nothing written


def test_bad_arguments_are_refused_before_any_work(tmp_path):
    model = cases.build("vit")
    with pytest.raises(ValueError, match=r"\.xml"):
        export.openvino(model, tmp_path / "vit.onnx")
    with pytest.raises(ValueError, match="precision"):
        export.openvino(model, tmp_path / "vit.xml", precision="int4")
    with pytest.raises(ValueError, match=r"model\.image_encoder.*model\.text_encoder"):
        export.openvino(cases.build("clip"), tmp_path / "clip.xml")
    (tmp_path / "vit.xml").write_text("keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export.openvino(model, tmp_path / "vit.xml", overwrite=False)
    assert (tmp_path / "vit.xml").read_text() == "keep me"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["vit.xml"]


def test_vit_zoo_export_writes_an_openvino_ir(tmp_path):
    model = cases.build("vit")
    model.save(tmp_path / "vit.keras")
    output = tmp_path / "out" / "vit.xml"
    command = [sys.executable, "-m", "vit_zoo.cli", "export", str(tmp_path / "vit.keras"),
               "--format", "openvino", "--precision", "bf16", "--output", str(output)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "bf16" in result.stdout and output.exists() and output.with_suffix(".bin").exists()
    refused = subprocess.run(command[:-2] + ["--output", str(tmp_path / "vit.bin")],
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and ".xml" in refused.stderr
    assert not (tmp_path / "vit.bin").exists()
    Path(output).unlink()
