"""Masked-patch self-supervision, then few-label fine-tuning, against the same fine-tuning from
scratch (the ViT paper's "Self-supervision" experiment, in miniature, on the digits).

For each seed:
1. pretrain a plain ViT of the demo's width and depth (16 px digits, 4 px patches) with
   `optimization.objective: masked_patches` on every training image, labels unused (batches of
   64, AdamW at 3e-3, no augmentation);
2. fine-tune it on `--labels-per-class` labelled training images of each digit
   (`data.labels_per_class`; batches of 16, AdamW at 1e-3, 3 warmup epochs then cosine, label
   smoothing 0.1, random translation and rotation);
3. train the same model from random weights on the same labelled images, same config, same seed;
and evaluate both on the whole digits test split. Everything goes through `vit-zoo train`'s
job (vit_zoo.train.runner.train), in this process.

    python benchmarks/masked_patch_pretraining.py --labels-per-class 10 --seeds 0 1 2

Prints one line per seed (label count, both test accuracies, their difference, the pretraining's
masked-patch accuracy on the test images) and the mean difference. CPU only: several minutes
per seed on two cores (the README has the figures). tests/test_masked_patches.py runs the same
experiment in small.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402

from vit_zoo.train.runner import TrainConfig, train  # noqa: E402

#: Model shapes: a plain ViT as wide and deep as the demo's (the demo puts a ResNet root in front;
#: masked-patch targets are the pixels of the patches the transformer sees, so no stem here), and
#: a smaller one (the test's) for quicker runs.
PLAIN = {"variant": "custom", "image_size": 16, "patch_size": 4, "hidden_dim": 96, "depth": 6,
         "num_heads": 4, "mlp_dim": 192}
MODELS = {
    "demo": PLAIN,
    "tiny": {**PLAIN, "hidden_dim": 64, "depth": 2, "num_heads": 2, "mlp_dim": 128},
}


def pretrain_config(seed: int, epochs: int, learning_rate: float, model: str, output: Path,
                    run: dict | None = None) -> dict:
    """Masked-patch pretraining on all training images (labels ignored, no augmentation)."""
    return {
        "model": dict(MODELS[model]),
        "data": {"source": "digits", "batch_size": 64, "eval_crop_fraction": 1.0},
        "optimization": {"objective": "masked_patches", "mask_ratio": 0.5, "optimizer": "adamw",
                         "learning_rate": learning_rate, "epochs": epochs, "warmup_epochs": 1,
                         "weight_decay": 0.05},
        "run": {"seed": seed, "output": str(output), "verbose": 0, "backup_every": 100_000,
                **(run or {})},
    }


def finetune_config(seed: int, epochs: int, labels_per_class: int, model: str, output: Path,
                    weights: str | None, run: dict | None = None) -> dict:
    """Classification on `labels_per_class` images per digit; `weights`: the pretrained
    encoder, or None for the run from scratch (everything else identical)."""
    return {
        "model": {**MODELS[model], "weights": weights},
        "data": {"source": "digits", "batch_size": 16, "augment": ["translate", "rotate"],
                 "eval_crop_fraction": 1.0, "labels_per_class": labels_per_class},
        "optimization": {"optimizer": "adamw", "learning_rate": 1e-3, "epochs": epochs,
                         "warmup_epochs": 3, "weight_decay": 0.05, "label_smoothing": 0.1},
        "run": {"seed": seed, "output": str(output), "verbose": 0, "backup_every": 100_000,
                **(run or {})},
    }


def compare(seed: int, labels_per_class: int, pretrain_epochs: int, finetune_epochs: int,
            folder: Path, model: str = "demo", pretrain_learning_rate: float = 3e-3,
            run: dict | None = None) -> dict:
    """Pretrain, fine-tune and train from scratch for one seed; returns the figures. `run`:
    extra run-section keys for all three (e.g. jit_compile)."""
    started = time.perf_counter()
    pretrained = train(TrainConfig.from_dict(pretrain_config(
        seed, pretrain_epochs, pretrain_learning_rate, model, folder / "pretrain", run)))
    keras.backend.clear_session()
    encoder = str(folder / "pretrain" / "model.keras")
    tuned = train(TrainConfig.from_dict(finetune_config(
        seed, finetune_epochs, labels_per_class, model, folder / "finetune", encoder, run)))
    keras.backend.clear_session()
    scratch = train(TrainConfig.from_dict(finetune_config(
        seed, finetune_epochs, labels_per_class, model, folder / "scratch", None, run)))
    keras.backend.clear_session()
    return {
        "seed": seed,
        "labels_per_class": labels_per_class,
        "labelled_images": tuned["train_examples"],
        "masked_patch_accuracy": pretrained["test_masked_patch_accuracy"],
        "pretrained": tuned["test_accuracy"],
        "scratch": scratch["test_accuracy"],
        "seconds": time.perf_counter() - started,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels-per-class", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pretrain-epochs", type=int, default=60)
    parser.add_argument("--pretrain-learning-rate", type=float, default=3e-3)
    parser.add_argument("--finetune-epochs", type=int, default=150)
    parser.add_argument("--model", choices=sorted(MODELS), default="demo")
    parser.add_argument("--jit-compile", choices=["auto", "true", "false"], default="auto",
                        help="run.jit_compile of all three runs (auto: no XLA on CPU)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    print(f"CPU: {_cpu_name()}; model {args.model}; digits test split: 20% (360 images); "
          f"pretraining {args.pretrain_epochs} epochs on all training images (lr "
          f"{args.pretrain_learning_rate}), fine-tuning {args.finetune_epochs} epochs on "
          f"{args.labels_per_class} labelled images per class", flush=True)
    results = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as folder:
            result = compare(seed, args.labels_per_class, args.pretrain_epochs,
                             args.finetune_epochs, Path(folder), args.model,
                             args.pretrain_learning_rate, {"jit_compile": jit})
        results.append(result)
        print(f"seed {seed}: {result['labelled_images']} labelled images "
              f"({args.labels_per_class} per class), test accuracy pretrained "
              f"{result['pretrained']:.4f} vs scratch {result['scratch']:.4f} "
              f"(+{result['pretrained'] - result['scratch']:.4f}); masked-patch accuracy "
              f"{result['masked_patch_accuracy']:.4f}; {result['seconds']:.0f} s", flush=True)
    gains = [r["pretrained"] - r["scratch"] for r in results]
    print(f"mean gain over {len(results)} seeds: {sum(gains) / len(gains):+.4f} "
          f"(min {min(gains):+.4f})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
