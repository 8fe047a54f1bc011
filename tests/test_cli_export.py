"""`vit-zoo export` and `vit-zoo predict` on exported artifacts, as a user runs them."""

from __future__ import annotations

import subprocess
import sys

import keras
import pytest
from PIL import Image

from tests import export_cases as cases
from vit_zoo.cli import main


def _vit_zoo(*args, cwd=None):
    result = subprocess.run([sys.executable, "-m", "vit_zoo.cli", *args], capture_output=True,
                            text=True, cwd=cwd, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def saved_keras(tmp_path_factory):
    """A small trained-looking classifier saved as .keras, and three images as PNG files."""
    folder = tmp_path_factory.mktemp("cli_export")
    model = cases.build("vit")
    model.save(folder / "m.keras")
    images = cases.images_for(model, count=3)
    paths = []
    for index, image in enumerate(images):
        paths.append(str(folder / f"image{index}.png"))
        Image.fromarray(image.astype("uint8")).save(paths[-1])
    expected = keras.ops.convert_to_numpy(model(images)).argmax(-1)
    return folder, paths, expected


def _top1(stdout: str) -> list[int]:
    """The first class listed under each image in `vit-zoo predict` output."""
    lines = stdout.splitlines()
    return [int(lines[i + 1].split()[-1]) for i, line in enumerate(lines)
            if line.endswith(".png")]


def test_export_every_format_then_predict_with_each(saved_keras):
    """Each artifact `vit-zoo export` writes, run by `vit-zoo predict`, ranks the same class
    first as the Keras model."""
    folder, images, expected = saved_keras
    labels = ",".join(str(i) for i in range(10))
    out = _vit_zoo("export", str(folder / "m.keras"), "--output", str(folder / "served" / "m"),
                   "--labels", labels)
    assert "served/m/1" in out
    out = _vit_zoo("export", str(folder / "m.keras"), "--format", "tflite", "--quantize",
                   "float16", "--output", str(folder / "m.tflite"),
                   "--calibration-images", str(folder))
    assert "float16" in out and "top-1 agreement" in out
    _vit_zoo("export", str(folder / "m.keras"), "--format", "onnx", "--output",
             str(folder / "m.onnx"))
    for artifact in ("served/m/1", "m.tflite", "m.onnx", "m.keras"):
        stdout = _vit_zoo("predict", str(folder / artifact), *images, "--top", "2",
                          "--labels", labels)
        assert _top1(stdout) == expected.tolist(), (artifact, stdout)


def test_saved_model_export_to_a_base_folder_takes_the_next_version(saved_keras, capsys):
    folder = saved_keras[0]
    base = folder / "versions"
    (base / "3").mkdir(parents=True)
    (base / "3" / "saved_model.pb").write_bytes(b"an older export")
    assert main(["export", str(folder / "m.keras"), "--output", str(base)]) == 0
    assert (base / "4" / "saved_model.pb").exists()
    assert (base / "3" / "saved_model.pb").read_bytes() == b"an older export"
    assert main(["export", str(folder / "m.keras"), "--output", str(base / "3")]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_export_arguments_are_refused_before_any_work(saved_keras, capsys, tmp_path):
    model = str(saved_keras[0] / "m.keras")
    cases_and_messages = [
        (["export", "ViT_Z9", "--output", str(tmp_path / "x")], "unknown model"),
        (["export", "ViT_S16", "--output", str(tmp_path / "x")], "needs --weights"),
        (["export", str(tmp_path / "missing.keras"), "--output", "x"], "no such model file"),
        (["export", model, "--format", "tflite", "--quantize", "int8", "--output",
          str(tmp_path / "m.tflite")], "--calibration-images"),
        (["export", model, "--quantize", "float16", "--output", str(tmp_path / "s")],
         "--format tflite only"),
        (["export", model, "--format", "tflite", "--quantize", "int8", "--calibration-images",
          str(tmp_path), "--output", str(tmp_path / "m.tflite")], "no image files"),
        (["predict", model, str(tmp_path / "missing.png")], "no such image file"),
    ]
    for argv, message in cases_and_messages:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    assert not list(tmp_path.iterdir())
    existing = tmp_path / "m.tflite"
    existing.write_bytes(b"keep me")
    assert main(["export", model, "--format", "tflite", "--output", str(existing)]) == 2
    assert existing.read_bytes() == b"keep me"
