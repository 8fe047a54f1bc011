"""vit_zoo.train in one process: optimizer rules against a NumPy AdamW, schedules against
Keras's own, the resumable data stream, DeiT distillation against a NumPy loss, configs."""

from __future__ import annotations

import sys

import keras
import numpy as np
import pytest

from vit_zoo.models.vit import ViT, ViTArch
from vit_zoo.train import data, runner
from vit_zoo.train.distillation import Distiller
from vit_zoo.train.optimizers import (
    WarmupDecay,
    build_optimizer,
    layer_decay_per_variable,
    weight_decay_per_variable,
)
from vit_zoo.train.runner import TrainConfig

TINY = ViTArch("tiny", 16, 3, 2, 32, 4)


def _tiny(classes=5, **kwargs) -> keras.Model:
    keras.utils.set_random_seed(0)
    return ViT(TINY, input_shape=(8, 8, 3), classes=classes, classifier_activation=None,
               **kwargs)


def test_weight_decay_skips_norms_biases_and_embeddings_and_the_head_has_its_own():
    model = _tiny(distillation_token=True)
    decays = weight_decay_per_variable(model, 0.05, head_weight_decay=0.3)
    assert set(decays) == {v.path for v in model.trainable_variables}
    decayed = {path for path, decay in decays.items() if decay}
    assert decayed == {"patch_embed/kernel", "head/kernel", "head_dist/kernel"} | {
        f"block_{i}/{name}/kernel" for i in range(3)
        for name in ("attn/qkv", "attn/proj", "mlp/fc1", "mlp/fc2")}
    assert decays["head/kernel"] == decays["head_dist/kernel"] == 0.3
    assert decays["block_1/mlp/fc1/kernel"] == 0.05


def test_layer_decay_follows_beit():
    multipliers = layer_decay_per_variable(_tiny(), 0.5)  # 3 blocks: ids 0..4
    assert multipliers["pos_embed/embedding"] == multipliers["patch_embed/kernel"] == 0.5**4
    assert multipliers["block_0/attn/qkv/kernel"] == 0.5**3
    assert multipliers["block_2/norm2/gamma"] == 0.5
    assert multipliers["norm/gamma"] == multipliers["head/kernel"] == 1.0
    with pytest.raises(ValueError, match="no"):
        layer_decay_per_variable(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]), .5)


def _numpy_adamw_step(value, gradient, lr, decay, step, beta_1=0.9, beta_2=0.999, eps=1e-7):
    """One AdamW step from zero moments: decoupled decay, then Adam with the bias correction
    folded into the step size and epsilon added to sqrt(v) (Keras's documented form)."""
    value = value - lr * decay * value
    m = (1 - beta_1) * gradient
    v = (1 - beta_2) * gradient**2
    alpha = lr * np.sqrt(1 - beta_2**step) / (1 - beta_1**step)
    return value - alpha * m / (np.sqrt(v) + eps)


@pytest.mark.parametrize("name, clip_norm", [("adamw", None), ("sgd", None), ("sgd", 2.0)])
def test_one_update_matches_numpy(name, clip_norm):
    model = _tiny()
    before = {v.path: v.numpy().copy() for v in model.trainable_variables}
    optimizer = build_optimizer(model, name, 0.01, weight_decay=0.1, head_weight_decay=1.0,
                                layer_decay=0.5, momentum=0.9, clip_norm=clip_norm)
    rng = np.random.default_rng(1)
    gradients = [rng.normal(size=v.shape).astype("float32") for v in model.trainable_variables]
    norm = np.sqrt(sum(float((g.astype("float64") ** 2).sum()) for g in gradients))
    scale = min(1.0, clip_norm / norm) if clip_norm else 1.0
    assert scale < 0.1 or not clip_norm  # the clipping case really clips
    optimizer.apply_gradients(zip(gradients, model.trainable_variables))
    decays = weight_decay_per_variable(model, 0.1, 1.0)
    multipliers = layer_decay_per_variable(model, 0.5)
    for variable, gradient in zip(model.trainable_variables, gradients):
        lr, decay = 0.01 * multipliers[variable.path], decays[variable.path]
        if name == "adamw":
            expected = _numpy_adamw_step(before[variable.path], gradient, lr, decay, step=1)
        else:  # first momentum step: velocity = -lr * g
            expected = before[variable.path] * (1 - lr * decay) - lr * gradient * scale
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-5, atol=1e-7,
                                   err_msg=variable.path)


