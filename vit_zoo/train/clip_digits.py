"""Contrastive training of a small CLIP on scikit-learn's digits with captions, offline.

Each digit image (8x8 scans shipped in scikit-learn, upscaled to RGB in [0, 255]) is paired with
a caption from training templates ("a photo of the number seven"); the captions are tokenized
inside the tf.data pipeline by the in-graph CLIPTokenizer, and `model.fit` minimizes CLIPLoss.
The test is zero-shot: the held-out digits are classified by prompts written with templates the
model never saw in training, so the score measures what the text tower learned about the
number words, not a memorized caption.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import keras
import numpy as np

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TRAIN_TEMPLATES = (
    "a photo of the number {}",
    "a handwritten {}",
    "the digit {}, written by hand",
    "a scan of a {}",
    "a small blurry {}",
    "{}",
)
# Unseen in training: zero-shot prompts.
TEST_TEMPLATES = ("a picture of the numeral {}.", "an image showing a {}.")


@dataclass
class ClipDigitsConfig:
    image_size: int = 16
    patch_size: int = 4
    width: int = 64
    depth: int = 2
    heads: int = 2
    embed_dim: int = 64
    context_length: int = 16
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0


def build_model(config: ClipDigitsConfig):
    """A CLIP with a tiny ViT image tower and a 2-block text tower over the full CLIP vocab."""
    from vit_zoo.models.clip import CLIP, CLIPArch
    from vit_zoo.models.vit import ViTArch

    image_arch = ViTArch(
        "digits", config.width, config.depth, config.heads, 2 * config.width, config.patch_size
    )
    arch = CLIPArch(
        "digits", image_arch, config.image_size, config.embed_dim, config.width, config.heads,
        config.depth,
    )
    return CLIP(arch, context_length=config.context_length, name="digits_clip")


def caption_dataset(images, labels, config: ClipDigitsConfig, tokenizer, shuffle: bool):
    """tf.data of {"images", "token_ids"}: a random training template per example and epoch,
    tokenized in the graph, batch by batch."""
    import tensorflow as tf

    prefixes, suffixes = zip(*(t.split("{}") for t in TRAIN_TEMPLATES))
    prefixes, suffixes = tf.constant(prefixes), tf.constant(suffixes)
    words = tf.constant(NUMBER_WORDS)

    def caption(index, example):
        image, label = example
        # Stateless, keyed by the example's position in the stream: the same captions on every
        # run, whatever order the parallel map finishes in.
        seed = tf.stack([tf.constant(config.seed, tf.int64), index])
        template = tf.random.stateless_uniform([], seed, 0, len(TRAIN_TEMPLATES), tf.int32)
        text = tf.strings.join([prefixes[template], words[label], suffixes[template]])
        return image, text

    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        # Repeated, so that fit keeps one iterator across epochs: a new iterator re-instantiates
        # the tokenizer's graph (about 2 s).
        dataset = dataset.shuffle(len(images), seed=config.seed).repeat()
    dataset = dataset.enumerate()
    return (
        dataset.map(caption, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(config.batch_size, drop_remainder=True)
        .map(
            lambda image, text: {"images": image, "token_ids": tokenizer.graph(text)},
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .prefetch(tf.data.AUTOTUNE)
    )


def run(config: ClipDigitsConfig, strategy=None) -> dict:
    """Train; returns zero-shot test accuracy with unseen templates, and timings."""
    import tensorflow as tf

    from vit_zoo.clip import zero_shot_classifier, zero_shot_predict
    from vit_zoo.losses import CLIPLoss
    from vit_zoo.text import CLIPTokenizer
    from vit_zoo.train.data import digit_arrays

    keras.utils.set_random_seed(config.seed)
    tf.random.set_seed(config.seed)
    (x_train, y_train), (x_test, y_test) = digit_arrays(config.image_size, 0.2, config.seed)
    tokenizer = CLIPTokenizer(context_length=config.context_length)
    train = caption_dataset(x_train, y_train, config, tokenizer, shuffle=True)
    strategy = strategy or tf.distribute.get_strategy()
    steps_per_epoch = len(x_train) // config.batch_size
    steps = config.epochs * steps_per_epoch
    with strategy.scope():
        model = build_model(config)
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, steps, warmup_target=config.learning_rate, warmup_steps=max(steps // 10, 1)
        )
        model.compile(
            optimizer=keras.optimizers.AdamW(schedule, weight_decay=config.weight_decay),
            loss=CLIPLoss(),
        )
    start = time.perf_counter()
    history = model.fit(
        train, epochs=config.epochs, steps_per_epoch=steps_per_epoch, shuffle=False, verbose=0
    )
    seconds = time.perf_counter() - start
    classifier = zero_shot_classifier(model, NUMBER_WORDS, TEST_TEMPLATES, tokenizer)
    predicted = zero_shot_predict(model, classifier, x_test).argmax(axis=1)
    return {
        "zero_shot_accuracy": float(np.mean(predicted == y_test)),
        "chance": 1.0 / len(NUMBER_WORDS),
        "final_loss": float(history.history["loss"][-1]),
        "first_loss": float(history.history["loss"][0]),
        "train_seconds": seconds,
        "model": model,
    }
