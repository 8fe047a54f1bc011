"""What the training job feeds and measures for each objective: the data sources named in the
config, the training and test streams, and the test figures.

- classification: (image, one-hot label) batches; test accuracy.
- masked_patches: the same images, labels unused; test masked-patch accuracy.
- contrastive: ({"images", "token_ids"},) batches of image-caption pairs; on a labelled test
  source (digits-captions) zero-shot accuracy with its unseen templates, on pairs recall@1 in
  both directions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from vit_zoo.train import captions
from vit_zoo.train import data as pipelines


@dataclass
class Task:
    """train_source / test_source: the data. training_batches(epochs, start_step) and
    evaluation_batches() make the streams; measure(model, evaluation) turns the model and
    Keras's evaluate() dict into the test figures ("test_accuracy" always among them)."""

    train_source: pipelines.Source | captions.CaptionSource
    test_source: pipelines.Source | captions.CaptionSource
    training_batches: Callable[[int, int], tf.data.Dataset]
    evaluation_batches: Callable[[], tf.data.Dataset]
    measure: Callable[[keras.Model, dict], dict]
    classes: int | None
    class_names: list[str] | None


def make(objective: str, data, seed: int, context_length: int) -> Task:
    """The task of `objective` on the sources of `data` (a runner DataConfig)."""
    if objective == "contrastive":
        return _contrastive(data, seed, context_length)
    train_source, test_source = _classification_sources(data, seed)

    def training_batches(epochs: int, step: int) -> tf.data.Dataset:
        return pipelines.training_batches(train_source, data, epochs, step)

    def evaluation_batches() -> tf.data.Dataset:
        return pipelines.evaluation_batches(test_source, data)

    def measure(model, evaluation: dict) -> dict:
        if objective == "masked_patches":  # under its own name too, to be plain
            accuracy = float(evaluation["masked_patch_accuracy"])
            return {"test_accuracy": accuracy, "test_masked_patch_accuracy": accuracy}
        return {"test_accuracy": float(evaluation["accuracy"])}

    return Task(train_source, test_source, training_batches, evaluation_batches, measure,
                train_source.num_classes, train_source.class_names)


def _classification_sources(config, seed: int):
    train_source, test_source = _train_and_test(
        config, seed, "digits", pipelines.digits, _labelled_source,
        "a folder or a TFDS split to evaluate on")
    if config.labels_per_class is not None:
        train_source = pipelines.few_per_class(train_source, config.labels_per_class,
                                               config.seed)
    return train_source, test_source


def _train_and_test(config, seed: int, built_in: str, make_built_in, open_source,
                    test_hint: str):
    """(train, test) sources: the built-in data set with its own test split, or the configured
    source and test source."""
    if config.source == built_in:
        if config.test_source not in (None, built_in):
            raise ValueError(f"The {built_in} source brings its own test split; leave "
                             f"test_source unset (or {built_in!r}).")
        return make_built_in(config.image_size, config.digits_test_fraction, seed)
    if config.test_source is None:
        raise ValueError(f"data.test_source is needed with source {config.source!r} "
                         f"({test_hint}).")
    return (open_source(config.source, config, "train"),
            open_source(config.test_source, config, "test"))


def _open_source(spec: str, config, default_split: str, read_file, read_tfds,
                 other_kinds: tuple[str, ...], other_objective: str, expected: str):
    """A data source from `<kind>:<rest>`: `read_file(rest)` for the file kind this objective
    reads (folder or pairs), `read_tfds(name, split, data_dir, download)` for `tfds:`. A kind of
    the other objective (`other_kinds`) is an error pointing at it."""
    kind, _, rest = spec.partition(":")
    if kind in ("folder", "pairs") and rest and kind not in other_kinds:
        return read_file(rest)
    if kind == "tfds" and rest:
        name, _, split = rest.partition(":")
        return read_tfds(name, split or default_split, config.tfds_data_dir,
                         config.tfds_download)
    if kind in other_kinds:
        raise ValueError(f"Data source {spec!r} {other_objective}")
    raise ValueError(f"Data source {spec!r} is not {expected}.")


def _labelled_source(spec: str, config, default_split: str) -> pipelines.Source:
    return _open_source(
        spec, config, default_split, pipelines.from_folder, pipelines.from_tfds,
        ("digits-captions", "pairs"),
        "holds captions: it goes with optimization.objective: contrastive.",
        "'digits', 'folder:<path>' or 'tfds:<name>[:<split>]'")


def _caption_source(spec: str, config, default_split: str) -> captions.CaptionSource:
    return _open_source(
        spec, config, default_split, captions.from_pairs, captions.from_tfds,
        ("digits", "folder"),
        "has labels, not captions: contrastive training reads 'digits-captions', "
        "'pairs:<file.jsonl|file.tsv>' or 'tfds:<name>[:<split>]' (a captioning set).",
        "'digits-captions', 'pairs:<file.jsonl|file.tsv>' or 'tfds:<name>[:<split>]'")


def _contrastive(config, seed: int, context_length: int) -> Task:
    from vit_zoo.text import CLIPTokenizer

    if config.labels_per_class is not None:
        raise ValueError("data.labels_per_class picks labelled examples; contrastive training "
                         "reads captions. Leave it unset.")
    train_source, test_source = _train_and_test(
        config, seed, "digits-captions", captions.digits_captions, _caption_source,
        "image-caption pairs to test retrieval on")
    tokenizer = CLIPTokenizer(context_length=context_length)

    def training_batches(epochs: int, step: int) -> tf.data.Dataset:
        return captions.caption_batches(train_source, config, tokenizer.graph, epochs, step)

    def evaluation_batches() -> tf.data.Dataset:
        return captions.evaluation_batches(test_source, config, tokenizer.graph)

    def measure(model, evaluation: dict) -> dict:
        if test_source.labelled():  # captions repeat across images: classify, not retrieve
            accuracy = _zero_shot_accuracy(model, test_source, config.image_size, tokenizer)
            return {"test_accuracy": accuracy, "test_zero_shot_accuracy": accuracy}
        images, texts = [], []
        for (batch,) in captions.evaluation_batches(test_source, config, tokenizer.graph):
            images.append(keras.ops.convert_to_numpy(model.encode_image(batch["images"])))
            texts.append(keras.ops.convert_to_numpy(model.encode_text(batch["token_ids"])))
        recall = captions.retrieval_recall(np.concatenate(images), np.concatenate(texts))
        figures = {f"test_{name}": value for name, value in recall.items()}
        return {"test_accuracy": figures["test_image_to_text_recall_at_1"], **figures}

    names = train_source.class_names
    return Task(train_source, test_source, training_batches, evaluation_batches, measure,
                None, names)


def _zero_shot_accuracy(model, source: captions.CaptionSource, size: int, tokenizer) -> float:
    """Zero-shot classification of the test images by prompts from the source's templates."""
    from vit_zoo.zero_shot import zero_shot_classifier, zero_shot_predict

    images, labels = [], []
    for image, label in source.dataset.as_numpy_iterator():
        images.append(image)
        labels.append(label)
    images = tf.image.resize(np.stack(images).astype("float32"), (size, size)).numpy()
    classifier = zero_shot_classifier(model, source.class_names, source.templates, tokenizer)
    predicted = zero_shot_predict(model, classifier, images).argmax(axis=1)
    return float(np.mean(predicted == np.asarray(labels)))
