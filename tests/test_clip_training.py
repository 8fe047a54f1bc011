"""CLIP end to end: contrastive fit on the digits with the tokenizer in tf.data, zero-shot
helpers and the `vit-zoo zero-shot` command, and the real CLIPModel under MirroredStrategy."""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.helpers import run_python
from vit_zoo import CLIPTokenizer, zero_shot
from vit_zoo.train.clip_digits import NUMBER_WORDS, TEST_TEMPLATES, clip_digits_config
from vit_zoo.train.runner import train

REPO_ROOT = Path(__file__).resolve().parent.parent
# One worker runs the module, so the trained CLIP (module fixture) is trained once, not per worker.
pytestmark = pytest.mark.xdist_group("clip_training")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small CLIP trained on captioned digits through the training job (about 40 s on two
    cores): its metrics and the saved model, loaded back."""
    output = tmp_path_factory.mktemp("clip_digits")
    metrics = train(clip_digits_config(epochs=12, output=str(output)))
    path = output / "model.keras"
    return {**metrics, "model": keras.saving.load_model(path)}, path


def test_contrastive_training_learns_zero_shot_digits(trained):
    result, _ = trained
    losses = result["history"]["loss"]
    print(f"\nzero-shot accuracy with unseen templates: {result['test_zero_shot_accuracy']:.3f} "
          f"(chance 0.10); loss {losses[0]:.3f} -> {losses[-1]:.3f} in "
          f"{result['train_seconds']:.0f} s")
    assert result["objective"] == "contrastive" and result["family"] == "clip"
    assert losses[-1] < 0.7 * losses[0]
    assert result["test_zero_shot_accuracy"] > 0.6  # chance is 0.1
    assert result["test_accuracy"] == result["test_zero_shot_accuracy"]


def test_zero_shot_classifier_is_the_normalized_mean_of_normalized_prompts(trained):
    model = trained[0]["model"]
    tokenizer = CLIPTokenizer(context_length=16)
    classifier = zero_shot.zero_shot_classifier(model, NUMBER_WORDS[:3], TEST_TEMPLATES, tokenizer)
    assert classifier.shape == (64, 3)
    for column, word in enumerate(NUMBER_WORDS[:3]):
        prompts = [template.format(word) for template in TEST_TEMPLATES]
        embeddings = keras.ops.convert_to_numpy(model.encode_text(tokenizer(prompts, 16)))
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
        mean = embeddings.mean(axis=0)
        np.testing.assert_allclose(classifier[:, column], mean / np.linalg.norm(mean), atol=1e-6)


def test_zero_shot_predict_agrees_with_the_model_logits(trained):
    """One template "{}": the classifier is the normalized text embedding of each class name, so
    its probabilities are the softmax of the model's own logits_per_image."""
    model = trained[0]["model"]
    from vit_zoo.train.data import digit_arrays

    images = digit_arrays(16, 0.2, 0)[1][0][:20]
    tokenizer = CLIPTokenizer(context_length=16)
    classifier = zero_shot.zero_shot_classifier(model, NUMBER_WORDS, ["{}"])
    ours = zero_shot.zero_shot_predict(model, classifier, images)
    logits, _ = model({"images": images, "token_ids": tokenizer(list(NUMBER_WORDS), 16)})
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
    np.testing.assert_allclose(ours, expected, atol=1e-5)


def test_imagenet_prompts_are_shipped():
    names, templates = zero_shot.imagenet_classnames(), zero_shot.imagenet_templates()
    assert len(names) == 1000 and names[0] == "tench" and names[-1] == "toilet paper"
    # ImageNet has two pairs of near-identical classes that OpenAI's list names alike.
    assert sorted(n for n in set(names) if names.count(n) > 1) == ["missile", "sunglasses"]
    assert len(templates) == 80 and all(t.count("{}") == 1 for t in templates)


