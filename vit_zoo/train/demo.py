"""`vit-zoo demo`: fine-tune a small ViT on scikit-learn's handwritten digits, offline.

The digits (1,797 real 8x8 scans shipped inside scikit-learn) are upscaled to 16x16 RGB in
[0, 255], the input convention of every vit_zoo model, and a small ViT (width 128, 4 blocks,
4 px patches: 16 tokens plus the class token) is trained from scratch with `model.fit`.
Prints the test accuracy and saves the model as .keras.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np


@dataclass
class DemoConfig:
    hidden_dim: int = 128
    depth: int = 4
    num_heads: int = 4
    mlp_dim: int = 256
    patch_size: int = 4
    image_size: int = 16
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    test_fraction: float = 0.2
    seed: int = 0
    output: str = "runs/demo"


def digits_dataset(image_size: int, test_fraction: float, seed: int):
    """(x_train, y_train), (x_test, y_test): RGB uint8-range float32 images, int labels."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = digits.images.astype("float32") * (255.0 / 16.0)  # 0..16 ink levels -> 0..255
    images = keras.ops.image.resize(images[..., None], (image_size, image_size), "bilinear")
    images = np.repeat(keras.ops.convert_to_numpy(images), 3, axis=-1)
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    return (x_train, y_train), (x_test, y_test)


def build_model(config: DemoConfig) -> keras.Model:
    from vit_zoo.models.vit import ViT, ViTArch

    arch = ViTArch("demo", config.hidden_dim, config.depth, config.num_heads, config.mlp_dim,
                   config.patch_size)
    return ViT(
        arch,
        input_shape=(config.image_size, config.image_size, 3),
        classes=10,
        classifier_activation=None,
        name="digits_vit",
    )


def run(config: DemoConfig) -> dict:
    """Train, evaluate, save; returns the metrics that are also written next to the model."""
    keras.utils.set_random_seed(config.seed)
    (x_train, y_train), (x_test, y_test) = digits_dataset(
        config.image_size, config.test_fraction, config.seed
    )
    model = build_model(config)
    steps = config.epochs * int(np.ceil(len(x_train) / config.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, steps, warmup_target=config.learning_rate, warmup_steps=max(steps // 10, 1)
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay),
        loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=config.label_smoothing
        ),
        metrics=["accuracy"],
        jit_compile=True,
    )
    augment = keras.Sequential(
        [keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant"),
         keras.layers.RandomRotation(0.05, fill_mode="constant")],
        name="augment",
    )
    train = (
        _dataset(x_train, y_train, config.batch_size, shuffle=True, seed=config.seed)
        .map(lambda x, y: (augment(x, training=True), y))
    )
    started = time.perf_counter()
    model.fit(train, epochs=config.epochs, verbose=2)
    seconds = time.perf_counter() - started
    _, accuracy = model.evaluate(
        _dataset(x_test, y_test, config.batch_size, shuffle=False, seed=config.seed), verbose=0
    )
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    model.save(output / "model.keras")
    metrics = {"test_accuracy": float(accuracy), "train_seconds": seconds, "config": asdict(config)}
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def _dataset(images, labels, batch_size: int, shuffle: bool, seed: int):
    import tensorflow as tf

    one_hot = keras.utils.to_categorical(labels, 10)
    data = tf.data.Dataset.from_tensor_slices((images, one_hot))
    if shuffle:
        data = data.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)
