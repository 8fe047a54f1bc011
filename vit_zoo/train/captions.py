"""Image-caption sources and their batch streams, for contrastive (CLIP) training.

Sources give (record, text) pairs, `text` being a caption or, for labelled sources, a label that
becomes a caption through a template drawn per example:

- `digits_captions`: scikit-learn's digits, each paired with a training template about its
  number word ("a photo of the number seven"); offline. Its test split keeps the labels, so the
  test is zero-shot classification with templates the model never saw (TEST_TEMPLATES).
- `from_pairs`: a `.jsonl` file of {"image": path, "caption": text} lines, or a `.tsv` file of
  `path<TAB>caption` lines; relative paths are taken from the file's folder.
- `from_tfds`: a prepared TFDS captioning set (e.g. `coco_captions`: one of each image's captions
  drawn per example and epoch).

`caption_batches` turns a source into the stream `fit` consumes, ({"images", "token_ids"},)
batches, tokenized inside tf.data. Like the classification stream it is a pure function of
(seed, epoch, step), so an interrupted run resumes on exactly the batches it would have seen.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from vit_zoo.train import data as pipelines

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TRAIN_TEMPLATES = (
    "a photo of the number {}",
    "a handwritten {}",
    "the digit {}, written by hand",
    "a scan of a {}",
    "a small blurry {}",
    "{}",
)
#: Unseen in training: the zero-shot prompts of the digits' test.
TEST_TEMPLATES = ("a picture of the numeral {}.", "an image showing a {}.")
AUTOTUNE = tf.data.AUTOTUNE


@dataclass
class CaptionSource:
    """Unbatched (record, text) pairs and their count. `decode` turns a record into an RGB
    image (after shuffling, so the buffer holds file names); `caption(text, seed)` turns the
    stored text into the caption of one example (a template drawn for a label, one caption of
    several); `class_names` and `templates`, on labelled sources, define the zero-shot test."""

    dataset: tf.data.Dataset
    size: int
    decode: Callable | None = None
    caption: Callable | None = None
    class_names: list[str] | None = None
    templates: tuple[str, ...] = ()

    def labelled(self) -> bool:
        return self.class_names is not None


def _template_caption(words: list[str], templates: tuple[str, ...]) -> Callable:
    """label, seed -> a random template filled with the label's word."""
    prefixes, suffixes = zip(*(template.split("{}") for template in templates))
    prefixes, suffixes, words = tf.constant(prefixes), tf.constant(suffixes), tf.constant(words)

    def caption(label, seed):
        template = tf.random.stateless_uniform([], seed, 0, len(templates), tf.int32)
        return tf.strings.join([prefixes[template], words[label], suffixes[template]])

    return caption


def digits_captions(image_size: int = 16, test_fraction: float = 0.2,
                    seed: int = 0) -> tuple[CaptionSource, CaptionSource]:
    """The digits with template captions (train) and with labels for zero-shot (test)."""
    train, test = pipelines.digits(image_size, test_fraction, seed)
    caption = _template_caption(list(NUMBER_WORDS), TRAIN_TEMPLATES)
    common = {"class_names": list(NUMBER_WORDS), "templates": TEST_TEMPLATES}
    return (CaptionSource(train.dataset, train.size, caption=caption, **common),
            CaptionSource(test.dataset, test.size, caption=caption, **common))


def from_pairs(path: str | Path) -> CaptionSource:
    """Image-caption pairs listed in a .jsonl ({"image": ..., "caption": ...} per line) or a
    .tsv (image path, a tab, the caption) file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No pairs file at {path}: expected a .jsonl or .tsv file of "
                                "image paths and captions.")
    if path.suffix not in (".jsonl", ".tsv"):
        raise ValueError(f"{path}: a pairs file must be .jsonl ({{\"image\": ..., \"caption\": "
                         f"...}} per line) or .tsv (path<TAB>caption per line).")
    files, captions = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            if path.suffix == ".jsonl":
                entry = json.loads(line)
                image, text = entry["image"], entry["caption"]
            else:
                image, text = line.split("\t", 1)
        except (ValueError, KeyError, TypeError) as error:
            form = ('{"image": "<path>", "caption": "<text>"}' if path.suffix == ".jsonl"
                    else "<path><TAB><caption>")
            raise ValueError(f"{path}, line {number}: expected {form}, got {line[:80]!r} "
                             f"({error}).") from None
        image = Path(image) if Path(image).is_absolute() else path.parent / image
        if not image.is_file():
            raise FileNotFoundError(f"{path}, line {number}: no image at {image}.")
        files.append(str(image))
        captions.append(str(text))
    if not files:
        raise ValueError(f"{path} lists no image-caption pairs.")

    def read(file):
        return tf.io.decode_image(tf.io.read_file(file), channels=3, expand_animations=False)

    return CaptionSource(tf.data.Dataset.from_tensor_slices((files, captions)), len(files),
                         decode=read)


def from_tfds(name: str, split: str, data_dir: str | None = None,
              download: bool = False) -> CaptionSource:
    """A prepared TFDS captioning set with an "image" feature and captions under "captions"
    (a sequence of {"text"}, as coco_captions) or "caption"; one caption drawn per example and
    epoch. download=False reads only what is prepared under data_dir."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError("Reading a TFDS dataset needs tensorflow-datasets: "
                          'pip install "vit_zoo[tfds]"') from error
    builder = tfds.builder(name, data_dir=data_dir)
    if download:
        builder.download_and_prepare()
    elif not builder.is_prepared():
        raise FileNotFoundError(
            f"TFDS dataset {name!r} is not prepared under {builder.data_dir}; run with "
            "data.tfds_download: true on a machine with network, or point data.tfds_data_dir "
            "at a prepared copy.")
    features = builder.info.features
    if "image" not in features or not ({"captions", "caption"} & set(features.keys())):
        raise ValueError(f"TFDS dataset {name!r} has features {sorted(features.keys())}; a "
                         "captioning set needs 'image' and 'captions' (or 'caption').")
    dataset = builder.as_dataset(split=split, shuffle_files=False)
    if "captions" in features:
        dataset = dataset.map(lambda example: (example["image"], example["captions"]["text"]))

        def caption(texts, seed):
            pick = tf.random.stateless_uniform([], seed, 0, tf.shape(texts)[0], tf.int32)
            return texts[pick]
    else:
        dataset = dataset.map(lambda example: (example["image"], example["caption"]))
        caption = None
    return CaptionSource(dataset, builder.info.splits[split].num_examples, caption=caption)