def test_bad_templates_and_labels_are_refused(trained):
    model = trained[0]["model"]
    with pytest.raises(ValueError, match="exactly one"):
        zero_shot.zero_shot_classifier(model, ["cat"], ["a photo"])
    with pytest.raises(ValueError, match="at least one class"):
        zero_shot.zero_shot_classifier(model, [], ["{}"])


def test_zero_shot_command_on_image_files(trained, tmp_path):
    result, path = trained
    model = result["model"]
    from vit_zoo.train.data import digit_arrays

    (_, _), (x_test, y_test) = digit_arrays(16, 0.2, 0)
    classifier = zero_shot.zero_shot_classifier(model, NUMBER_WORDS,
                                                ["a picture of the numeral {}."])
    predicted = zero_shot.zero_shot_predict(model, classifier, x_test).argmax(axis=1)
    chosen = np.nonzero(predicted == y_test)[0][:3]  # images the model gets right in-process
    files = []
    for index in chosen:
        file = tmp_path / f"digit_{index}.png"
        keras.utils.save_img(file, x_test[index])
        files.append(str(file))
    out = run_python(["-m", "vit_zoo.cli", "zero-shot", *files, "--model", str(path),
                      "--labels", ",".join(NUMBER_WORDS),
                      "--templates", "a picture of the numeral {}.", "--top", "2"])
    blocks = out.strip().split("digit_")[1:]
    assert len(blocks) == 3
    for index, block in zip(chosen, blocks):
        best = block.splitlines()[1].split()
        assert best[1] == NUMBER_WORDS[y_test[index]], out
        assert 0.0 < float(best[0]) <= 1.0
    bad = run_python(["-m", "vit_zoo.cli", "zero-shot", files[0], "--model", str(path),
                      "--labels", "cat"], check=False)
    assert "at least two" in bad


_MIRRORED = r"""
import json
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras
from vit_zoo.losses import CLIPLoss
from vit_zoo.models.clip import CLIP, CLIPArch
from vit_zoo.models.vit import ViTArch

arch = CLIPArch("tiny", ViTArch("tiny", 32, 1, 2, 64, 4), 16, 16, 32, 2, 1)


def build_model():
    return CLIP(arch, context_length=8)


rng = np.random.default_rng(0)
images = rng.uniform(0, 255, (16, 16, 16, 3)).astype("float32")
token_ids = rng.integers(1, 49406, (16, 8)).astype("int32")
token_ids[:, -1] = 49407
dataset = tf.data.Dataset.from_tensor_slices({"images": images, "token_ids": token_ids}).batch(8)
keras.utils.set_random_seed(0)
initial = [w.numpy() for w in build_model().weights]


def train(strategy):
    with strategy.scope():
        model = build_model()
        model.set_weights(initial)
        model.compile(optimizer=keras.optimizers.SGD(0.1), loss=CLIPLoss())
    losses = model.fit(dataset, epochs=2, verbose=0).history["loss"]
    return losses, [w.numpy() for w in model.weights]


one_loss, one_weights = train(tf.distribute.get_strategy())
two_loss, two_weights = train(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))
moved = max(float(np.abs(a - b).max()) for a, b in zip(one_weights, initial))
error = max(float(np.abs(a - b).max() / (np.abs(a).max() + 1e-12))
            for a, b in zip(two_weights, one_weights))
print(json.dumps({"one": one_loss, "two": two_loss, "weight_error": error, "moved": moved}))
"""


def test_clip_model_under_mirrored_strategy_equals_one_device():
    """The real CLIPModel (both towers, ContrastiveLogits, CLIPLoss) on two replicas: the same
    losses and weights as one device on the same global batches."""
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    report = json.loads(run_python(["-c", _MIRRORED], env=env).strip().splitlines()[-1])
    np.testing.assert_allclose(report["two"], report["one"], rtol=1e-5)
    assert report["moved"] > 1e-3
    assert report["weight_error"] < 1e-5, report
