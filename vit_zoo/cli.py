"""The `vit-zoo` commands: list, verify, predict, export, zero-shot, explain, demo, train.

The command line's front door is vit_zoo_cli: it parses the arguments and checks the command's
files without TensorFlow, then calls `run` here. `python -m vit_zoo.cli` works too.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from vit_zoo_cli import UsageError, main
from vit_zoo_cli.arguments import TRAIN_FLAGS
from vit_zoo_cli.checks import artifact_format, image_files, read_labels


def run(args: argparse.Namespace) -> int:
    """Run the parsed command (its inputs already checked by vit_zoo_cli.checks)."""
    return COMMANDS[args.command](args)


def _builders() -> dict[str, tuple[str, str]]:
    from vit_zoo.models import BUILDERS, clip

    return {**BUILDERS, **clip.BUILDERS}


def _builder(name: str, allowed: dict[str, tuple[str, str]] | None = None) -> str:
    """`name` if it is a builder (of `allowed`, default: all), else a UsageError."""
    allowed = _builders() if allowed is None else allowed
    if name not in allowed:
        raise UsageError(f"unknown model {name!r}: a builder name (`vit-zoo list`) or a .keras "
                         "file")
    return name


def _list(args: argparse.Namespace) -> int:
    from vit_zoo.weights import records_for, status

    for builder, (family, variant) in _builders().items():
        records = records_for(family, variant)
        tags = ", ".join(record.tag for record in records) or "(no registered weights)"
        print(f"{builder:<16} {tags}")
        if args.verbose:
            for record in records:
                head = f"{record.classes} classes" if record.classes else "no head"
                if not record.valid_head:
                    head += " (not a valid classifier: refused without classes=)"
                print(f"    {record.tag}: {record.resolution} px, {head}, "
                      f"{record.numerics.activation}, {record.license}\n"
                      f"      {record.url}\n"
                      f"      {status.pinning(record)}; {status.hash_source(record)}")
                if record.hub_copy:
                    print(f"      same weights as https://huggingface.co/{record.hub_copy}")
    return 0


def _weights_by_name(names: list[str]):
    """Records for `vit-zoo verify` arguments: BUILDER (its cached files) or BUILDER:TAG; all
    registered records when no names are given. Returns (records, explicitly named ones)."""
    from vit_zoo.weights import download, lookup, records_for
    from vit_zoo.weights.registry import all_records

    builders = _builders()
    if not names:
        return all_records(), []
    records, named = [], []
    for name in names:
        builder, _, tag = name.partition(":")
        if builder not in builders:
            raise ValueError(f"unknown model {builder!r} in {name!r}; `vit-zoo list` shows the "
                             "builders and their tags")
        if tag:
            record = lookup(*builders[builder], tag)
            records.append(record)
            named.append(record)
        else:
            records += [record for record in records_for(*builders[builder])
                        if download.cached_path(record).exists()]
    return records, named


def _verify(args: argparse.Namespace) -> int:
    from vit_zoo.weights import download, status

    try:
        records, named = _weights_by_name(args.names)
    except ValueError as error:
        raise UsageError(str(error)) from error
    failed, reported = False, 0
    for record in records:
        result = status.verify(record)
        if result.state == status.MISSING and record not in named:
            continue  # a registered file nobody asked about and nobody downloaded
        failed |= result.state != status.OK
        reported += 1
        print(f"{result.state:<9} {record.family} {record.variant} {record.tag}  {result.path}")
        detail = result.detail if result.state != status.MISMATCH else result.detail.replace(
            "\n", "\n            ")
        print(f"          {detail}")
    if not args.names:
        from vit_zoo.weights.registry import all_records

        for stray in status.strays(all_records()):
            what = ("an interrupted download's staging folder" if stray.is_dir()
                    else "not a file of any registered tag (an older vit_zoo's cache name?)")
            print(f"{'stray':<9} {stray}\n          {what}: safe to delete")
    if not reported:
        print(f"No cached weights to verify in {download.cache_dir()}.")
    return 1 if failed else 0


def _predict(args: argparse.Namespace) -> int:
    artifact = args.images[0] if artifact_format(args.images[0]) else None
    images = args.images[1:] if artifact else args.images
    if artifact:
        from vit_zoo.export.artifacts import predict_artifact

        labels = read_labels(args.labels) if args.labels else None
        for prediction in predict_artifact(artifact, images, top=args.top, labels=labels):
            print(prediction.image)
            for label, score in prediction.top:
                print(f"  {score:8.4f}  {label}")
        return 0
    import numpy as np

    import vit_zoo

    _builder(args.model)  # a tag is checked by the builder, before any download
    model = getattr(vit_zoo, args.model)(weights=args.weights)
    batch = _load_images(images, *model.input_shape[1:3])
    scores = model.predict(batch, verbose=0)
    try:
        decoded = vit_zoo.decode_predictions(scores, top=args.top)
    except ValueError:
        order = np.argsort(-scores, axis=1)[:, : args.top]
        decoded = [[("", f"class {i}", float(row[i])) for i in indices]
                   for row, indices in zip(scores, order)]
    for path, predictions in zip(images, decoded):
        print(path)
        for wordnet_id, label, score in predictions:
            print(f"  {score:8.4f}  {label} {wordnet_id}".rstrip())
    return 0


def _load_images(paths: list[str], height: int, width: int):
    """RGB float32 (N, height, width, 3) in [0, 255]."""
    import keras
    import numpy as np

    return np.stack([
        keras.utils.img_to_array(keras.utils.load_img(
            path, color_mode="rgb", target_size=(height, width), interpolation="bicubic"))
        for path in paths])


def _export(args: argparse.Namespace) -> int:
    """Arguments and the output path are checked first (vit_zoo_cli.checks, then the model name
    and tag); then it builds, converts, reports."""
    from pathlib import Path

    source = args.model
    if not source.endswith(".keras"):
        _builder(source)
        if args.weights is None:
            raise UsageError(f"{source} needs --weights: a registered tag (`vit-zoo list`) or a "
                             "checkpoint file; exporting random weights serves nothing")
    labels = read_labels(args.labels) if args.labels else None
    templates = read_labels(args.templates, "--templates") if args.templates else None
    calibration = image_files(args.calibration_images) if args.calibration_images else None
    output = Path(args.output)
    if args.format == "saved_model" and not output.name.isdigit():
        from vit_zoo.train.demo import next_version  # a model base path: its next version

        output = next_version(output)

    import keras

    import vit_zoo
    from vit_zoo import export

    model = (keras.saving.load_model(source) if source.endswith(".keras")
             else getattr(vit_zoo, source)(weights=args.weights))
    try:
        return _write_export(model, output, args, labels, templates, calibration)
    except export.ConversionError as error:
        raise UsageError(str(error)) from error


def _write_export(model, output, args, labels, templates, calibration) -> int:
    from vit_zoo import export

    if args.format == "saved_model":
        path = export.saved_model(model, output, overwrite=args.overwrite, top_k=args.top,
                                  labels=labels, templates=templates, warmup=args.warmup)
        print(f"SavedModel written to {path}")
        return 0
    size = (model.image_encoder if hasattr(model, "image_encoder") else model).input_shape[1:3]
    data = _load_images(calibration, *size) if calibration else None
    if args.format == "tflite":
        report = export.tflite(model, output, quantize=args.quantize,
                               representative_data=data, validation_data=data,
                               overwrite=args.overwrite)
    elif args.format == "openvino":
        report = export.openvino(model, output, precision=args.precision or "f32",
                                 validation_data=data, overwrite=args.overwrite)
    else:
        from vit_zoo.export.onnx_export import onnx

        report = onnx(model, output, validation_data=data, overwrite=args.overwrite)
    print(report)
    return 0


def _zero_shot(args: argparse.Namespace) -> int:
    import keras
    import numpy as np

    import vit_zoo
    from vit_zoo import zero_shot
    from vit_zoo.models.clip import BUILDERS

    labels = (zero_shot.imagenet_classnames() if args.labels == "imagenet"
              else read_labels(args.labels))
    templates = {"imagenet": zero_shot.imagenet_templates(), "photo": ["a photo of a {}."]}.get(
        args.templates, [args.templates])
    if args.model.endswith(".keras"):
        model = keras.saving.load_model(args.model)
    else:
        if args.model not in BUILDERS:
            raise UsageError(f"unknown CLIP model {args.model!r}: a builder "
                             f"({', '.join(BUILDERS)}) or a .keras file of a CLIP model")
        model = getattr(vit_zoo, args.model)(weights=args.weights)
    images = _load_images(args.images, *model.image_encoder.input_shape[1:3])
    classifier = zero_shot.zero_shot_classifier(model, labels, templates)
    probabilities = zero_shot.zero_shot_predict(model, classifier, images)
    for path, row in zip(args.images, probabilities):
        print(path)
        for index in np.argsort(-row)[: args.top]:
            print(f"  {row[index]:8.4f}  {labels[index]}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from vit_zoo.train.demo import demo_config, run
    from vit_zoo_cli import STARTED

    config = demo_config(args.epochs, args.output, args.seed)
    metrics = run(config, export_to=None if args.no_export else args.export)
    print(f"model saved to {os.path.join(config.run.output, 'model.keras')}")
    if "saved_model" in metrics:
        print(f"SavedModel exported to {metrics['saved_model']}")
        print(f"TFLite file: {metrics['tflite_report']}")
    print(f"test accuracy: {metrics['test_accuracy']:.4f} ({metrics['train_seconds']:.0f} s of "
          f"training, {time.perf_counter() - STARTED:.0f} s for the whole command)")
    return 0


def _explain(args: argparse.Namespace) -> int:
    """The images and --out were checked already; the model name and tag are checked here,
    then the model is loaded, the images resized as its evaluation does and the figures
    written."""
    from pathlib import Path

    import keras
    import numpy as np

    import vit_zoo
    from vit_zoo import inspect
    from vit_zoo.inspect.images import read_image
    from vit_zoo.inspect.report import unique_names

    source = args.model
    if source.endswith(".keras"):
        model = keras.saving.load_model(source)
    else:
        builders = _builders()
        _builder(source, builders)
        if builders[source][0] == "mixer":
            raise UsageError(f"{source} is an MLP-Mixer: it has no attention to explain")
        if args.weights is None:
            raise UsageError(f"{source} needs --weights (a registered tag, see `vit-zoo list`, "
                             "or a checkpoint file): random weights explain nothing")
        model = getattr(vit_zoo, source)(weights=args.weights)
    images = np.stack([inspect.prepare_image(read_image(path), model) for path in args.images])
    result = inspect.explain(model, images, unique_names(args.images), Path(args.out),
                             args.head_fusion, args.discard_ratio)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    for path in result.files:
        print(path)
    return 0


def _train(args: argparse.Namespace) -> int:
    from vit_zoo.train.runner import TrainConfig, train

    overrides = [f"{key}={getattr(args, flag)}" for flag, key in TRAIN_FLAGS.items()
                 if getattr(args, flag) is not None]
    try:
        config = TrainConfig.from_yaml(args.config, overrides + list(args.set))
    except ValueError as error:
        raise UsageError(f"bad training config: {error}") from error
    metrics = train(config)
    print(f"test accuracy: {metrics['test_accuracy']:.4f}, test loss {metrics['test_loss']:.4f} "
          f"({metrics['train_seconds']:.0f} s, {metrics['images_per_second']:.1f} img/s)")
    print(f"model, metrics.json and TensorBoard logs in {config.run.output}")
    return 0


COMMANDS = {"list": _list, "verify": _verify, "predict": _predict, "export": _export,
            "zero-shot": _zero_shot, "explain": _explain, "demo": _demo, "train": _train}

__all__ = ["COMMANDS", "main", "run"]

if __name__ == "__main__":
    sys.exit(main())
