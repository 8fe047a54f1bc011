"""The `vit-zoo` command's arguments (argparse only: `--help` and argument errors never import
TensorFlow)."""

from __future__ import annotations

import argparse

VERBOSE_HELP = "show TensorFlow's log and error tracebacks (also VIT_ZOO_VERBOSE=1)"

# `vit-zoo train` flags that stand for a config key.
TRAIN_FLAGS = {
    "model": "model.variant", "weights": "model.weights", "image_size": "model.image_size",
    "teacher": "model.teacher", "data": "data.source", "test_data": "data.test_source",
    "batch_size": "data.batch_size", "epochs": "optimization.epochs",
    "learning_rate": "optimization.learning_rate", "optimizer": "optimization.optimizer",
    "strategy": "run.strategy", "precision": "run.precision", "output": "run.output",
    "seed": "run.seed",
}


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="vit-zoo", description="Vision transformers for Keras 3.",
        epilog="TensorFlow's start-up log is kept off the terminal; --verbose (before or after "
               "the command) or VIT_ZOO_VERBOSE=1 shows it, and the traceback of any error.")
    root.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    # Each command takes --verbose too; SUPPRESS keeps the root's value when it is not repeated.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS,
                        help=VERBOSE_HELP)
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, **kwargs) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], **kwargs)

    listing = command("list", help="builders and their registered weights")
    listing.add_argument("-v", dest="verbose", action="store_true", default=argparse.SUPPRESS,
                         help="-v / --verbose: URLs, pins, hashes, numerics (and TensorFlow's "
                              "log)")

    verifying = command(
        "verify", help="check cached weights against their sha256",
        description="Hashes cached weight files and compares each with the sha256 the registry "
                    "records, or the one recorded at its first download. NAME is a builder "
                    "(all its cached files) or BUILDER:TAG; none: every cached file, and files "
                    "in the cache that belong to no tag. Exit status 1 if any file fails.")
    verifying.add_argument("names", nargs="*", metavar="NAME", help="e.g. ViT_B16 or "
                                                                      "ViT_B16:augreg-imagenet21k")

    predict = command(
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
    predict.add_argument("--top", type=positive_int, default=5)

    exporting = command(
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
    exporting.add_argument("--top", type=positive_int, default=5,
                           help="top-k outputs of the SavedModel")
    exporting.add_argument("--warmup", action="store_true",
                           help="write TF Serving warm-up requests (vit_zoo[serving])")
    exporting.add_argument("--overwrite", action="store_true", help="replace an existing output")
    exporting.add_argument("--output", required=True, help="version folder, base folder or file")

    zero_shot = command("zero-shot", help="classify images by CLIP text prompts")
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
    zero_shot.add_argument("--top", type=positive_int, default=5)

    explaining = command(
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

    demo = command("demo", help="train a small hybrid ViT on the digits offline, export it")
    demo.add_argument("--epochs", type=positive_int, default=None, help="default: the demo's")
    demo.add_argument("--output", default="runs/demo", help="folder for model.keras and metrics")
    demo.add_argument("--export", default="saved_models/digits_vit",
                      help="SavedModel base path; the export is its next version folder")
    demo.add_argument("--no-export", action="store_true", help="skip the SavedModel export")
    demo.add_argument("--seed", type=int, default=0)

    training = command(
        "train", help="train or fine-tune a ViT from a YAML config and flags",
        description="Sections and keys: see vit_zoo.train.runner (model, data, optimization, "
                    "run). Flags override the file; --set overrides anything.")
    training.add_argument("--config", help="YAML file with model/data/optimization/run sections")
    training.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                          help="override one key, e.g. optimization.layer_decay=0.75")
    for flag, key in TRAIN_FLAGS.items():
        training.add_argument("--" + flag.replace("_", "-"), dest=flag, help=f"sets {key}")
    return root

