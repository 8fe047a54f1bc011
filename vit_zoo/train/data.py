"""tf.data input pipelines for classification training and evaluation.

Sources give (image, integer label) pairs: arrays (`from_arrays`), an image folder with one
sub-folder per class (`from_folder`), a TensorFlow Datasets name (`from_tfds`), or the embedded
default, scikit-learn's handwritten digits (`digits`), which needs no network.

`training_batches` turns a source into the batch stream `model.fit` consumes. The stream is a
pure function of (seed, epoch, step): every epoch reshuffles with its own seed and its augmentation
layers are seeded from it, and the stream can start at any step. That is what lets an interrupted
run resume mid-epoch on exactly the batches it would have seen (vit_zoo.train.backup).
Images stay RGB in [0, 255], the input convention of every vit_zoo model.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from vit_zoo.transforms import EvalTransform, apply_eval_transform

AUTOTUNE = tf.data.AUTOTUNE
AUGMENTATIONS = ("flip", "translate", "rotate", "randaugment", "random_erasing")


@dataclass
class PipelineConfig:
    """How images become batches.

    image_size: model input side. crop: "resize" (whole image, resized) or "inception"
    (random area 8-100%, aspect 3/4-4/3, as ViT's ImageNet training) for training; evaluation
    resizes to image_size / eval_crop_fraction and takes the center crop.
    augment: names from AUGMENTATIONS, applied in order on the batch with Keras's layers.
    mixup_alpha / cutmix_alpha: > 0 turns MixUp / CutMix on (labels become mixed one-hots;
    with both, each batch gets one of the two).
    """

    image_size: int = 224
    batch_size: int = 64
    crop: str = "resize"
    eval_crop_fraction: float = 0.875
    augment: list[str] = field(default_factory=list)
    randaugment_layers: int = 2
    randaugment_magnitude: float = 0.5
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    shuffle_buffer: int = 10_000
    seed: int = 0


@dataclass
class Source:
    """Unbatched (record, label) pairs, their count and the class names. `decode` turns a
    record into an RGB image; it runs after shuffling, so the shuffle buffer holds file names,
    not decoded images."""

    dataset: tf.data.Dataset
    size: int
    class_names: list[str]
    decode: Callable | None = None

    def images(self) -> tf.data.Dataset:
        """(image, label) pairs in source order."""
        if self.decode is None:
            return self.dataset
        return self.dataset.map(lambda record, label: (self.decode(record), label),
                                num_parallel_calls=AUTOTUNE)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def from_arrays(images, labels, class_names: list[str] | None = None) -> Source:
    """Images (N, H, W, 3) RGB in [0, 255] (uint8 or float) and integer labels (N,)."""
    images, labels = np.asarray(images), np.asarray(labels)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be (N, height, width, 3) RGB, got shape {images.shape}.")
    if labels.shape != (len(images),):
        raise ValueError(f"labels must be ({len(images)},) integers, got shape {labels.shape}.")
    names = class_names or [str(i) for i in range(int(labels.max()) + 1)]
    dataset = tf.data.Dataset.from_tensor_slices((images, labels.astype("int32")))
    return Source(dataset, len(images), list(names))


def from_folder(directory: str | os.PathLike) -> Source:
    """An image folder: `directory/<class name>/<image files>` (jpeg, png, bmp, gif)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"No image folder at {directory}: expected "
                                "<folder>/<class name>/<image files>.")
    class_names = sorted(p.name for p in directory.iterdir() if p.is_dir())
    files, labels = [], []
    for label, name in enumerate(class_names):
        for path in sorted((directory / name).iterdir()):
            if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp", ".gif"):
                files.append(str(path))
                labels.append(label)
    if not files:
        raise ValueError(f"{directory} has no images in class sub-folders "
                         "(<folder>/<class name>/<image files>).")

    def read(path):
        return tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)

    dataset = tf.data.Dataset.from_tensor_slices((files, np.array(labels, "int32")))
    return Source(dataset, len(files), class_names, decode=read)


