"""CLIPLoss: value against numpy and open_clip, exactness under MirroredStrategy, the
logit-scale clamp, serialization."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import relative_error, run_python
from vit_zoo.layers.contrastive import ContrastiveLogits
from vit_zoo.losses import CLIPLoss, ContrastiveLossMixin

REPO_ROOT = Path(__file__).resolve().parent.parent


@keras.saving.register_keras_serializable(package="vit_zoo_tests")
class DualEncoder(ContrastiveLossMixin, keras.Model):
    """A CLIP in miniature: call((images, token_ids)) -> (logits_per_image, logits_per_text)."""

    def __init__(self, vocab_size: int = 20, embed_dim: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.image_tower = keras.layers.Dense(embed_dim, name="image_tower")
        self.token_embedding = keras.layers.Embedding(vocab_size, embed_dim, name="token_embedding")
        self.text_tower = keras.layers.Dense(embed_dim, name="text_tower")
        self.logits = ContrastiveLogits(name="logits")

    def call(self, inputs):
        images, token_ids = inputs
        text = keras.ops.mean(self.token_embedding(token_ids), axis=1)
        return self.logits((self.image_tower(images), self.text_tower(text)))

    def get_config(self) -> dict:
        return {**super().get_config(), "vocab_size": self.vocab_size, "embed_dim": self.embed_dim}


def make_data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images [n, 6] float32, token_ids [n, 5] int32)."""
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(n, 6)).astype("float32"),
        rng.integers(0, 20, size=(n, 5)).astype("int32"),
    )


def make_model(images: np.ndarray, token_ids: np.ndarray) -> DualEncoder:
    model = DualEncoder()
    model((images[:2], token_ids[:2]))
    return model


# --- (a) the value -----------------------------------------------------------------------------


