"""The lower bounds in pyproject.toml hold: a throwaway virtual environment gets the floor
release of every dependency (and of the [tfds] extra), pip resolving the rest as it would for a
user who has exactly those, and a smoke run there uses every feature that needs one of them.
About 2 min on two cores with pip's cache warm, most of it installing TensorFlow 2.18; the
environment (2.6 GB) is deleted afterwards.

The smoke run (`python -m tests.test_dependency_floors <site-packages> <floors> <work dir>`,
with this repository on PYTHONPATH): the training job from a YAML config on the digits with every
augmentation layer plus MixUp and CutMix (tensorflow, keras, numpy, scikit-learn, pyyaml,
tensorboard), the .keras file loaded back in safe mode and asked about a PNG file (pillow),
TFLite export run by LiteRT (ai-edge-litert), a SavedModel export, the CLIP tokenizer (ftfy,
regex), a .safetensors read, and a dataset that TFDS prepares from PNG files, read by the `tfds:`
source (tensorflow-datasets, importlib_resources).

The floors are in pyproject.toml with their reasons; the ones this test found: Keras 3.9
(RandomErasing and CutMix are missing from 3.8), tensorflow-datasets 4.9.3 (4.9.0 and 4.9.1 fail
to import under the protobuf 5 that TensorFlow 2.18 allows, 4.9.2 builders lack is_prepared),
ai-edge-litert 2.0.2 (the first 2.x release on PyPI), regex 2023.10.3 (no 2023.10.0 exists).
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

#: The extras whose floors are checked with the dependencies.
EXTRAS = ("tfds",)
#: Requirements that only exclude broken releases, with the reason; installed as written.
EXCLUSIONS = {
    "tensorflow-metadata": "1.21.0 needs protobuf >= 6.31.1 but declares >= 4.25.2",
}


def _requirements() -> list[tuple[str, str | None, str]]:
    """(normalized name, floor or None, requirement) for pyproject's dependencies and EXTRAS."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    requirements = list(project["dependencies"])
    for extra in EXTRAS:
        requirements += project["optional-dependencies"][extra]
    parsed = []
    for requirement in requirements:
        text = requirement.split(";")[0].strip()
        name = re.match(r"[A-Za-z0-9_.\-]+", text)[0]
        floor = re.search(r">=\s*([0-9][0-9A-Za-z.]*)", text)
        parsed.append((re.sub(r"[-_.]+", "-", name).lower(), floor and floor[1], requirement))
    return parsed


def test_every_requirement_has_a_floor_or_is_an_explained_exclusion():
    for name, floor, requirement in _requirements():
        assert floor is not None or name in EXCLUSIONS, f"{requirement!r} has no floor (>=)"


