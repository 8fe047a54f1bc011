"""The `vit-zoo` command: list, verify, predict, export, zero-shot, explain, demo, train."""

from __future__ import annotations

import argparse
import os
import sys


def _list(args: argparse.Namespace) -> int:
    from vit_zoo.models import BUILDERS, clip
    from vit_zoo.weights import records_for, status

    for builder, (family, variant) in {**BUILDERS, **clip.BUILDERS}.items():
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
    from vit_zoo.models import BUILDERS, clip
    from vit_zoo.weights import download, lookup, records_for
    from vit_zoo.weights.registry import all_records

    builders = {**BUILDERS, **clip.BUILDERS}
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
        return _usage_error(str(error))
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
    from vit_zoo.export.artifacts import artifact_format

    artifact = args.images[0] if artifact_format(args.images[0]) else None
    images = args.images[1:] if artifact else args.images
    if not images:
        print("Give at least one image file after the model artifact.", file=sys.stderr)
        return 2
    if not artifact:
        from vit_zoo.models import BUILDERS

        if args.model not in BUILDERS:
            print(f"Unknown model {args.model!r}; `vit-zoo list` shows the builders.",
                  file=sys.stderr)
            return 2
    missing = [path for path in images if not os.path.isfile(path)]
    if missing:
        print(f"No such image file: {', '.join(missing)}", file=sys.stderr)
        return 2
    if artifact:
        return _predict_artifact(artifact, images, args)
    return _predict_builder(images, args)


def _predict_artifact(artifact: str, images: list[str], args: argparse.Namespace) -> int:
    from vit_zoo.export.artifacts import predict_artifact

    labels = _read_labels(args.labels) if args.labels else None
    for prediction in predict_artifact(artifact, images, top=args.top, labels=labels):
        print(prediction.image)
        for label, score in prediction.top:
            print(f"  {score:8.4f}  {label}")
    return 0


def _predict_builder(images: list[str], args: argparse.Namespace) -> int:
    import numpy as np

    import vit_zoo

    model = getattr(vit_zoo, args.model)(weights=args.weights)
    batch = _load_images(images, *model.input_shape[1:3])
    if batch is None:
        return 2
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


def _read_labels(value: str) -> list[str]:
    """--labels: a file with one label per line, or a comma-separated list."""
    if os.path.isfile(value):
        with open(value, encoding="utf-8") as lines:
            return [line.strip() for line in lines if line.strip()]
    return [label.strip() for label in value.split(",") if label.strip()]


def _load_images(paths: list[str], height: int, width: int):
    """RGB float32 (N, height, width, 3) in [0, 255], or None (after saying why) if a file is
    missing."""
    import keras
    import numpy as np

    batch = []
    for path in paths:
        if not os.path.isfile(path):
            print(f"No such image file: {path}", file=sys.stderr)
            return None
        image = keras.utils.load_img(path, color_mode="rgb", target_size=(height, width),
                                     interpolation="bicubic")
        batch.append(keras.utils.img_to_array(image))
    return np.stack(batch)