def from_tfds(name: str, split: str, data_dir: str | None = None, download: bool = False) -> Source:
    """A TensorFlow Datasets image classification set: a catalog name ("mnist", "oxford_flowers102")
    or a dataset you prepared yourself with your own builder (`MyBuilder(data_dir=d)
    .download_and_prepare()`), read from its files in `data_dir` without its code. `split` is
    any TFDS split string ("train", "test", "train[:90%]").

    The image is the supervised input (`supervised_keys`) or else the one Image feature, the
    label the one ClassLabel feature. Images stay encoded until after shuffling (like
    `from_folder`'s file names) and are decoded to RGB: grayscale sets such as MNIST get three
    equal channels, an alpha channel is dropped.

    download=False reads only what is already prepared under data_dir (TFDS's default
    ~/tensorflow_datasets); nothing is fetched unless you ask.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise ImportError('Reading a TFDS dataset needs tensorflow-datasets: '
                          'pip install "vit_zoo[tfds]"') from error
    where = data_dir or "~/tensorflow_datasets"
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except tfds.core.registered.DatasetNotFoundError as error:
        raise FileNotFoundError(
            f"TFDS dataset {name!r} is neither in TFDS's catalog nor prepared under {where} "
            f"(expected {where}/{name}/<version>/dataset_info.json).") from error
    if download:
        builder.download_and_prepare()
    elif not builder.is_prepared():
        raise FileNotFoundError(
            f"TFDS dataset {name!r} is not prepared under {builder.data_dir}; run with "
            "download=True (data.tfds_download: true) on a machine with network, or point "
            "data_dir (data.tfds_data_dir) at a prepared copy.")
    image_key, label_key = _tfds_image_and_label(builder.info, name)
    dataset = builder.as_dataset(split=split, shuffle_files=False,
                                 decoders={image_key: tfds.decode.SkipDecoding()})
    dataset = dataset.map(lambda example: (example[image_key],
                                           tf.cast(example[label_key], tf.int32)))

    def read(encoded):
        return tf.io.decode_image(encoded, channels=3, expand_animations=False)

    return Source(dataset, builder.info.splits[split].num_examples,
                  list(builder.info.features[label_key].names), decode=read)


def _tfds_image_and_label(info, name: str) -> tuple[str, str]:
    """Feature keys of a TFDS set's image and class label."""
    import tensorflow_datasets as tfds

    features = info.features
    supervised = info.supervised_keys
    if (isinstance(supervised, tuple) and len(supervised) == 2
            and all(isinstance(key, str) for key in supervised)):
        candidates = [supervised]
    else:
        images = [key for key, feature in features.items()
                  if isinstance(feature, tfds.features.Image)]
        labels = [key for key, feature in features.items()
                  if isinstance(feature, tfds.features.ClassLabel)]
        candidates = [(images[0], labels[0])] if len(images) == len(labels) == 1 else []
    for image_key, label_key in candidates:
        image, label = features[image_key], features[label_key]
        if (isinstance(image, tfds.features.Image) and image.tf_dtype == tf.uint8
                and isinstance(label, tfds.features.ClassLabel)):
            return image_key, label_key
    raise ValueError(
        f"TFDS dataset {name!r} is not an image classification set: vit_zoo needs one uint8 "
        "Image feature and one ClassLabel feature (or supervised_keys naming them); its "
        f"features are {dict(features.items())}.")


