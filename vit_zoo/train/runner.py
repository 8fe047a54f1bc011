"""The training job behind `vit-zoo train` and `vit-zoo demo`: a config in, a trained model,
TensorBoard logs and a metrics JSON out.

A config has four sections, each a dataclass below, and reads from YAML with the same keys:

    model: {variant: S/16, weights: augreg-imagenet21k, image_size: 384, drop_path_rate: 0.1}
    data: {source: folder:/data/flowers/train, test_source: folder:/data/flowers/test,
           batch_size: 512, augment: [randaugment], mixup_alpha: 0.2}
    optimization: {optimizer: sgd, learning_rate: 0.03, epochs: 10, warmup_epochs: 1,
                   clip_norm: 1.0, weight_decay: 0.0}
    run: {strategy: auto, precision: mixed, output: runs/flowers, backup_every: 200}

`train(config)` builds under the chosen strategy, resumes from `<output>/backup` if a run was
interrupted, trains with `model.fit`, evaluates, and writes `<output>/model.keras`,
`<output>/metrics.json` and `<output>/logs` (TensorBoard).

`optimization.objective` says what is learned: "classification" (the labels, the default) or
"masked_patches", the ViT paper's self-supervision (vit_zoo.train.MaskedPatchPrediction): the
labels are ignored, model.keras is the pretrained encoder (include_top=False, class-token
pooling) that a later run fine-tunes with `model.weights: <output>/model.keras`, and the test
accuracy in metrics.json is the masked-patch accuracy on the test images.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import tensorflow as tf

from vit_zoo.train import data as pipelines
from vit_zoo.train.backup import fit_resumable
from vit_zoo.train.collective import use_collective_steps
from vit_zoo.train.distillation import Distiller
from vit_zoo.train.masked_patches import MaskedPatchPrediction
from vit_zoo.train.optimizers import WarmupDecay, build_optimizer
from vit_zoo.train.strategies import strategy as make_strategy

PRECISIONS = ("float32", "mixed", "mixed_bfloat16", "mixed_float16")
OBJECTIVES = ("classification", "masked_patches")


@dataclass
class ModelConfig:
    """variant: a ViT variant ("Ti/16", "S/16", "B/16", "R50+B/16", ...) or "custom" with the
    shape below. weights: None, a registered tag or a checkpoint path; its classes need not
    match the data (a new zero-initialized head is made), nor its resolution (position
    embeddings are interpolated)."""

    variant: str = "custom"
    weights: str | None = None
    image_size: int = 224
    hidden_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_dim: int = 768
    patch_size: int = 16
    dropout_rate: float = 0.0
    drop_path_rate: float = 0.0
    distillation_token: bool = False
    teacher: str | None = None  # a .keras classifier on the same images: DeiT distillation
    distillation: str = "hard"  # or "soft"
    teacher_outputs: str = "logits"  # or "probabilities"


@dataclass
class DataConfig(pipelines.PipelineConfig):
    """source / test_source: "digits", "folder:<path>" or "tfds:<name>[:<split>]". The image
    size is the model's (model.image_size). labels_per_class: train on that many examples of
    each class of the source (drawn with data.seed), as few-label fine-tuning does; the test
    source is left whole."""

    source: str = "digits"
    test_source: str | None = None
    labels_per_class: int | None = None
    digits_test_fraction: float = 0.2
    tfds_data_dir: str | None = None
    tfds_download: bool = False


@dataclass
class OptimizationConfig:
    """objective: what the loss asks for, "classification" (cross-entropy on the labels) or
    "masked_patches" (self-supervised: predict the mean colour of the mask_ratio of patches
    corrupted in each image; the labels are ignored)."""

    objective: str = "classification"
    mask_ratio: float = 0.5  # masked_patches only
    optimizer: str = "adamw"  # or "sgd"
    learning_rate: float = 1e-3  # peak, reached after warmup
    epochs: int = 10
    warmup_epochs: float = 1.0
    decay: str = "cosine"  # or "linear"
    weight_decay: float = 0.05
    head_weight_decay: float | None = None
    layer_decay: float | None = None
    momentum: float = 0.9
    clip_norm: float | None = 1.0
    label_smoothing: float = 0.0
    accumulation_steps: int = 1


@dataclass
class RunConfig:
    strategy: str = "auto"
    tpu: str | None = None
    precision: str = "float32"  # "mixed": bfloat16 on CPU and TPU, float16 on GPU
    # "auto" is Keras's rule: XLA on accelerators, not on CPU-only machines (oneDNN's matmuls
    # beat XLA's there, by 3x in bfloat16) nor under tf.distribute.
    jit_compile: bool | str = "auto"
    steps_per_execution: int = 1
    deterministic: bool = False  # True: exact reruns and resumes (TF turns XLA off for it)
    seed: int = 0
    output: str = "runs/train"
    backup_every: int = 100  # steps
    verbose: int | None = None  # None: a progress bar on a terminal, one line per epoch else


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optimization: OptimizationConfig = field(default_factory=OptimizationConfig)
    run: RunConfig = field(default_factory=RunConfig)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """From nested dicts (a parsed YAML file); unknown keys are an error naming them."""
        sections = {}
        for section in dataclasses.fields(cls):
            given = dict(values.get(section.name) or {})
            kind = section.default_factory
            known = {f.name for f in dataclasses.fields(kind)}
            unknown = set(given) - known
            if unknown:
                raise ValueError(f"Unknown key(s) {sorted(unknown)} in section "
                                 f"'{section.name}'; known: {sorted(known)}.")
            sections[section.name] = kind(**given)
        unknown = set(values) - set(sections)
        if unknown:
            raise ValueError(f"Unknown section(s) {sorted(unknown)}; known: {sorted(sections)}.")
        return cls(**sections)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: list[str] = ()) -> TrainConfig:
        """A YAML file (or None for the defaults) plus "section.key=value" overrides."""
        import yaml

        values = {}
        if path is not None:
            values = yaml.safe_load(Path(path).read_text()) or {}
            if not isinstance(values, dict):
                raise ValueError(f"{path} must hold a mapping of sections "
                                 "(model, data, optimization, run).")
        for override in overrides:
            key, sep, raw = override.partition("=")
            section, dot, name = key.partition(".")
            if not sep or not dot:
                raise ValueError(f"Override {override!r} must look like section.key=value, "
                                 "e.g. optimization.learning_rate=3e-4.")
            values.setdefault(section, {})[name] = yaml.safe_load(raw)
        return cls.from_dict(values)


def train(config: TrainConfig) -> dict:
    """Run the training job; returns the metrics also written to `<output>/metrics.json`."""
    run = config.run
    if run.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {run.precision!r}.")
    objective = config.optimization.objective
    if objective not in OBJECTIVES:
        raise ValueError(f"optimization.objective must be one of {OBJECTIVES}, "
                         f"got {objective!r}.")
    if objective == "masked_patches" and config.model.teacher is not None:
        raise ValueError("model.teacher (distillation) needs labels; it does not go with "
                         "optimization.objective: masked_patches.")
    # First: a multi-worker strategy must exist before anything starts the TF runtime.
    distribution = make_strategy(run.strategy, tpu=run.tpu)
    keras.utils.set_random_seed(run.seed)
    if run.deterministic:
        tf.config.experimental.enable_op_determinism()
    if config.optimization.accumulation_steps > 1 and distribution.num_replicas_in_sync > 1:
        raise ValueError(
            "optimization.accumulation_steps > 1 works on one device only: Keras's gradient "
            "accumulation cannot all-reduce across replicas. With several replicas, reach the "
            "global batch through data.batch_size (it is split across the replicas).")
    if config.data.batch_size % distribution.num_replicas_in_sync:
        raise ValueError(f"data.batch_size {config.data.batch_size} is the global batch and must "
                         f"divide evenly over the {distribution.num_replicas_in_sync} replicas.")
    output = _worker_directory(Path(run.output))
    output.mkdir(parents=True, exist_ok=True)

    # The pipeline makes images of the model's input size.
    config.data.image_size = config.model.image_size
    train_source, test_source = _sources(config.data, run.seed)
    steps = pipelines.steps_per_epoch(train_source, config.data)
    epochs = config.optimization.epochs
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(_policy(run.precision, distribution))
    try:
        with distribution.scope():
            model, trainee = _build(config, train_source.num_classes, steps)
            use_collective_steps(trainee, distribution)
        counter = _StepCounter()
        verbose = run.verbose if run.verbose is not None else (1 if sys.stdout.isatty() else 2)
        started = time.perf_counter()
        with distribution.scope():
            histories = fit_resumable(
                trainee,
                lambda step: pipelines.distribute(distribution, lambda: pipelines.training_batches(
                    train_source, config.data, epochs, step)),
                epochs=epochs,
                steps_per_epoch=steps,
                backup_dir=output / "backup",
                save_freq=run.backup_every,
                callbacks=[keras.callbacks.TensorBoard(str(output / "logs")), counter],
                verbose=verbose,
            )
            seconds = time.perf_counter() - started
            evaluation = trainee.evaluate(
                _distributable(pipelines.evaluation_batches(test_source, config.data)),
                return_dict=True, verbose=0)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    model.save(output / "model.keras")
    shutil.rmtree(output / "backup", ignore_errors=True)  # finished: a rerun starts afresh
    accuracy = "masked_patch_accuracy" if objective == "masked_patches" else "accuracy"
    metrics = {
        "objective": objective,
        "test_accuracy": float(evaluation[accuracy]),
        "test_loss": float(evaluation["loss"]),
        "train_seconds": seconds,
        "steps_run_now": counter.steps,
        "images_per_second": counter.steps * config.data.batch_size / max(seconds, 1e-9),
        "history": {key: [float(v) for h in histories for v in h.history[key]]
                    for key in (histories[0].history if histories else {})},
        "replicas": distribution.num_replicas_in_sync,
        "train_examples": train_source.size,
        "class_names": train_source.class_names,
        "config": asdict(config),
    }
    if objective == "masked_patches":  # the same figure under its own name, to be plain
        metrics["test_masked_patch_accuracy"] = metrics["test_accuracy"]
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


class _StepCounter(keras.callbacks.Callback):
    """Training steps run in this process (a resumed run runs fewer)."""

    def __init__(self):
        super().__init__()
        self.steps = 0
        self._last = -1

    def on_epoch_begin(self, epoch, logs=None):
        self._last = -1

    def on_train_batch_end(self, batch, logs=None):
        self.steps += batch - self._last
        self._last = batch


def _sources(config: DataConfig, seed: int):
    train_source, test_source = _whole_sources(config, seed)
    if config.labels_per_class is not None:
        train_source = pipelines.few_per_class(train_source, config.labels_per_class,
                                               config.seed)
    return train_source, test_source


def _whole_sources(config: DataConfig, seed: int):
    if config.source == "digits":
        if config.test_source not in (None, "digits"):
            raise ValueError("The digits source brings its own test split; leave test_source "
                             "unset (or 'digits').")
        return pipelines.digits(config.image_size, config.digits_test_fraction, seed)
    if config.test_source is None:
        raise ValueError(f"data.test_source is needed with source {config.source!r} "
                         "(a folder or a TFDS split to evaluate on).")
    return _source(config.source, config, "train"), _source(config.test_source, config, "test")


def _source(spec: str, config: DataConfig, default_split: str) -> pipelines.Source:
    kind, _, rest = spec.partition(":")
    if kind == "folder" and rest:
        return pipelines.from_folder(rest)
    if kind == "tfds" and rest:
        name, _, split = rest.partition(":")
        return pipelines.from_tfds(name, split or default_split, config.tfds_data_dir,
                                   config.tfds_download)
    raise ValueError(f"Data source {spec!r} is not 'digits', 'folder:<path>' or "
                     "'tfds:<name>[:<split>]'.")


def _build(config: TrainConfig, classes: int, steps_per_epoch: int):
    """(the model to save, the model to fit): the same model, a Distiller around it, or the
    encoder and the MaskedPatchPrediction around it."""
    from vit_zoo.models.vit import ViT, ViTArch

    spec = config.model
    optimization = config.optimization
    variant = spec.variant
    if variant == "custom":
        variant = ViTArch("custom", spec.hidden_dim, spec.depth, spec.num_heads, spec.mlp_dim,
                          spec.patch_size)
    pretraining = optimization.objective == "masked_patches"
    # Pretraining saves the encoder without a head: fine-tuning from it makes a new head for
    # its own classes (the pooling is the class token, as the classifier's default).
    head = {"include_top": False, "pooling": "token"} if pretraining else {
        "classes": classes, "classifier_activation": None}
    model = ViT(variant, weights=spec.weights, input_shape=(spec.image_size, spec.image_size, 3),
                dropout_rate=spec.dropout_rate, drop_path_rate=spec.drop_path_rate,
                distillation_token=spec.distillation_token or spec.teacher is not None, **head)
    trainee = None
    if pretraining:
        trainee = MaskedPatchPrediction(model, optimization.mask_ratio, seed=config.run.seed)
    total = optimization.epochs * steps_per_epoch
    warmup = min(int(optimization.warmup_epochs * steps_per_epoch), total - 1)
    schedule = WarmupDecay(optimization.learning_rate, total, warmup, optimization.decay)
    optimizer = build_optimizer(
        trainee if pretraining else model, optimization.optimizer, schedule,
        optimization.weight_decay, optimization.head_weight_decay, optimization.layer_decay,
        optimization.momentum,
        clip_norm=optimization.clip_norm, accumulation_steps=optimization.accumulation_steps)
    compile_args = {"optimizer": optimizer, "metrics": ["accuracy"],
                    "jit_compile": config.run.jit_compile,
                    "steps_per_execution": config.run.steps_per_execution}
    if pretraining:  # it reports its own masked_patch_accuracy
        trainee.compile(**{**compile_args, "metrics": None})
    elif spec.teacher is not None:
        teacher = keras.saving.load_model(spec.teacher)
        trainee = Distiller(model, teacher, spec.distillation,
                            teacher_outputs=spec.teacher_outputs,
                            label_smoothing=optimization.label_smoothing)
        trainee.compile(**compile_args)
    else:
        trainee = model
        trainee.compile(loss=keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=optimization.label_smoothing), **compile_args)
    return model, trainee


def _policy(precision: str, distribution) -> str:
    if precision != "mixed":
        return precision
    on_gpu = any(device.device_type == "GPU" for device in tf.config.list_logical_devices())
    on_tpu = isinstance(distribution, tf.distribute.TPUStrategy)
    return "mixed_float16" if on_gpu and not on_tpu else "mixed_bfloat16"


def _distributable(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Shard in-memory data by element across workers (file sharding needs files)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _worker_directory(output: Path) -> Path:
    """The output folder; in a multi-worker run only the chief (task "chief", else worker 0)
    writes there, the other workers below it."""
    cluster = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = cluster.get("task")
    if not task:
        return output
    chief = ("chief", 0) if "chief" in cluster.get("cluster", {}) else ("worker", 0)
    if (task.get("type"), task.get("index", 0)) == chief:
        return output
    return output / f"{task.get('type')}_{task.get('index', 0)}"
