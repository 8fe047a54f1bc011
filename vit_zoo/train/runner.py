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

`model` names any family's builder, variant, custom shape or .keras file (ModelConfig), and
`optimization.objective` says what is learned: "classification" (the labels, the default; every
family but CLIP, DeiT with a teacher), "contrastive" (CLIP on image-caption pairs) or
"masked_patches", the ViT paper's self-supervision (vit_zoo.train.MaskedPatchPrediction): the
labels are ignored, model.keras is the pretrained encoder (include_top=False, class-token
pooling) that a later run fine-tunes with `model.weights: <output>/model.keras`, and the test
accuracy in metrics.json is the masked-patch accuracy on the test images. vit_zoo.train.tasks
holds each objective's data and test figures.
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

from vit_zoo.losses import CLIPLoss
from vit_zoo.models import families
from vit_zoo.models.families import Family
from vit_zoo.train import data as pipelines
from vit_zoo.train import tasks
from vit_zoo.train.backup import fit_resumable
from vit_zoo.train.collective import use_collective_steps
from vit_zoo.train.distillation import Distiller
from vit_zoo.train.masked_patches import MaskedPatchPrediction
from vit_zoo.train.optimizers import WarmupDecay, build_optimizer
from vit_zoo.train.strategies import strategy as make_strategy

PRECISIONS = ("float32", "mixed", "mixed_bfloat16", "mixed_float16")
OBJECTIVES = ("classification", "contrastive", "masked_patches")


@dataclass
class ModelConfig:
    """What to train.

    variant: a builder of any family ("ViT_B16", "R50_ViT_B16", "Swin_T", "Mixer_B16",
    "CLIP_ViT_B32"; `vit-zoo list`), a variant of `family` ("B/16" or "R50+B/16" for vit, "T"
    for swin, "B/16" for mixer, "B/32" for clip), a .keras file of a vit_zoo model (trained
    further as it is, head included), or "custom": a shape of `family` given in `shape` (the
    fields of its Arch: vit_zoo.models.vit.ViTArch, swin.SwinArch plus window_size,
    mixer.MixerArch, clip.CLIPArch with `image` a ViT shape); for ViTs the flat keys
    hidden_dim ... patch_size below are the same thing.
    family: vit (plain ViTs, DeiT and the hybrids; the default), swin, mixer or clip.
    weights: None, a registered tag or a checkpoint path; its classes need not match the data
    (a new zero-initialized head is made), nor its resolution (position embeddings are
    interpolated).
    context_length: the text tower's token count (clip).
    """

    variant: str = "custom"
    family: str = "vit"
    shape: dict | None = None
    weights: str | None = None
    image_size: int = 224
    hidden_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_dim: int = 768
    patch_size: int = 16
    context_length: int = 77
    dropout_rate: float = 0.0
    drop_path_rate: float = 0.0
    distillation_token: bool = False
    teacher: str | None = None  # a .keras classifier on the same images: DeiT distillation
    distillation: str = "hard"  # or "soft"
    teacher_outputs: str = "logits"  # or "probabilities"


@dataclass
class DataConfig(pipelines.PipelineConfig):
    """source / test_source: for classification "digits", "folder:<path>" or
    "tfds:<name>[:<split>]"; for the contrastive objective "digits-captions" (built in; tested
    zero-shot with unseen templates), "pairs:<file.jsonl|file.tsv>" (image path and caption) or
    "tfds:<name>[:<split>]" (a captioning set such as coco_captions). The image size is the
    model's (model.image_size). labels_per_class: train on that many examples of each class of
    the source (drawn with data.seed), as few-label fine-tuning does; the test source is left
    whole."""

    source: str = "digits"
    test_source: str | None = None
    labels_per_class: int | None = None
    digits_test_fraction: float = 0.2
    tfds_data_dir: str | None = None
    tfds_download: bool = False