def few_per_class(source: Source, per_class: int, seed: int = 0) -> Source:
    """`per_class` examples of every class (all of a class that has fewer), drawn with `seed`,
    in source order: the few-label training sets of semi-supervised and transfer experiments.
    Reads every record once (images are not decoded)."""
    if per_class < 1:
        raise ValueError(f"labels_per_class must be at least 1, got {per_class}.")
    labels = np.array(list(source.dataset.map(lambda record, label: label)
                           .as_numpy_iterator()), dtype="int64")
    rng = np.random.default_rng(seed)
    keep = np.zeros(len(labels), bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        keep[rng.choice(members, min(per_class, len(members)), replace=False)] = True
    chosen = tf.constant(keep)
    dataset = (source.dataset.enumerate()
               .filter(lambda index, example: chosen[index])
               .map(lambda index, example: example))
    return Source(dataset, int(keep.sum()), source.class_names, source.decode)


def digit_arrays(image_size: int = 32, test_fraction: float = 0.2, seed: int = 0):
    """scikit-learn's 1,797 handwritten digits (8x8, 17 ink levels), upscaled bilinearly to
    image_size, RGB float32 in [0, 255]: ((x_train, y_train), (x_test, y_test)), a stratified
    split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = data.images.astype("float32")[..., None] * (255.0 / 16.0)
    images = tf.image.resize(images, (image_size, image_size), "bilinear").numpy()
    images = np.repeat(images, 3, axis=-1)
    x_train, x_test, y_train, y_test = train_test_split(
        images, data.target, test_size=test_fraction, random_state=seed, stratify=data.target)
    return (x_train, y_train), (x_test, y_test)


def digits(image_size: int = 32, test_fraction: float = 0.2,
           seed: int = 0) -> tuple[Source, Source]:
    """The digits (see digit_arrays) as (train, test) sources."""
    (x_train, y_train), (x_test, y_test) = digit_arrays(image_size, test_fraction, seed)
    names = [str(i) for i in range(10)]
    return from_arrays(x_train, y_train, names), from_arrays(x_test, y_test, names)


def steps_per_epoch(source: Source, config: PipelineConfig) -> int:
    """Full batches per epoch (the last partial batch is dropped: every step has the global
    batch, which keeps replicas in step and the loss scale fixed)."""
    steps = source.size // config.batch_size
    if steps == 0:
        raise ValueError(f"batch_size {config.batch_size} is larger than the {source.size} "
                         "training examples.")
    return steps


def training_batches(source: Source, config: PipelineConfig, epochs: int,
                     start_step: int = 0) -> tf.data.Dataset:
    """The training stream from global step `start_step` to the end of epoch `epochs`:
    (images float32 (B, S, S, 3) in [0, 255], one-hot (or mixed) labels (B, classes))."""
    crop = _inception_crop if config.crop == "inception" else _resize
    if config.crop not in ("resize", "inception"):
        raise ValueError(f"crop must be 'resize' or 'inception', got {config.crop!r}.")
    size, num_classes = config.image_size, source.num_classes
    decode = source.decode or (lambda image: image)
    augment = augmentation(config)

    def epoch(seed: tf.Tensor) -> tf.data.Dataset:
        def prepare(index, example):
            record, label = example
            example_seed = tf.stack([seed, tf.cast(index, tf.int32)])
            image = crop(tf.cast(decode(record), tf.float32), size, example_seed)
            return image, tf.one_hot(label, num_classes)

        data = (source.dataset
                .shuffle(min(source.size, config.shuffle_buffer), seed=tf.cast(seed, tf.int64),
                         reshuffle_each_iteration=False)
                .enumerate()
                .map(prepare, num_parallel_calls=AUTOTUNE)  # stateless: order-independent
                .batch(config.batch_size, drop_remainder=True))
        if augment is None:
            return data
        # One batch at a time: the layers reseed per batch.
        return data.enumerate().map(lambda step, batch: augment(seed, step, batch))

    return epoch_stream(epoch, config, steps_per_epoch(source, config), epochs, start_step)


def epoch_stream(epoch: Callable[[tf.Tensor], tf.data.Dataset], config: PipelineConfig,
                 steps: int, epochs: int, start_step: int) -> tf.data.Dataset:
    """The batches of epochs `epoch(seed)` from global step `start_step` (of `steps` per epoch)
    to the end of epoch `epochs`. `epoch` gets its seed (epoch_seed, an int32 tensor) and must
    depend on nothing else.

    One `flat_map` over the epoch numbers makes them all, so `epoch` is traced once: a dataset
    per epoch, chained, took seconds to build and start for a few tens of epochs.
    """
    first_epoch, offset = divmod(start_step, steps)
    if first_epoch >= epochs:
        raise ValueError(f"start_step {start_step} is past the end of training "
                         f"({epochs} epochs of {steps} steps).")

    def numbered(number: tf.Tensor) -> tf.data.Dataset:
        # The graph-level seed of this function's graph only (the process's global seed is
        # untouched): tf.data then pairs each shuffle's seed with 1 whatever the global seed
        # is, and never compares the symbolic seed with 0 (it does when the global seed is 0).
        tf.random.set_seed(1)
        return epoch(tf.cast(epoch_seed(config, number), tf.int32))

    return (tf.data.Dataset.range(first_epoch, epochs).flat_map(numbered)
            .skip(offset).prefetch(AUTOTUNE))


def distribute(strategy, make_stream: Callable[[], tf.data.Dataset]):
    """The global-batch stream `make_stream()` split across `strategy`'s replicas, each replica
    taking its contiguous slice of every global batch.

    tf.distribute's own splitting rewrites the pipeline's `batch` into per-replica batches, so
    random augmentation would draw for smaller batches and the replicas together would not see
    what one device sees. Here every worker builds the global batch (augmentation included) and
    keeps its replicas' rows: one device and N replicas train on the very same examples.
    """
    if strategy.num_replicas_in_sync == 1:
        return make_stream()

    def per_worker(context: tf.distribute.InputContext) -> tf.data.Dataset:
        replicas = context.num_replicas_in_sync
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local

        def to_replicas(*batch):
            def mine(tensor):
                rows = tf.reshape(tensor, [replicas, -1, *tensor.shape[1:]])
                return rows[first:first + local]

            return tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(mine, batch))

        # Consecutive elements go to consecutive local replicas.
        return make_stream().flat_map(to_replicas).prefetch(AUTOTUNE)

    return strategy.distribute_datasets_from_function(per_worker)


def evaluation_batches(source: Source, config: PipelineConfig) -> tf.data.Dataset:
    """Center-cropped, unaugmented batches with one-hot labels (the last batch may be short)."""
    size, fraction = config.image_size, config.eval_crop_fraction
    num_classes = source.num_classes
    transform = EvalTransform(fraction, "bilinear")

    def prepare(image, label):
        image = apply_eval_transform(tf.cast(image, tf.float32), (size, size), transform)
        return image, tf.one_hot(label, num_classes)

    return (source.images().map(prepare, num_parallel_calls=AUTOTUNE)
            .batch(config.batch_size).prefetch(AUTOTUNE))


def epoch_seed(config: PipelineConfig, epoch):
    """The seed of epoch `epoch` (a number, or an int64 tensor inside the pipeline)."""
    return (config.seed * 1_000_003 + epoch * 7_919) % (2**31 - 1)


def _resize(image, size: int, seed):
    return keras.ops.image.resize(image, (size, size), "bilinear")


def _inception_crop(image, size: int, seed):
    """A random crop covering 8-100% of the image with aspect ratio 3/4-4/3, resized to size."""
    begin, extent, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image), tf.zeros([0, 0, 4], tf.float32), seed=seed,
        area_range=(0.08, 1.0), aspect_ratio_range=(3 / 4, 4 / 3), max_attempts=10,
        use_image_if_no_bounding_boxes=True)
    image = tf.slice(image, begin, extent)
    image = keras.ops.image.resize(image, (size, size), "bilinear")
    return tf.image.stateless_random_flip_left_right(image, seed)


def augmentation(config: PipelineConfig):
    """(epoch seed, step, (images, labels)) -> (images, labels) with Keras's augmentation
    layers, or None when the config asks for none."""
    # The pipeline works in float32 whatever the model's dtype policy (under mixed_bfloat16
    # the layers would otherwise round the images to bfloat16, and MixUp fails on the mix).
    kept = {"dtype": "float32"}
    layers = []
    for offset, name in enumerate(config.augment):
        layer_seed = config.seed + 101 * (offset + 1)  # replaced per batch, see augment below
        if name == "flip":
            layers.append(keras.layers.RandomFlip("horizontal", seed=layer_seed, **kept))
        elif name == "translate":
            layers.append(keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant",
                                                         seed=layer_seed, **kept))
        elif name == "rotate":
            layers.append(keras.layers.RandomRotation(0.05, fill_mode="constant",
                                                      seed=layer_seed, **kept))
        elif name == "randaugment":
            layers.append(keras.layers.RandAugment(
                value_range=(0, 255), num_ops=config.randaugment_layers,
                factor=config.randaugment_magnitude, seed=layer_seed, **kept))
        elif name == "random_erasing":
            layers.append(keras.layers.RandomErasing(value_range=(0, 255), seed=layer_seed, **kept))
        else:
            raise ValueError(f"Unknown augmentation {name!r}; choose from {AUGMENTATIONS}.")
    mixers = []
    if config.mixup_alpha > 0:
        mixers.append(keras.layers.MixUp(alpha=config.mixup_alpha, seed=config.seed + 1, **kept))
    if config.cutmix_alpha > 0:
        mixers.append(keras.layers.CutMix(factor=config.cutmix_alpha, seed=config.seed + 2, **kept))
    if not layers and not mixers:
        return None

    def augment(seed, step, batch):
        images, labels = batch
        # Keras's random layers draw from a stateful seed generator, so the draws would depend
        # on how often the pipeline was iterated before (Keras itself peeks at a batch when it
        # builds the metrics). Setting each generator's state from (epoch seed, step) makes
        # every batch's augmentation a function of its position alone.
        for index, layer in enumerate(layers + mixers):
            state = layer.generator.state
            state.assign(tf.cast(tf.stack([seed + 7_919 * index, tf.cast(step, tf.int32)]),
                                 state.dtype))
        for layer in layers:
            images = layer(images, training=True)
        if len(mixers) == 1:
            mixed = mixers[0]({"images": images, "labels": labels}, training=True)
            images, labels = mixed["images"], mixed["labels"]
        elif len(mixers) == 2:  # timm's default: MixUp or CutMix, one per batch
            coin = tf.random.stateless_uniform((), tf.stack([seed, tf.cast(step, tf.int32)]))
            use_mixup = coin < 0.5
            mixup = mixers[0]({"images": images, "labels": labels}, training=True)
            cutmix = mixers[1]({"images": images, "labels": labels}, training=True)
            images = tf.where(use_mixup, mixup["images"], cutmix["images"])
            labels = tf.where(use_mixup, mixup["labels"], cutmix["labels"])
        return images, labels

    return augment