def test_accumulating_two_half_batches_equals_one_full_batch():
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (64, 8, 8, 3)).astype("float32")
    labels = np.eye(5, dtype="float32")[rng.integers(0, 5, 64)]
    weights = []
    for batch_size, accumulation in ((32, 1), (16, 2)):
        model = _tiny()
        model.compile(build_optimizer(model, "adamw", 1e-2, 0.05, clip_norm=0.5,
                                      accumulation_steps=accumulation),
                      keras.losses.CategoricalCrossentropy(from_logits=True), jit_compile=False)
        model.fit(images, labels, batch_size=batch_size, shuffle=False, epochs=1, verbose=0)
        weights.append([v.numpy() for v in model.trainable_variables])
    assert not np.allclose(weights[0][-2], 0)  # the head moved
    for full, accumulated in zip(*weights):
        np.testing.assert_allclose(accumulated, full, rtol=1e-4, atol=1e-4)


def test_optimizer_round_trips_through_a_keras_file(tmp_path):
    model = _tiny()
    model.compile(build_optimizer(model, "adamw", WarmupDecay(1e-3, 100, 10, "linear"),
                                  head_weight_decay=0.5, layer_decay=0.7), "mse",
                  jit_compile=False)
    model.fit(np.zeros((4, 8, 8, 3)), np.zeros((4, 5)), verbose=0)
    model.save(tmp_path / "m.keras")
    restored = keras.saving.load_model(tmp_path / "m.keras")
    assert restored.optimizer.weight_decays == model.optimizer.weight_decays
    assert restored.optimizer.lr_multipliers == model.optimizer.lr_multipliers
    assert float(restored.optimizer.learning_rate) == pytest.approx(
        float(model.optimizer.learning_rate))


def test_warmup_cosine_equals_keras_cosine_decay_and_linear_is_linear():
    ours = WarmupDecay(0.1, total_steps=100, warmup_steps=10, decay="cosine")
    keras_own = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=90, warmup_target=0.1, warmup_steps=10)
    steps = np.arange(0, 120)
    np.testing.assert_allclose([float(ours(s)) for s in steps],
                               [float(keras_own(s)) for s in steps], atol=1e-7)
    linear = WarmupDecay(0.1, total_steps=100, warmup_steps=10, decay="linear", end=0.01)
    assert float(linear(5)) == pytest.approx(0.05)
    assert float(linear(55)) == pytest.approx(0.01 + 0.09 * 0.5)
    assert float(linear(150)) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="warmup_steps"):
        WarmupDecay(0.1, total_steps=10, warmup_steps=10)


def _batches(dataset):
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_the_stream_from_any_step_is_the_tail_of_the_whole_stream():
    """What exact mid-epoch resumption rests on: augmentation, MixUp/CutMix and order depend on
    (seed, epoch, step) only."""
    train, _ = data.digits(12, 0.2, 0)
    config = data.PipelineConfig(image_size=12, batch_size=256, crop="inception",
                                 augment=["translate", "rotate", "random_erasing"],
                                 mixup_alpha=0.4, cutmix_alpha=1.0, seed=3)
    steps = data.steps_per_epoch(train, config)
    stream = data.training_batches(train, config, epochs=2)
    whole = _batches(stream)
    assert len(whole) == 2 * steps
    again = _batches(stream)  # a second pass (Keras peeks at a batch before fit) is the same
    for (x, y), (x_ref, y_ref) in zip(again, whole):
        np.testing.assert_array_equal(x, x_ref)
        np.testing.assert_array_equal(y, y_ref)
    tail = _batches(data.training_batches(train, config, epochs=2, start_step=steps + 2))
    assert len(tail) == steps - 2
    for (x, y), (x_ref, y_ref) in zip(tail, whole[steps + 2:]):
        np.testing.assert_array_equal(x, x_ref)
        np.testing.assert_array_equal(y, y_ref)
    # Epochs differ from each other, labels stay distributions, images stay in [0, 255].
    assert not np.array_equal(whole[0][0], whole[steps][0])
    np.testing.assert_allclose(whole[0][1].sum(axis=1), 1.0, rtol=1e-5)
    assert whole[0][0].min() >= 0 and whole[0][0].max() <= 255.001