@dataclass
class OptimizationConfig:
    """objective: what the loss asks for: "classification" (cross-entropy on the labels; ViT,
    DeiT with a teacher, hybrid, Swin, Mixer), "contrastive" (CLIP's symmetric loss over the
    image-caption pairs of the global batch) or "masked_patches" (ViT self-supervision: predict
    the mean colour of the mask_ratio of patches corrupted in each image; labels ignored)."""

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
    if objective != "classification" and config.model.teacher is not None:
        raise ValueError("model.teacher (distillation) needs labels; it goes with "
                         f"optimization.objective: classification, not {objective}.")
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
    family, arch = resolve_model(config.model)
    if family is not None and objective not in family.objectives:
        raise ValueError(f"The {family.name} family trains for {list(family.objectives)}, not "
                         f"optimization.objective: {objective}.")
    task = _task(config, objective)
    steps = pipelines.steps_per_epoch(task.train_source, config.data)
    epochs = config.optimization.epochs
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy(_policy(run.precision, distribution))
    try:
        with distribution.scope():
            model, trainee = _build(config, family, arch, task.classes, steps)
            use_collective_steps(trainee, distribution)
        counter = _StepCounter()
        verbose = run.verbose if run.verbose is not None else (1 if sys.stdout.isatty() else 2)
        started = time.perf_counter()
        with distribution.scope():
            histories = fit_resumable(
                trainee,
                lambda step: pipelines.distribute(
                    distribution, lambda: task.training_batches(epochs, step)),
                epochs=epochs,
                steps_per_epoch=steps,
                backup_dir=output / "backup",
                save_freq=run.backup_every,
                callbacks=[keras.callbacks.TensorBoard(str(output / "logs")), counter,
                           *([RunProgress(epochs)] if verbose else [])],
                verbose=verbose,
            )
            seconds = time.perf_counter() - started
            evaluation = trainee.evaluate(_distributable(task.evaluation_batches()),
                                          return_dict=True, verbose=0)
            measured = task.measure(model, evaluation)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    model.save(output / "model.keras")
    shutil.rmtree(output / "backup", ignore_errors=True)  # finished: a rerun starts afresh
    metrics = {
        "objective": objective,
        "family": family.name if family is not None else None,
        **measured,
        "test_loss": float(evaluation["loss"]),
        "train_seconds": seconds,
        "steps_run_now": counter.steps,
        "images_per_second": counter.steps * config.data.batch_size / max(seconds, 1e-9),
        "history": {key: [float(v) for h in histories for v in h.history[key]]
                    for key in (histories[0].history if histories else {})},
        "replicas": distribution.num_replicas_in_sync,
        "train_examples": task.train_source.size,
        "class_names": task.class_names,
        "config": asdict(config),
    }
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


