"""The `tfds:` data source for real: a TFDS dataset that TFDS itself prepares from PNG files,
read by the training job by name from its data_dir.

The dataset is what a TFDS user writes for their own images: a GeneratorBasedBuilder (in a
package, as `tfds new` lays it out) over `<manual_dir>/<split>/<label>/*.png`, prepared with
`download_and_prepare` in a separate process. The training process never imports that code:
TFDS rebuilds the dataset from its files (dataset_info.json, features.json, the TFRecords), as
`vit-zoo train` on another machine would.
"""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import tensorflow_datasets as tfds  # the [tfds] extra, part of [test]: no skip when it is missing

from tests.helpers import run_python
from vit_zoo.train import data

IMAGE_SIZE = 16

BUILDER = '''
import tensorflow_datasets as tfds


class DigitPngs(tfds.core.GeneratorBasedBuilder):
    """Handwritten digits, grayscale PNG files in <manual_dir>/<split>/<label>/."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Put the PNG files in <manual_dir>/<split>/<label>/."

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(None, None, 1)),
                "label": tfds.features.ClassLabel(names=[str(i) for i in range(10)]),
            }),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        root = dl_manager.manual_dir
        return {split: self._generate_examples(root / split) for split in ("train", "test")}

    def _generate_examples(self, folder):
        for path in sorted(folder.glob("*/*.png")):
            yield f"{path.parent.name}/{path.name}", {"image": path, "label": path.parent.name}
'''

PREPARE = '''
import sys
import tensorflow_datasets as tfds
sys.path.insert(0, sys.argv[1])
from digit_pngs.digit_pngs_dataset_builder import DigitPngs

builder = DigitPngs(data_dir=sys.argv[2])
builder.download_and_prepare(
    download_config=tfds.download.DownloadConfig(manual_dir=sys.argv[3]))
print(builder.info.splits["train"].num_examples, builder.info.splits["test"].num_examples)
'''


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """(data_dir, per-split label counts): scikit-learn's digits upscaled to 16x16 as grayscale
    PNG files, prepared by TFDS as the dataset `digit_pngs` (about 10 s)."""
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    root = tmp_path_factory.mktemp("tfds")
    digits = load_digits()
    images = np.round(digits.images * (255 / 16)).astype("uint8")
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.2, random_state=0, stratify=digits.target)
    splits = {"train": (x_train, y_train), "test": (x_test, y_test)}
    for split, (split_images, labels) in splits.items():
        for index, (image, label) in enumerate(zip(split_images, labels)):
            folder = root / "manual" / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image, "L").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR).save(
                folder / f"{index}.png")
    package = root / "code" / "digit_pngs"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "digit_pngs_dataset_builder.py").write_text(textwrap.dedent(BUILDER))
    out = run_python(["-c", PREPARE, str(root / "code"), str(root / "data"),
                      str(root / "manual")], env={"TF_CPP_MIN_LOG_LEVEL": "3"}, timeout=300)
    assert out.split()[-2:] == [str(len(y_train)), str(len(y_test))], out
    counts = {split: np.bincount(labels, minlength=10) for split, (_, labels) in splits.items()}
    return root / "data", counts


def test_training_job_on_a_tfds_prepared_dataset(prepared, tmp_path):
    from vit_zoo.train.runner import TrainConfig, train

    data_dir, counts = prepared
    output = tmp_path / "run"
    epochs, batch_size = 4, 32
    train(TrainConfig.from_dict({
        "model": {"variant": "custom", "hidden_dim": 32, "depth": 1, "num_heads": 2,
                  "mlp_dim": 64, "patch_size": 4, "image_size": IMAGE_SIZE},
        "data": {"source": "tfds:digit_pngs:train", "test_source": "tfds:digit_pngs:test",
                 "tfds_data_dir": str(data_dir), "batch_size": batch_size},
        "optimization": {"epochs": epochs, "learning_rate": 3e-3, "warmup_epochs": 0.2},
        "run": {"output": str(output), "verbose": 0, "seed": 0},
    }))
    # The training process read the dataset from its files, not from the builder's code.
    assert "digit_pngs" not in tfds.list_builders()
    metrics = json.loads((output / "metrics.json").read_text())
    train_size = int(counts["train"].sum())
    assert metrics["train_examples"] == train_size == 1437
    assert metrics["class_names"] == [str(i) for i in range(10)]
    assert metrics["steps_run_now"] == epochs * (train_size // batch_size)
    # Chance is 10%; four epochs of this one-block ViT reach 61-72% (seeds 0-3).
    assert metrics["test_accuracy"] > 0.4, metrics["test_accuracy"]
    assert (output / "model.keras").exists()


def test_tfds_source_gives_rgb_images_and_reads_split_slices(prepared):
    data_dir, counts = prepared
    test = data.from_tfds("digit_pngs", "test", data_dir=str(data_dir))
    assert (test.size, test.num_classes) == (int(counts["test"].sum()), 10)
    images, labels = zip(*test.images().as_numpy_iterator())
    images, labels = np.stack(images), np.array(labels)
    # Grayscale PNGs come out RGB (three equal channels) in [0, 255], as every source does.
    assert images.shape == (test.size, IMAGE_SIZE, IMAGE_SIZE, 3) and images.dtype == np.uint8
    assert (images == images[..., :1]).all() and images.max() == 255
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), counts["test"])
    # Any TFDS split string: the halves of a split add up to it.
    halves = [data.from_tfds("digit_pngs", split, data_dir=str(data_dir))
              for split in ("train[:50%]", "train[50%:]")]
    assert [len(list(half.dataset)) for half in halves] == [half.size for half in halves]
    assert sum(half.size for half in halves) == int(counts["train"].sum())
    # A name neither in TFDS's catalog nor prepared under data_dir says where it looked.
    with pytest.raises(FileNotFoundError, match="neither in TFDS's catalog nor prepared under"):
        data.from_tfds("digit_pngz", "train", data_dir=str(data_dir))