def test_the_stream_is_float32_and_unchanged_under_a_mixed_precision_policy(tmp_path):
    """The job sets the model's dtype policy before it builds the stream: the augmentation and
    MixUp layers must not follow it (bfloat16 images lose their ink levels; MixUp failed)."""
    train, _ = data.digits(8, 0.2, 0)
    config = data.PipelineConfig(image_size=8, batch_size=128, augment=["translate", "rotate"],
                                 mixup_alpha=0.2, cutmix_alpha=1.0, seed=1)
    reference = _batches(data.training_batches(train, config, epochs=1))
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        under_mixed = _batches(data.training_batches(train, config, epochs=1))
    finally:
        keras.config.set_dtype_policy(previous)
    for (x, y), (x_ref, y_ref) in zip(under_mixed, reference, strict=True):
        assert x.dtype == np.float32 and y.dtype == np.float32
        np.testing.assert_array_equal(x, x_ref)
        np.testing.assert_array_equal(y, y_ref)
    # And the whole job trains in mixed precision with that stream.
    job = TrainConfig.from_dict({
        "model": {"variant": "custom", "image_size": 8, "patch_size": 4, "hidden_dim": 16,
                  "depth": 1, "num_heads": 2, "mlp_dim": 32},
        "data": {"batch_size": 128, "augment": ["translate"], "mixup_alpha": 0.2},
        "optimization": {"epochs": 1, "warmup_epochs": 0.5},
        "run": {"precision": "mixed", "output": str(tmp_path / "run"), "verbose": 0}})
    metrics = runner.train(job)
    assert np.isfinite(metrics["test_loss"]) and metrics["steps_run_now"] == 11


def test_folder_source_and_clear_errors(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / name).mkdir()
        for index in range(3):
            keras.utils.save_img(tmp_path / name / f"{index}.png",
                                 rng.uniform(0, 255, (10, 14, 3)).astype("uint8"))
    source = data.from_folder(tmp_path)
    assert source.class_names == ["cat", "dog"] and source.size == 6
    config = data.PipelineConfig(image_size=8, batch_size=2, eval_crop_fraction=0.875)
    images, labels = next(iter(data.evaluation_batches(source, config)))
    assert images.shape == (2, 8, 8, 3) and labels.shape == (2, 2)
    with pytest.raises(FileNotFoundError, match="class name"):
        data.from_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="Unknown augmentation"):
        data.training_batches(source, data.PipelineConfig(image_size=8, batch_size=2,
                                                          augment=["solarize"]), 1)
    with pytest.raises(ValueError, match="larger than"):
        data.steps_per_epoch(source, data.PipelineConfig(batch_size=64))