class RunProgress(keras.callbacks.Callback):
    """One line per finished epoch with the whole run's elapsed time and ETA (Keras's own bar
    shows the epoch's). Counts only the epochs this process ran, so a resumed run's estimate
    is not skewed by the ones before the interruption."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs
        self.started: float | None = None
        self.done = 0

    def on_epoch_begin(self, epoch, logs=None):
        if self.started is None:
            self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.done += 1
        elapsed = time.perf_counter() - self.started
        left = elapsed / self.done * (self.epochs - epoch - 1)
        print(f"run: epoch {epoch + 1}/{self.epochs}, {_duration(elapsed)} elapsed, about "
              f"{_duration(left)} left", flush=True)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


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


def _task(config: TrainConfig, objective: str) -> tasks.Task:
    return tasks.make(objective, config.data, config.run.seed, config.model.context_length)


def resolve_model(spec: ModelConfig) -> tuple[Family | None, object]:
    """(family, what its builder takes) for the model section; (None, path) for a .keras file."""
    if spec.variant.endswith(".keras"):
        if not Path(spec.variant).is_file():
            raise FileNotFoundError(f"model.variant {spec.variant!r}: no such .keras file.")
        return None, spec.variant
    named = families.by_builder_name(spec.variant)
    if named is not None:
        return named
    if spec.family not in families.FAMILIES:
        raise ValueError(f"model.family must be one of {sorted(families.FAMILIES)}, got "
                         f"{spec.family!r}.")
    family = families.FAMILIES[spec.family]
    if spec.variant != "custom":
        try:
            return family, family.decode(spec.variant)
        except ValueError as error:
            raise ValueError(f"{error} Or name a builder: {', '.join(families.builder_names())}."
                             ) from None
    shape = dict(spec.shape or {})
    if family.name == "vit" and not shape:  # the flat keys are the ViT shape
        shape = {"hidden_dim": spec.hidden_dim, "depth": spec.depth, "num_heads": spec.num_heads,
                 "mlp_dim": spec.mlp_dim, "patch_size": spec.patch_size}
    if not shape:
        raise ValueError(f"model.variant: custom needs model.shape for the {family.name} family "
                         "(the fields of its Arch).")
    extra = {name: shape.pop(name) for name in family.shape_arguments if name in shape}
    return family, (family.custom(shape), extra)


def _build(config: TrainConfig, family: Family | None, arch, classes: int | None,
           steps_per_epoch: int):
    """(the model to save, the model to fit): the same model, a Distiller around it, or the
    encoder and the MaskedPatchPrediction around it."""
    spec = config.model
    optimization = config.optimization
    objective = optimization.objective
    if family is None:
        model = _load_to_train(arch, objective, classes)
    else:
        model = _build_new(spec, family, arch, objective, classes)
    trainee = model
    if objective == "masked_patches":
        trainee = MaskedPatchPrediction(model, optimization.mask_ratio, seed=config.run.seed)
    total = optimization.epochs * steps_per_epoch
    warmup = min(int(optimization.warmup_epochs * steps_per_epoch), total - 1)
    schedule = WarmupDecay(optimization.learning_rate, total, warmup, optimization.decay)
    optimizer = build_optimizer(
        trainee, optimization.optimizer, schedule,
        optimization.weight_decay, optimization.head_weight_decay, optimization.layer_decay,
        optimization.momentum,
        clip_norm=optimization.clip_norm, accumulation_steps=optimization.accumulation_steps)
    compile_args = {"optimizer": optimizer, "jit_compile": config.run.jit_compile,
                    "steps_per_execution": config.run.steps_per_execution}
    if objective == "masked_patches":  # it reports its own masked_patch_accuracy
        trainee.compile(**compile_args)
    elif objective == "contrastive":
        trainee.compile(loss=CLIPLoss(), **compile_args)
    elif spec.teacher is not None:
        teacher = keras.saving.load_model(spec.teacher)
        trainee = Distiller(model, teacher, spec.distillation,
                            teacher_outputs=spec.teacher_outputs,
                            label_smoothing=optimization.label_smoothing)
        trainee.compile(metrics=["accuracy"], **compile_args)
    else:
        trainee.compile(loss=keras.losses.CategoricalCrossentropy(
            from_logits=_outputs_logits(model), label_smoothing=optimization.label_smoothing),
            metrics=["accuracy"], **compile_args)
    return model, trainee


def _build_new(spec: ModelConfig, family: Family, arch, objective: str, classes: int | None):
    """A model of `family` for `objective`, from its builder."""
    arch, extra = arch if isinstance(arch, tuple) else (arch, {})
    arguments = {"weights": spec.weights, "input_shape": (spec.image_size, spec.image_size, 3),
                 **extra}
    if objective == "contrastive":
        arguments["context_length"] = spec.context_length
    elif objective == "masked_patches":
        # Pretraining saves the encoder without a head: fine-tuning from it makes a new head
        # for its own classes (the pooling is the class token, as the classifier's default).
        arguments.update(include_top=False, pooling="token")
    else:
        arguments.update(classes=classes, classifier_activation=None)
    regularization = {"dropout_rate": spec.dropout_rate, "drop_path_rate": spec.drop_path_rate,
                      "distillation_token": spec.distillation_token or spec.teacher is not None}
    accepted = family.arguments()
    for name, value in regularization.items():
        if name in accepted:
            arguments[name] = value
        elif value:
            what = "model.teacher" if name == "distillation_token" else f"model.{name}"
            raise ValueError(f"{what} does not apply to the {family.name} family (its builder "
                             f"has no {name}).")
    return family.build(arch, **arguments)


def _load_to_train(path: str, objective: str, classes: int | None) -> keras.Model:
    """A saved vit_zoo model, trained further as it is."""
    model = keras.saving.load_model(path)
    if objective == "contrastive":
        if not hasattr(model, "encode_text"):
            raise ValueError(f"{path} is not a CLIP model; contrastive training needs one.")
        return model
    if objective == "classification" and model.output_shape[-1] != classes:
        raise ValueError(
            f"{path} predicts {model.output_shape[-1]} classes and the data has {classes}. To "
            "fine-tune it on these classes, name its architecture in model.variant (or "
            "model.family and model.shape) and pass the file as model.weights: the head is "
            "then made anew for the data's classes.")
    return model


def _outputs_logits(model: keras.Model) -> bool:
    """Whether the model's output is logits (the builders' classifier_activation=None) rather
    than probabilities (a loaded model whose head ends in a softmax)."""
    activation = getattr(model.layers[-1], "activation", None)
    return getattr(activation, "__name__", "linear") != "softmax"


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