def _export(args: argparse.Namespace) -> int:
    """Checks every argument and the output path first, then builds, converts, reports."""
    from pathlib import Path

    from vit_zoo.models import BUILDERS, clip

    builders = {**BUILDERS, **clip.BUILDERS}
    source = args.model
    if source.endswith(".keras"):
        if not os.path.isfile(source):
            print(f"No such model file: {source}", file=sys.stderr)
            return 2
    elif source not in builders:
        print(f"Unknown model {source!r}: a builder name (`vit-zoo list`) or a .keras file.",
              file=sys.stderr)
        return 2
    elif args.weights is None:
        print(f"{source} needs --weights: a registered tag (`vit-zoo list`) or a checkpoint "
              "file; exporting random weights serves nothing.", file=sys.stderr)
        return 2
    if args.quantize and args.format != "tflite":
        print("--quantize applies to --format tflite only.", file=sys.stderr)
        return 2
    if args.precision and args.format != "openvino":
        print("--precision applies to --format openvino only.", file=sys.stderr)
        return 2
    if args.format == "openvino" and not args.output.endswith(".xml"):
        print(f"--output {args.output}: an OpenVINO IR is an .xml file (with a .bin beside "
              "it).", file=sys.stderr)
        return 2
    if args.quantize == "int8" and not args.calibration_images:
        print("--quantize int8 calibrates on real images: give --calibration-images DIR "
              "(a few hundred images like the ones the model will see).", file=sys.stderr)
        return 2
    calibration = _image_files(args.calibration_images) if args.calibration_images else None
    if calibration == []:
        print(f"No image files in {args.calibration_images}.", file=sys.stderr)
        return 2
    labels = _read_labels(args.labels) if args.labels else None
    templates = _read_labels(args.templates) if args.templates else None
    output = Path(args.output)
    if args.format == "saved_model":
        if not output.name.isdigit():  # a model base path: export its next version
            from vit_zoo.train.demo import next_version

            output = next_version(output)
        elif output.exists() and any(output.iterdir()) and not args.overwrite:
            print(f"{output} exists and is not empty; TF Serving versions are immutable. Give "
                  "the model's base folder to export the next version, or --overwrite.",
                  file=sys.stderr)
            return 2
    elif output.exists() and not args.overwrite:
        print(f"{output} exists; pass --overwrite to replace it.", file=sys.stderr)
        return 2
    if not os.access(_existing_parent(output), os.W_OK):
        print(f"Cannot write under {_existing_parent(output)}.", file=sys.stderr)
        return 2

    import keras

    import vit_zoo
    from vit_zoo import export

    model = (keras.saving.load_model(source) if source.endswith(".keras")
             else getattr(vit_zoo, source)(weights=args.weights))
    try:
        return _write_export(model, output, args, labels, templates, calibration)
    except (ValueError, FileExistsError, export.ConversionError) as error:
        print(f"vit-zoo export: {error}", file=sys.stderr)
        return 2


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


def _existing_parent(path) -> str:
    from pathlib import Path

    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return str(path)


def _image_files(folder: str) -> list[str]:
    """Image files in a folder (sorted), or the file itself."""
    if os.path.isfile(folder):
        return [folder]
    extensions = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if name.lower().endswith(extensions))