def _numpy_clip_loss(image_features, text_features, logit_scale, label_smoothing=0.0):
    """open_clip's ClipLoss written out in float64, with a smoothed target as torch's."""
    image = image_features / np.linalg.norm(image_features, axis=-1, keepdims=True)
    text = text_features / np.linalg.norm(text_features, axis=-1, keepdims=True)
    logits_per_image = np.exp(logit_scale) * image @ text.T

    def cross_entropy(logits):
        shifted = logits - logits.max(axis=-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
        n = len(logits)
        target = (1 - label_smoothing) * np.eye(n) + label_smoothing / n
        return -(target * log_probs).sum(axis=-1).mean()

    return 0.5 * (cross_entropy(logits_per_image) + cross_entropy(logits_per_image.T))


_FEATURES = dict(batch=6, dim=5, logit_scale=2.3)


def _features():
    rng = np.random.default_rng(1)
    shape = (_FEATURES["batch"], _FEATURES["dim"])
    return rng.normal(size=shape).astype("float32"), rng.normal(size=shape).astype("float32")


def _ours(image_features, text_features, label_smoothing):
    """Loss and gradients (image features, text features, logit_scale) through our layer."""
    head = ContrastiveLogits()
    head.build(None)
    head.logit_scale.assign(_FEATURES["logit_scale"])
    image, text = tf.Variable(image_features), tf.Variable(text_features)
    with tf.GradientTape() as tape:
        loss = CLIPLoss(label_smoothing=label_smoothing)(None, head((image, text)))
    grads = tape.gradient(loss, [image, text, head.logit_scale])
    return float(loss), [g.numpy() for g in grads]


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_value_matches_numpy(label_smoothing):
    image_features, text_features = _features()
    expected = _numpy_clip_loss(
        image_features.astype("float64"),
        text_features.astype("float64"),
        _FEATURES["logit_scale"],
        label_smoothing,
    )
    ours, _ = _ours(image_features, text_features, label_smoothing)
    np.testing.assert_allclose(ours, expected, rtol=1e-6)


def test_accepted_forms_of_the_logits_agree():
    image_features, text_features = _features()
    head = ContrastiveLogits()
    logits_per_image, logits_per_text = head((image_features, text_features))
    loss = CLIPLoss()
    pair = float(loss(None, (logits_per_image, logits_per_text)))
    stacked = float(loss(None, keras.ops.stack([logits_per_image, logits_per_text])))
    alone = float(loss(None, logits_per_image))
    per_pair = CLIPLoss(reduction="none")(None, (logits_per_image, logits_per_text))
    assert per_pair.shape == (_FEATURES["batch"],)
    np.testing.assert_allclose([stacked, alone, float(keras.ops.mean(per_pair))], pair, rtol=1e-6)


_OPEN_CLIP = """
import json, sys
import numpy as np, torch, torch.nn.functional as F
from open_clip.loss import ClipLoss

features = np.load(sys.argv[1])
results = {}
for smoothing in (0.0, 0.1):
    image = torch.tensor(features["image"], dtype=torch.float64, requires_grad=True)
    text = torch.tensor(features["text"], dtype=torch.float64, requires_grad=True)
    scale = torch.tensor(float(features["logit_scale"]), dtype=torch.float64, requires_grad=True)
    image_n, text_n = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    if smoothing == 0.0:
        loss = ClipLoss()(image_n, text_n, scale.exp())
    else:  # open_clip's ClipLoss has no smoothing: torch's cross_entropy with the same logits
        logits = scale.exp() * image_n @ text_n.T
        labels = torch.arange(len(logits))
        loss = 0.5 * (F.cross_entropy(logits, labels, label_smoothing=smoothing)
                      + F.cross_entropy(logits.T, labels, label_smoothing=smoothing))
    loss.backward()
    results[str(smoothing)] = {"loss": loss.item(), "grads": [
        image.grad.tolist(), text.grad.tolist(), scale.grad.item()]}
print(json.dumps(results))
"""


def test_value_and_gradients_match_open_clip(tmp_path):
    image_features, text_features = _features()
    np.savez(
        tmp_path / "features.npz",
        image=image_features,
        text=text_features,
        logit_scale=_FEATURES["logit_scale"],
    )
    stdout = run_python(["-c", _OPEN_CLIP, str(tmp_path / "features.npz")])
    reference = json.loads(stdout.strip().splitlines()[-1])
    for smoothing in (0.0, 0.1):
        loss, grads = _ours(image_features, text_features, smoothing)
        expected = reference[str(smoothing)]
        np.testing.assert_allclose(loss, expected["loss"], rtol=1e-6)
        for ours, theirs in zip(grads, expected["grads"]):
            assert relative_error(ours, theirs) < 1e-5


# --- (b) MirroredStrategy over two logical CPUs == one device on the same global batch ---------

_MIRRORED = r"""
import json
import numpy as np
import tensorflow as tf

# Two logical CPU devices; only possible before TensorFlow initializes its devices.
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras
from tests.helpers import relative_error
from tests.test_clip_loss import make_data, make_model
from vit_zoo.layers import contrastive
from vit_zoo.losses import CLIPLoss

BATCH, STEPS, LR = 8, 4, 0.05
images, token_ids = make_data(BATCH * STEPS)
dataset = tf.data.Dataset.from_tensor_slices(((images, token_ids),)).batch(BATCH)
# 31 pairs: three full batches and a last one of 7, split 4 + 3 over the two replicas.
uneven = tf.data.Dataset.from_tensor_slices(((images[:31], token_ids[:31]),)).batch(BATCH)
initial = [w.numpy() for w in make_model(images, token_ids).weights]


def compiled_model(strategy):
    with strategy.scope():
        model = make_model(images, token_ids)
        model.set_weights(initial)
        # Plain SGD: an error in the gradient scale (e.g. num_replicas times too large) shows up
        # in the weights, where Adam would normalize it away.
        model.compile(optimizer=keras.optimizers.SGD(LR), loss=CLIPLoss())
    return model


def global_gradients(strategy, model, batch):
    # What fit does: per-replica gradients of model.compute_loss, summed over replicas.
    def replica_step(inputs):
        with tf.GradientTape() as tape:
            loss = model.compute_loss(x=inputs, y_pred=model(inputs, training=True))
        return [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_weights)]

    @tf.function
    def step(data):
        per_replica = strategy.run(replica_step, args=(data[0],))
        return [strategy.reduce("SUM", g, axis=None) for g in per_replica]

    data = next(iter(strategy.experimental_distribute_dataset(batch)))
    return [g.numpy() for g in step(data)]


def run(strategy):
    model = compiled_model(strategy)
    out = {"loss": [], "weights": [], "grads": []}
    for k in range(STEPS):  # one fit per step: each history value is that step's loss
        batch = dataset.skip(k).take(1)
        out["grads"].append(global_gradients(strategy, model, batch))
        out["loss"].append(model.fit(batch, verbose=0).history["loss"][0])
        out["weights"].append([w.numpy() for w in model.weights])
    model = compiled_model(strategy)
    out["epoch_loss"] = model.fit(uneven, epochs=2, verbose=0).history["loss"]
    out["epoch_weights"] = [w.numpy() for w in model.weights]
    return out


def local_only_loss(batch_images, batch_token_ids):
    # The loss each replica would see without the gather: its own half of the batch only.
    model = make_model(images, token_ids)
    model.set_weights(initial)
    halves = [slice(0, BATCH // 2), slice(BATCH // 2, BATCH)]
    return float(np.mean([
        CLIPLoss()(None, model((batch_images[h], batch_token_ids[h]))) for h in halves
    ]))


def max_error(ours, reference):
    return max(relative_error(a, b) for a, b in zip(ours, reference))


one = run(tf.distribute.get_strategy())
mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])  # one instance: collectives
two = run(mirrored)
contrastive.gather_across_replicas = lambda values: values  # the negative control
ungathered = run(mirrored)

report = {"replicas": mirrored.num_replicas_in_sync}
for name, other in (("mirrored", two), ("ungathered", ungathered)):
    report[name] = {
        "loss": other["loss"],
        "grads": [max_error(a, b) for a, b in zip(other["grads"], one["grads"])],
        "weights": [max_error(a, b) for a, b in zip(other["weights"], one["weights"])],
        "epoch_loss": other["epoch_loss"],
        "epoch_weights": max_error(other["epoch_weights"], one["epoch_weights"]),
    }
report["one"] = {"loss": one["loss"], "epoch_loss": one["epoch_loss"]}
report["local_only_first_loss"] = local_only_loss(images[:BATCH], token_ids[:BATCH])
report["logit_scale_moved"] = abs(float(one["weights"][0][-1] - initial[-1]))
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def mirrored_report():
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    stdout = run_python(["-c", _MIRRORED], env={"PYTHONPATH": path})
    return json.loads(stdout.strip().splitlines()[-1])


def test_mirrored_loss_per_step_equals_one_device(mirrored_report):
    assert mirrored_report["replicas"] == 2
    one, two = mirrored_report["one"], mirrored_report["mirrored"]
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
    # Epochs ending in an uneven batch (4 + 3 pairs over the replicas).
    np.testing.assert_allclose(two["epoch_loss"], one["epoch_loss"], rtol=1e-5)


def test_mirrored_gradients_and_weights_equal_one_device(mirrored_report):
    two = mirrored_report["mirrored"]
    # At the initial weights, and after each of the first three steps.
    assert max(two["grads"]) < 1e-5, two["grads"]
    # After each step, and after two epochs over 31 pairs.
    assert max(two["weights"]) < 1e-5, two["weights"]
    assert two["epoch_weights"] < 1e-5
    assert mirrored_report["logit_scale_moved"] > 1e-2  # its gradient is part of the comparison


def test_without_the_gather_the_loss_and_gradients_differ(mirrored_report):
    """The comparison above can fail: each replica on its own half gives another loss."""
    one, ungathered = mirrored_report["one"], mirrored_report["ungathered"]
    np.testing.assert_allclose(
        ungathered["loss"][0], mirrored_report["local_only_first_loss"], rtol=1e-5
    )
    assert abs(ungathered["loss"][0] / one["loss"][0] - 1) > 0.05
    assert ungathered["grads"][0] > 0.05
    assert ungathered["epoch_weights"] > 0.05


# --- (c) the logit-scale clamp -----------------------------------------------------------------


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_logit_scale_is_clamped_after_an_update(direction):
    """Nearly matched pairs push the scale up, anti-matched pairs down; an optimizer step that
    would move it 1 past a bound must stop at the bound of [0, log(100)]."""
    image_features, noise = _features()
    text_features = direction * image_features + 0.5 * noise
    head = ContrastiveLogits()
    head.build(None)
    start = math.log(100.0) - 0.5 if direction > 0 else 0.5
    head.logit_scale.assign(start)
    with tf.GradientTape() as tape:
        loss = CLIPLoss()(None, head((image_features, text_features)))
    (gradient,) = tape.gradient(loss, [head.logit_scale])
    assert float(gradient) * direction < 0  # the loss wants the scale moved toward the bound
    # A step of 1.5 in the direction the loss asks: 1 past the bound without the clamp.
    optimizer = keras.optimizers.SGD(learning_rate=1.5 / abs(float(gradient)))
    optimizer.apply_gradients([(gradient, head.logit_scale)])
    bound = math.log(100.0) if direction > 0 else 0.0
    assert float(head.logit_scale) == pytest.approx(bound, abs=1e-6)


# --- (d) serialization -------------------------------------------------------------------------


def test_loss_round_trips_through_keras_serialization():
    loss = CLIPLoss(label_smoothing=0.1, name="contrastive")
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, CLIPLoss)
    assert restored.get_config() == loss.get_config()
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert restored.get_config() == loss.get_config()
    image_features, text_features = _features()
    logits = ContrastiveLogits()((image_features, text_features))
    np.testing.assert_allclose(float(restored(None, logits)), float(loss(None, logits)))


def test_compiled_model_round_trips_and_evaluates_the_same(tmp_path):
    images, token_ids = make_data(16)
    dataset = tf.data.Dataset.from_tensor_slices(((images, token_ids),)).batch(8)
    model = make_model(images, token_ids)
    model.compile(optimizer="sgd", loss=CLIPLoss(label_smoothing=0.1))
    model.fit(dataset, verbose=0)
    model.save(tmp_path / "dual.keras")
    loaded = keras.saving.load_model(tmp_path / "dual.keras")
    assert isinstance(loaded.loss, CLIPLoss) and loaded.loss.label_smoothing == 0.1
    np.testing.assert_allclose(
        loaded.evaluate(dataset, verbose=0), model.evaluate(dataset, verbose=0), rtol=1e-6
    )


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError, match="reduction"):
        CLIPLoss(reduction="sum")
    with pytest.raises(ValueError, match="label_smoothing"):
        CLIPLoss(label_smoothing=1.0)
    with pytest.raises(ValueError, match="square"):
        CLIPLoss()(None, np.zeros((3, 4), "float32"))
    images, token_ids = make_data(4)
    model = make_model(images, token_ids)
    model.compile(optimizer="sgd", loss=CLIPLoss())
    weighted = tf.data.Dataset.from_tensors(((images, token_ids), np.zeros(4), np.ones(4)))
    with pytest.raises(ValueError, match="sample_weight"):
        model.fit(weighted, verbose=0)
