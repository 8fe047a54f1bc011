"""The `vit-zoo` command, run as a real subprocess."""

import subprocess
import sys

import numpy as np


def _vit_zoo(*args, cwd=None, timeout=900):
    result = subprocess.run([sys.executable, "-m", "vit_zoo.cli", *args], capture_output=True,
                            text=True, cwd=cwd, timeout=timeout)
    return result


def test_list_shows_builders_and_tags():
    result = _vit_zoo("list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("ViT_B16") and "imagenet21k+imagenet2012" in line for line in lines)
    assert any(line.startswith("ViT_H14") and "imagenet21k" in line for line in lines)
    verbose = _vit_zoo("list", "--verbose").stdout
    assert "https://storage.googleapis.com/vit_models/imagenet21k/ViT-B_16.npz" in verbose


def test_predict_with_local_weights(tmp_path, vit_reference):
    from PIL import Image

    image = (np.random.default_rng(0).uniform(0, 255, (50, 70, 3))).astype("uint8")
    Image.fromarray(image).save(tmp_path / "cat.png")
    result = _vit_zoo("predict", str(tmp_path / "cat.png"), "--model", "ViT_Ti16",
                      "--weights", str(vit_reference / "ti16_npz.npz"), "--top", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].endswith("cat.png") and len(lines) == 4
    assert all(line.split()[1] and line.split()[2].startswith("n") for line in lines[1:])


def test_predict_rejects_unknown_model_and_missing_file(tmp_path, capsys, vit_reference):
    from PIL import Image

    from vit_zoo.cli import main

    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    assert main(["predict", str(tmp_path / "x.png"), "--model", "ViT_Z9"]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "missing.png"), "--model", "ViT_Ti16",
                 "--weights", str(vit_reference / "ti16_npz.npz")]) == 2
    assert "no such image file" in capsys.readouterr().err