def _prepared(source: CaptionSource, size: int, seed):
    """(index, (record, text)) -> (image float32 (size, size, 3), caption)."""
    decode = source.decode or (lambda image: image)

    def prepare(index, example):
        record, text = example
        example_seed = tf.stack([tf.cast(seed, tf.int64), tf.cast(index, tf.int64)])
        image = tf.image.resize(tf.cast(decode(record), tf.float32), (size, size), "bilinear")
        caption = text if source.caption is None else source.caption(text, example_seed)
        return image, caption

    return prepare


def caption_batches(source: CaptionSource, config: pipelines.PipelineConfig, tokenize: Callable,
                    epochs: int, start_step: int = 0) -> tf.data.Dataset:
    """The training stream from global step `start_step` to the end of epoch `epochs`:
    ({"images": float32 (B, S, S, 3) in [0, 255], "token_ids": int32 (B, context)},).
    `tokenize` maps a batch of strings to token ids in the graph (CLIPTokenizer.graph)."""
    if config.mixup_alpha > 0 or config.cutmix_alpha > 0:
        raise ValueError("MixUp and CutMix mix labels; contrastive training has none. Set "
                         "data.mixup_alpha and data.cutmix_alpha to 0.")
    augment = pipelines.augmentation(config)

    def epoch(seed: tf.Tensor) -> tf.data.Dataset:
        data = (source.dataset
                .shuffle(min(source.size, config.shuffle_buffer), seed=tf.cast(seed, tf.int64),
                         reshuffle_each_iteration=False)
                .enumerate()
                .map(_prepared(source, config.image_size, seed), num_parallel_calls=AUTOTUNE)
                .batch(config.batch_size, drop_remainder=True))
        if augment is not None:
            data = data.enumerate().map(lambda step, batch: augment(seed, step, batch))
        return data.map(lambda images, texts: ({"images": images, "token_ids": tokenize(texts)},),
                        num_parallel_calls=AUTOTUNE)

    steps = pipelines.steps_per_epoch(source, config)
    return pipelines.epoch_stream(epoch, config, steps, epochs, start_step)


def evaluation_batches(source: CaptionSource, config: pipelines.PipelineConfig,
                       tokenize: Callable) -> tf.data.Dataset:
    """Unaugmented test pairs in source order, ({"images", "token_ids"},) batches; a labelled
    source gets one training-template caption per image, drawn with data.seed."""
    data = (source.dataset.enumerate()
            .map(_prepared(source, config.image_size, config.seed), num_parallel_calls=AUTOTUNE)
            .batch(config.batch_size))
    return data.map(lambda images, texts: ({"images": images, "token_ids": tokenize(texts)},),
                    num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def retrieval_recall(image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> dict:
    """Recall@1 both ways for aligned pairs (row i of each is one pair): the share of images
    whose nearest text (by cosine) is their own caption, and of captions whose nearest image is
    their own."""
    images = image_embeddings / np.linalg.norm(image_embeddings, axis=-1, keepdims=True)
    texts = text_embeddings / np.linalg.norm(text_embeddings, axis=-1, keepdims=True)
    similarity = images @ texts.T
    own = np.arange(len(images))
    return {"image_to_text_recall_at_1": float(np.mean(similarity.argmax(axis=1) == own)),
            "text_to_image_recall_at_1": float(np.mean(similarity.argmax(axis=0) == own))}