def test_floors_install_and_run(tmp_path):
    import pytest  # not at the top: the smoke run's environment has no pytest

    floors = {name: floor for name, floor, _ in _requirements() if floor is not None}
    pins = [f"{name}=={floor}" for name, floor in floors.items()]
    pins += [requirement for name, floor, requirement in _requirements() if floor is None]
    environment_dir = tmp_path / "env"
    try:
        subprocess.run([sys.executable, "-m", "venv", str(environment_dir)], check=True,
                       timeout=300)
        python = str(environment_dir / "bin" / "python")
        install = subprocess.run(
            [python, "-m", "pip", "install", "--quiet", "--prefer-binary", *pins],
            capture_output=True, text=True, timeout=900)
        if install.returncode != 0:
            message = f"pip could not install the floors:\n{install.stdout}\n{install.stderr}"
            offline = "No matching distribution" not in install.stderr and not os.environ.get("CI")
            pytest.skip(message) if offline else pytest.fail(message)
        site_packages = subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True, text=True, check=True).stdout.strip()
        run = subprocess.run(
            [python, "-m", "tests.test_dependency_floors", site_packages, json.dumps(floors),
             str(tmp_path / "work")],
            capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO_ROOT)})
        assert run.returncode == 0, (f"smoke run under the floors failed:\n{run.stdout[-5000:]}"
                                     f"\n{run.stderr[-10000:]}")
        assert "smoke run passed" in run.stdout, run.stdout
    finally:
        shutil.rmtree(environment_dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------
# The smoke run, in its own process in the environment of floors.


def _check_versions(target: Path, floors: dict[str, str]) -> None:
    from packaging.version import Version

    for name, floor in floors.items():
        distribution = importlib.metadata.distribution(name)
        where = Path(distribution.locate_file("")).resolve()
        assert where == target.resolve(), f"{name} comes from {where}, not the floor folder"
        assert Version(distribution.version) == Version(floor), (name, distribution.version)


def _train_and_use(work: Path) -> None:
    import keras
    import numpy as np
    import yaml
    from PIL import Image

    import vit_zoo
    from vit_zoo.export.artifacts import predict_artifact
    from vit_zoo.train import data
    from vit_zoo.train.runner import TrainConfig, train

    config = {
        "model": {"variant": "custom", "hidden_dim": 32, "depth": 1, "num_heads": 2,
                  "mlp_dim": 64, "patch_size": 4, "image_size": 16},
        "data": {"source": "digits", "labels_per_class": 20, "batch_size": 20,
                 "augment": ["flip", "translate", "rotate", "randaugment", "random_erasing"],
                 "mixup_alpha": 0.2, "cutmix_alpha": 1.0},
        "optimization": {"epochs": 1, "warmup_epochs": 0.5},
        "run": {"output": str(work / "run"), "verbose": 0},
    }
    (work / "run.yaml").write_text(yaml.safe_dump(config))
    metrics = train(TrainConfig.from_yaml(work / "run.yaml"))
    assert metrics["steps_run_now"] == 10 and np.isfinite(metrics["test_loss"]), metrics
    assert list((work / "run" / "logs").rglob("*.tfevents*")), "no TensorBoard events"

    model = keras.saving.load_model(work / "run" / "model.keras")  # safe mode
    _, (test_images, _) = data.digit_arrays(16)
    images = test_images[:8]
    png = work / "digit.png"
    Image.fromarray(images[0].round().astype("uint8")).save(png)
    labels = metrics["class_names"]
    best = predict_artifact(work / "run" / "model.keras", [str(png)], top=1, labels=labels)[0]
    assert best.top[0][0] in labels, best

    report = vit_zoo.export.tflite(model, work / "model.tflite", validation_data=images)
    assert report.max_relative_error < 1e-4 and report.top1_agreement == 1.0, str(report)
    folder = vit_zoo.export.saved_model(model, work / "saved_models" / "digits" / "1")
    from_saved = predict_artifact(folder, [str(png)], top=1, labels=labels)[0]
    assert from_saved.top[0][0] == best.top[0][0], (from_saved, best)

    tokens = vit_zoo.CLIPTokenizer()(["a photo of a “cat”"])
    assert tuple(tokens.shape) == (1, 77) and int(tokens[0, 0]) == 49406


def _safetensors(work: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    from vit_zoo.weights.readers import detect_layout, read_safetensors

    arrays = {"blocks.0.attn.qkv.weight": np.arange(12, dtype="float32").reshape(3, 4)}
    save_file(arrays, str(work / "weights.safetensors"))
    assert detect_layout(work / "weights.safetensors") == "timm_safetensors"
    np.testing.assert_array_equal(read_safetensors(work / "weights.safetensors")[
        "blocks.0.attn.qkv.weight"], arrays["blocks.0.attn.qkv.weight"])


def _tfds(work: Path) -> None:
    import numpy as np
    import tensorflow_datasets as tfds
    from PIL import Image

    from vit_zoo.train import data

    class FloorDigits(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self, supervised_keys=("image", "label"),
                features=tfds.features.FeaturesDict({
                    "image": tfds.features.Image(shape=(None, None, 1)),
                    "label": tfds.features.ClassLabel(names=["dark", "light"])}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples(work / "pngs")}

        def _generate_examples(self, folder):
            for path in sorted(folder.glob("*/*.png")):
                yield path.name, {"image": path, "label": path.parent.name}

    for index in range(8):
        name = ["dark", "light"][index % 2]
        (work / "pngs" / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((12, 12), 40 + 160 * (index % 2), "uint8"), "L").save(
            work / "pngs" / name / f"{index}.png")
    FloorDigits(data_dir=str(work / "tfds")).download_and_prepare()
    source = data.from_tfds("floor_digits", "train", data_dir=str(work / "tfds"))
    images, labels = zip(*source.images().as_numpy_iterator())
    assert source.size == 8 and source.class_names == ["dark", "light"]
    assert np.stack(images).shape == (8, 12, 12, 3) and sorted(labels) == [0] * 4 + [1] * 4
    try:
        data.from_tfds("floor_digitz", "train", data_dir=str(work / "tfds"))
    except FileNotFoundError as error:
        assert "neither in TFDS's catalog" in str(error), error
    else:
        raise AssertionError("an unknown TFDS name was not refused")


def _smoke(target: Path, floors: dict[str, str], work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    _check_versions(target, floors)
    _train_and_use(work)
    _safetensors(work)
    _tfds(work)
    _check_versions(target, floors)  # nothing imported later replaced a floor
    print("smoke run passed under", json.dumps(floors))


if __name__ == "__main__":
    _smoke(Path(sys.argv[1]), json.loads(sys.argv[2]), Path(sys.argv[3]))