def _numpy_log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_distillation_loss_matches_numpy(kind):
    student = _tiny(distillation_token=True)
    rng = np.random.default_rng(0)
    for variable in student.trainable_variables:  # heads start at zero: give them values
        variable.assign(rng.normal(0, 0.2, variable.shape).astype("float32"))
    teacher = _tiny(classes=5)
    for variable in teacher.trainable_variables:
        variable.assign(rng.normal(0, 0.2, variable.shape).astype("float32"))
    distiller = Distiller(student, teacher, kind, alpha=0.3, temperature=2.0,
                          label_smoothing=0.1)
    images = rng.uniform(0, 255, (6, 8, 8, 3)).astype("float32")
    labels = np.eye(5, dtype="float32")[[0, 1, 2, 3, 4, 0]]
    outputs = distiller(images)
    loss = float(distiller.compute_loss(images, labels, outputs))

    class_logits = keras.ops.convert_to_numpy(outputs["class"]).astype("float64")
    dist_logits = keras.ops.convert_to_numpy(outputs["distillation"]).astype("float64")
    teacher_logits = keras.ops.convert_to_numpy(teacher(images)).astype("float64")
    smoothed = labels * 0.9 + 0.1 / 5
    label_term = -(smoothed * _numpy_log_softmax(class_logits)).sum(-1).mean()
    if kind == "hard":
        target = np.eye(5)[teacher_logits.argmax(-1)]
        distill_term = -(target * _numpy_log_softmax(dist_logits)).sum(-1).mean()
    else:
        p = np.exp(_numpy_log_softmax(teacher_logits / 2.0))
        log_q = _numpy_log_softmax(dist_logits / 2.0)
        distill_term = (p * (np.log(p) - log_q)).sum(-1).mean() * 4.0
    assert loss == pytest.approx(0.7 * label_term + 0.3 * distill_term, rel=1e-5)
    # The student alone predicts DeiT's test-time output: the mean of the two heads.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(student(images)),
                               (class_logits + dist_logits) / 2, rtol=1e-5, atol=1e-6)


def test_distiller_fits_and_the_student_saves(tmp_path):
    student, teacher = _tiny(distillation_token=True), _tiny()
    distiller = Distiller(student, teacher, "hard")
    distiller.compile(build_optimizer(student, "adamw", 1e-3), metrics=["accuracy"],
                      jit_compile=False)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (16, 8, 8, 3)).astype("float32")
    labels = np.eye(5, dtype="float32")[rng.integers(0, 5, 16)]
    teacher_before = [v.numpy().copy() for v in teacher.weights]
    history = distiller.fit(images, labels, batch_size=8, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all() and "accuracy" in history.history
    for before, after in zip(teacher_before, teacher.weights):
        np.testing.assert_array_equal(before, after.numpy())  # the teacher is frozen
    student.save(tmp_path / "deit.keras")
    restored = keras.saving.load_model(tmp_path / "deit.keras")
    np.testing.assert_allclose(restored.predict(images, verbose=0),
                               student.predict(images, verbose=0), atol=1e-6)
    with pytest.raises(ValueError, match="distillation_token=True"):
        Distiller(_tiny(), teacher)


def test_config_from_yaml_with_overrides_and_clear_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {variant: S/16, image_size: 384}\n"
                    "optimization: {optimizer: sgd, learning_rate: 0.03}\n")
    config = TrainConfig.from_yaml(path, ["optimization.layer_decay=0.75",
                                          "data.augment=[randaugment, flip]"])
    assert (config.model.variant, config.model.image_size) == ("S/16", 384)
    assert config.optimization.optimizer == "sgd" and config.optimization.layer_decay == 0.75
    assert config.data.augment == ["randaugment", "flip"]
    with pytest.raises(ValueError, match="Unknown key"):
        TrainConfig.from_dict({"model": {"heads": 3}})
    with pytest.raises(ValueError, match="Unknown section"):
        TrainConfig.from_dict({"schedule": {}})
    with pytest.raises(ValueError, match="section.key=value"):
        TrainConfig.from_yaml(None, ["epochs=3"])


def test_tfds_without_the_package_or_the_data_is_a_clear_error(monkeypatch, tmp_path):
    # The source read for real: tests/test_tfds.py.
    with pytest.raises(FileNotFoundError, match="not prepared"):
        data.from_tfds("mnist", "train", data_dir=str(tmp_path))
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)  # as if not installed
    with pytest.raises(ImportError, match=r'pip install "vit_zoo\[tfds\]"'):
        data.from_tfds("mnist", "train")
