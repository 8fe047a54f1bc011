"""Checks of a command's inputs that need no TensorFlow: run before anything is imported, built or
downloaded, so a typo costs a second, not a download. (Names of builders and tags are checked
against the registry next, still before any download.)"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")


class UsageError(ValueError):
    """Something the user can fix: printed as `vit-zoo: error: <message>`, exit status 2."""


def artifact_format(path: str | os.PathLike) -> str | None:
    """"keras", "saved_model", "tflite", "onnx", "openvino", or None for anything else."""
    path = Path(path)
    if path.is_dir():
        return "saved_model" if (path / "saved_model.pb").exists() else None
    return {".keras": "keras", ".tflite": "tflite", ".onnx": "onnx",
            ".xml": "openvino"}.get(path.suffix.lower())


def check_images(paths: list[str]) -> None:
    """Every path is a file that decodes as an image."""
    from PIL import Image

    missing = [path for path in paths if not os.path.isfile(path)]
    if missing:
        raise UsageError(f"no such image file: {', '.join(missing)}")
    for path in paths:
        try:
            with Image.open(path) as image:
                image.load()
        except (OSError, ValueError) as error:
            raise UsageError(f"cannot read {path} as an image ({error})") from error


def read_labels(value: str, flag: str = "--labels") -> list[str]:
    """A file with one label per line, or a comma-separated list; never empty."""
    if os.path.isfile(value):
        with open(value, encoding="utf-8") as lines:
            labels = [line.strip() for line in lines if line.strip()]
    else:
        labels = [label.strip() for label in value.split(",") if label.strip()]
    if not labels:
        raise UsageError(f"{flag} {value!r} names no labels: give a file with one per line, or "
                         "a,b,c")
    return labels


def image_files(folder: str) -> list[str]:
    """Image files in a folder (sorted), or the file itself."""
    if os.path.isfile(folder):
        return [folder]
    if not os.path.isdir(folder):
        return []
    return sorted(os.path.join(folder, name) for name in os.listdir(folder)
                  if name.lower().endswith(IMAGE_SUFFIXES))


def existing_parent(path: str | os.PathLike) -> Path:
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return path


def check_writable(path: str | os.PathLike, flag: str) -> None:
    parent = existing_parent(path)
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise UsageError(f"{flag} {path}: cannot write under {parent}")


def _model_file(source: str) -> None:
    if source.endswith(".keras") and not os.path.isfile(source):
        raise UsageError(f"no such model file: {source}")


def _predict(args: argparse.Namespace) -> None:
    artifact = artifact_format(args.images[0])
    images = args.images[1:] if artifact else args.images
    if not images:
        raise UsageError("give at least one image file after the model artifact")
    check_images(images)
    if args.labels:
        read_labels(args.labels)


def _export(args: argparse.Namespace) -> None:
    _model_file(args.model)
    if args.quantize and args.format != "tflite":
        raise UsageError("--quantize applies to --format tflite only")
    if args.precision and args.format != "openvino":
        raise UsageError("--precision applies to --format openvino only")
    if args.format == "openvino" and not args.output.endswith(".xml"):
        raise UsageError(f"--output {args.output}: an OpenVINO IR is an .xml file (with a .bin "
                         "beside it)")
    if args.quantize == "int8" and not args.calibration_images:
        raise UsageError("--quantize int8 calibrates on real images: give --calibration-images "
                         "DIR (a few hundred images like the ones the model will see)")
    if args.calibration_images is not None:
        calibration = image_files(args.calibration_images)
        if not calibration:
            raise UsageError(f"no image files in {args.calibration_images}")
        check_images(calibration)
    if args.labels:
        read_labels(args.labels)
    if args.templates:
        read_labels(args.templates, "--templates")
    output = Path(args.output)
    if args.format == "saved_model":
        if output.name.isdigit() and output.exists() and any(output.iterdir()) \
                and not args.overwrite:
            raise UsageError(f"{output} exists and is not empty; TF Serving versions are "
                             "immutable. Give the model's base folder to export the next "
                             "version, or --overwrite")
    elif output.exists() and not args.overwrite:
        raise UsageError(f"{output} exists; pass --overwrite to replace it")
    check_writable(output, "--output")


def _zero_shot(args: argparse.Namespace) -> None:
    if args.labels != "imagenet" and len(read_labels(args.labels)) < 2:
        raise UsageError("--labels needs at least two comma-separated class names, e.g. "
                         "'cat,dog', or 'imagenet'")
    if args.templates not in ("imagenet", "photo") and args.templates.count("{}") != 1:
        raise UsageError("--templates must be 'imagenet', 'photo' or one template with a single "
                         f"{{}}, got {args.templates!r}")
    _model_file(args.model)
    check_images(args.images)


def _explain(args: argparse.Namespace) -> None:
    if not 0.0 <= args.discard_ratio < 1.0:
        raise UsageError(f"--discard-ratio must be in [0, 1), got {args.discard_ratio}")
    _model_file(args.model)
    if args.model.endswith(".keras") and args.weights is not None:
        raise UsageError("--weights goes with a builder name; a .keras file carries its own "
                         "weights")
    check_images(args.images)
    output = Path(args.out)
    if output.exists() and not output.is_dir():
        raise UsageError(f"--out {output} exists and is not a folder")
    check_writable(output, "--out")


def _demo(args: argparse.Namespace) -> None:
    check_writable(args.output, "--output")
    if not args.no_export:
        check_writable(args.export, "--export")


def _train(args: argparse.Namespace) -> None:
    if args.config is not None:
        if not os.path.isfile(args.config):
            raise UsageError(f"no such config file: {args.config}")
        import yaml

        try:
            values = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            where = " ".join(str(error).split())  # yaml's message spans lines
            raise UsageError(f"{args.config} is not valid YAML: {where}") from error
        if values is not None and not isinstance(values, dict):
            raise UsageError(f"{args.config} must hold a mapping of sections (model, data, "
                             "optimization, run)")
    for override in args.set:
        key, sep, _ = override.partition("=")
        if not sep or "." not in key:
            raise UsageError(f"--set {override!r} must look like section.key=value, e.g. "
                             "optimization.learning_rate=3e-4")


PREFLIGHT = {"predict": _predict, "export": _export, "zero-shot": _zero_shot,
             "explain": _explain, "demo": _demo, "train": _train}


def preflight(args: argparse.Namespace) -> None:
    """Raise UsageError for anything wrong with the command's own inputs."""
    check = PREFLIGHT.get(args.command)
    if check is not None:
        check(args)