def _zero_shot(args: argparse.Namespace) -> int:
    import keras
    import numpy as np

    import vit_zoo
    from vit_zoo import zero_shot
    from vit_zoo.models.clip import BUILDERS

    labels = [label.strip() for label in args.labels.split(",") if label.strip()]
    if args.labels == "imagenet":
        labels = zero_shot.imagenet_classnames()
    if len(labels) < 2:
        print("--labels needs at least two comma-separated class names, e.g. 'cat,dog', "
              "or 'imagenet'.", file=sys.stderr)
        return 2
    templates = {"imagenet": zero_shot.imagenet_templates(), "photo": ["a photo of a {}."]}.get(
        args.templates, [args.templates])
    if any(template.count("{}") != 1 for template in templates):
        print(f"--templates must be 'imagenet', 'photo' or one template with a single {{}}, "
              f"got {args.templates!r}.", file=sys.stderr)
        return 2
    if args.model.endswith(".keras"):
        if not os.path.isfile(args.model):
            print(f"No such model file: {args.model}", file=sys.stderr)
            return 2
        model = keras.saving.load_model(args.model)
    elif args.model in BUILDERS:
        model = getattr(vit_zoo, args.model)(weights=args.weights)
    else:
        print(f"Unknown CLIP model {args.model!r}: a builder ({', '.join(BUILDERS)}) or a "
              ".keras file of a CLIP model.", file=sys.stderr)
        return 2
    images = _load_images(args.images, *model.image_encoder.input_shape[1:3])
    if images is None:
        return 2
    classifier = zero_shot.zero_shot_classifier(model, labels, templates)
    probabilities = zero_shot.zero_shot_predict(model, classifier, images)
    for path, row in zip(args.images, probabilities):
        print(path)
        for index in np.argsort(-row)[: args.top]:
            print(f"  {row[index]:8.4f}  {labels[index]}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from vit_zoo.train.demo import demo_config, run

    config = demo_config(args.epochs, args.output, args.seed)
    metrics = run(config, export_to=None if args.no_export else args.export)
    print(f"test accuracy: {metrics['test_accuracy']:.4f} "
          f"({metrics['train_seconds']:.0f} s of training)")
    print(f"model saved to {os.path.join(config.run.output, 'model.keras')}")
    if "saved_model" in metrics:
        print(f"SavedModel exported to {metrics['saved_model']}")
        print(f"TFLite file: {metrics['tflite_report']}")
    return 0


def _usage_error(message: str) -> int:
    """An error the user can fix, in argparse's words: `vit-zoo: error: ...`, exit status 2."""
    print(f"vit-zoo: error: {message}", file=sys.stderr)
    return 2


def _model_from(source: str, weights: str | None):
    """A .keras file loaded, or a builder called with `weights`."""
    import keras

    import vit_zoo

    if source.endswith(".keras"):
        return keras.saving.load_model(source)
    return getattr(vit_zoo, source)(weights=weights)


def _explain(args: argparse.Namespace) -> int:
    """Checks the model name, the images (they must decode) and --out first; then loads the
    model, resizes the images as its evaluation does and writes the figures."""
    from pathlib import Path

    missing = [path for path in args.images if not os.path.isfile(path)]
    if missing:
        return _usage_error(f"no such image file: {', '.join(missing)}")
    if not 0.0 <= args.discard_ratio < 1.0:
        return _usage_error(f"--discard-ratio must be in [0, 1), got {args.discard_ratio}")
    source = args.model
    if source.endswith(".keras"):
        if not os.path.isfile(source):
            return _usage_error(f"no such model file: {source}")
        if args.weights is not None:
            return _usage_error("--weights goes with a builder name; a .keras file carries "
                                "its own weights")
    else:
        from vit_zoo.models import BUILDERS, clip

        builders = {**BUILDERS, **clip.BUILDERS}
        if source not in builders:
            return _usage_error(f"unknown model {source!r}: a builder name (`vit-zoo list`) or "
                                "a .keras file")
        if builders[source][0] == "mixer":
            return _usage_error(f"{source} is an MLP-Mixer: it has no attention to explain")
        if args.weights is None:
            return _usage_error(f"{source} needs --weights (a registered tag, see `vit-zoo "
                                "list`, or a checkpoint file): random weights explain nothing")
    from vit_zoo.inspect.images import read_image

    decoded = []
    for path in args.images:
        try:
            decoded.append(read_image(path))
        except (OSError, ValueError) as error:
            return _usage_error(f"cannot read {path} as an image ({error})")
    output = Path(args.out)
    if output.exists() and not output.is_dir():
        return _usage_error(f"--out {output} exists and is not a folder")
    if not os.access(_existing_parent(output), os.W_OK):
        return _usage_error(f"cannot write under {_existing_parent(output)}")

    import numpy as np

    from vit_zoo import inspect
    from vit_zoo.inspect.report import unique_names
    from vit_zoo.weights.download import WeightsDownloadError

    try:
        model = _model_from(source, args.weights)
        images = np.stack([inspect.prepare_image(image, model) for image in decoded])
        result = inspect.explain(model, images, unique_names(args.images),
                                 output, args.head_fusion, args.discard_ratio)
    except (ValueError, WeightsDownloadError) as error:  # an unknown tag, a Mixer in a .keras
        return _usage_error(str(error))
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    for path in result.files:
        print(path)
    return 0


# `vit-zoo train` flags that stand for a config key.
TRAIN_FLAGS = {
    "model": "model.variant", "weights": "model.weights", "image_size": "model.image_size",
    "teacher": "model.teacher", "data": "data.source", "test_data": "data.test_source",
    "batch_size": "data.batch_size", "epochs": "optimization.epochs",
    "learning_rate": "optimization.learning_rate", "optimizer": "optimization.optimizer",
    "strategy": "run.strategy", "precision": "run.precision", "output": "run.output",
    "seed": "run.seed",
}


def _train(args: argparse.Namespace) -> int:
    from vit_zoo.train.runner import TrainConfig, train

    if args.config is not None and not os.path.isfile(args.config):
        print(f"No such config file: {args.config}", file=sys.stderr)
        return 2
    overrides = [f"{key}={getattr(args, flag)}" for flag, key in TRAIN_FLAGS.items()
                 if getattr(args, flag) is not None]
    try:
        config = TrainConfig.from_yaml(args.config, overrides + list(args.set))
    except ValueError as error:
        print(f"Bad training config: {error}", file=sys.stderr)
        return 2
    metrics = train(config)
    print(f"test accuracy: {metrics['test_accuracy']:.4f}, test loss {metrics['test_loss']:.4f} "
          f"({metrics['train_seconds']:.0f} s, {metrics['images_per_second']:.1f} img/s)")
    print(f"model, metrics.json and TensorBoard logs in {config.run.output}")
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="vit-zoo", description="Vision transformers for Keras 3.")
    commands = root.add_subparsers(dest="command", required=True)

    listing = commands.add_parser("list", help="builders and their registered weights")
    listing.add_argument("-v", "--verbose", action="store_true", help="URLs, hashes, numerics")
    listing.set_defaults(run=_list)

    verifying = commands.add_parser(
        "verify", help="check cached weights against their sha256",
        description="Hashes cached weight files and compares each with the sha256 the registry "
                    "records, or the one recorded at its first download. NAME is a builder "
                    "(all its cached files) or BUILDER:TAG; none: every cached file, and files "
                    "in the cache that belong to no tag. Exit status 1 if any file fails.")
    verifying.add_argument("names", nargs="*", metavar="NAME", help="e.g. ViT_B16 or "
                                                                      "ViT_B16:augreg-imagenet21k")
    verifying.set_defaults(run=_verify)

    predict = commands.add_parser(
        "predict", help="classify image files with a builder or an exported model",
        description="vit-zoo predict [ARTIFACT] IMAGE...: ARTIFACT is a .keras, .tflite, .onnx "
                    "or OpenVINO .xml file or a SavedModel folder; without one, --model builds "
                    "a model.")
    predict.add_argument("images", nargs="+", metavar="[ARTIFACT] IMAGE",
                         help="an optional exported model, then image files")
    predict.add_argument("--model", default="ViT_B16", help="builder name, e.g. ViT_B16")
    predict.add_argument("--weights", default="augreg-imagenet21k+imagenet2012",
                         help="registered tag or local checkpoint path")
    predict.add_argument("--labels", help="class names (file, one per line, or a,b,c) for an "
                                          "artifact whose classes are not ImageNet's")
    predict.add_argument("--top", type=int, default=5)
    predict.set_defaults(run=_predict)

    exporting = commands.add_parser(
        "export", help="export a model as a SavedModel, TFLite, ONNX or OpenVINO file",
        description="SavedModel: --output is a version folder (saved_models/m/1) or a model base "
                    "folder (saved_models/m), which gets its next version.")
    exporting.add_argument("model", help="builder name (with --weights) or a .keras file")
    exporting.add_argument("--weights", help="registered tag or checkpoint file, with a builder")
    exporting.add_argument("--format", choices=("saved_model", "tflite", "onnx", "openvino"),
                           default="saved_model")
    exporting.add_argument("--precision", choices=("f32", "bf16"),
                           help="OpenVINO CPU inference precision recorded in the IR "
                                "(default f32)")
    exporting.add_argument("--quantize", choices=("float16", "dynamic_int8", "int8"),
                           help="TFLite quantization (int8 needs --calibration-images)")
    exporting.add_argument("--calibration-images", metavar="DIR",
                           help="images for int8 calibration and the agreement report")
    exporting.add_argument("--labels", help="class names (file, one per line, or a,b,c); for "
                                            "CLIP, the zero-shot classes")
    exporting.add_argument("--templates", help="CLIP prompt templates with {} (file or a,b)")
    exporting.add_argument("--top", type=int, default=5, help="top-k outputs of the SavedModel")
    exporting.add_argument("--warmup", action="store_true",
                           help="write TF Serving warm-up requests (vit_zoo[serving])")
    exporting.add_argument("--overwrite", action="store_true", help="replace an existing output")
    exporting.add_argument("--output", required=True, help="version folder, base folder or file")
    exporting.set_defaults(run=_export)

    zero_shot = commands.add_parser("zero-shot", help="classify images by CLIP text prompts")
    zero_shot.add_argument("images", nargs="+", help="image files (any format PIL reads)")
    zero_shot.add_argument("--labels", required=True,
                           help="comma-separated class names, or 'imagenet' (OpenAI's 1,000)")
    zero_shot.add_argument("--templates", default="imagenet",
                           help="'imagenet' (OpenAI's 80 prompts), 'photo' ('a photo of a {}.') "
                                "or one template with {} for the class name")
    zero_shot.add_argument("--model", default="CLIP_ViT_B32",
                           help="CLIP builder name, or a saved CLIP .keras file")
    zero_shot.add_argument("--weights", default="openai",
                           help="registered tag or local checkpoint path (with a builder name)")
    zero_shot.add_argument("--top", type=int, default=5)
    zero_shot.set_defaults(run=_zero_shot)

    explaining = commands.add_parser(
        "explain", help="attention figures of a ViT on image files",
        description="Writes into --out: per image the attention rollout overlay and the "
                    "per-block, per-head attention maps; the mean attention distance per head, "
                    "the position-embedding similarity and the patch-embedding filters; and "
                    "attention.npz with the arrays behind them. Swin gets its window "
                    "attention per block instead.")
    explaining.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    explaining.add_argument("--model", required=True,
                            help="builder name (with --weights) or a .keras file")
    explaining.add_argument("--weights", help="registered tag or checkpoint file, with a builder")
    explaining.add_argument("--out", required=True, metavar="DIR", help="folder for the figures")
    explaining.add_argument("--head-fusion", choices=("mean", "max", "min"), default="mean",
                            help="how the rollout combines a block's heads")
    explaining.add_argument("--discard-ratio", type=float, default=0.0,
                            help="rollout: share of each row's weakest attention weights to "
                                 "drop, in [0, 1)")
    explaining.set_defaults(run=_explain)

    demo = commands.add_parser("demo", help="train a small ViT on the digits offline, export it")
    demo.add_argument("--epochs", type=int, default=None, help="default 30")
    demo.add_argument("--output", default="runs/demo", help="folder for model.keras and metrics")
    demo.add_argument("--export", default="saved_models/digits_vit",
                      help="SavedModel base path; the export is its next version folder")
    demo.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)

    training = commands.add_parser(
        "train", help="train or fine-tune a ViT from a YAML config and flags",
        description="Sections and keys: see vit_zoo.train.runner (model, data, optimization, "
                    "run). Flags override the file; --set overrides anything.")
    training.add_argument("--config", help="YAML file with model/data/optimization/run sections")
    training.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                          help="override one key, e.g. optimization.layer_decay=0.75")
    for flag, key in TRAIN_FLAGS.items():
        training.add_argument("--" + flag.replace("_", "-"), dest=flag, help=f"sets {key}")
    training.set_defaults(run=_train)
    return root


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
