"""`vit-zoo demo`: the whole path on built-in data, offline, in a few minutes on a laptop CPU.

scikit-learn's handwritten digits (1,797 real 8x8 scans shipped in its wheel) are upscaled to
RGB in [0, 255]; a small hybrid ViT (a ResNet root, then the transformer) learns them from
scratch with the training job of `vit-zoo train` (AdamW without decay on norms and embeddings,
warmup + cosine, label smoothing, MixUp, Keras's augmentation layers in tf.data); the test
accuracy is printed; the model is saved as .keras and exported as a SavedModel in TF Serving's
layout under saved_models/.
"""

from __future__ import annotations

from pathlib import Path

from vit_zoo.train.runner import TrainConfig, train

#: The demo's configuration, in the layout of a `vit-zoo train` YAML file. Chosen by measuring
#: seeds 0-2 (benchmarks/demo_configs.py): a ResNet root in front of the transformer (the
#: hybrid design of AugReg's R+Ti/16, at digit scale) lifts the test accuracy from 98-99.7% (a
#: plain ViT with 4-px patches, 80 epochs) to 99.2-100% in 50 epochs (60 give the same). For the
#: plain ViT, six thin blocks beat four wider ones at the same cost, and MixUp (alpha 0.2) with
#: 80 epochs instead of 40 lifted it from 97-98% to 98-99.7%.
DEMO = {
    # The root (7x7 convolution at stride 2, 3x3 max-pool at stride 2) turns the 16-px image
    # into a 4x4 map of 64 channels; each of its cells is one token (patch 1): 4-px cells, as
    # the plain ViT's 4-px patches, but seen through overlapping convolutions.
    "model": {"variant": "custom", "image_size": 16,
              "shape": {"hidden_dim": 96, "depth": 6, "num_heads": 4, "mlp_dim": 192,
                        "patch_size": 1, "stem_depths": []}},
    # The digits are full-frame scans: evaluate on the whole image (no 87.5% center crop).
    "data": {"source": "digits", "batch_size": 64, "augment": ["translate", "rotate"],
             "mixup_alpha": 0.2, "eval_crop_fraction": 1.0},
    "optimization": {"optimizer": "adamw", "learning_rate": 1e-3, "epochs": 50,
                     "warmup_epochs": 3, "weight_decay": 0.05, "label_smoothing": 0.1},
    # 11 steps per call (half an epoch): the per-step overhead of fit is a sixth of a step of
    # this small model.
    "run": {"output": "runs/demo", "backup_every": 1000, "steps_per_execution": 11},
}


def demo_config(epochs: int | None = None, output: str | None = None, seed: int = 0) -> TrainConfig:
    """The demo's TrainConfig, with the number of epochs, output folder and seed overridable."""
    config = TrainConfig.from_dict(DEMO)
    if epochs is not None:
        config.optimization.epochs = epochs
    if output is not None:
        config.run.output = output
    config.run.seed = seed
    return config


def run(config: TrainConfig, export_to: str | Path | None = "saved_models/digits_vit") -> dict:
    """Train and evaluate; export a SavedModel as the next version under `export_to` and a TFLite
    file (float32, with its agreement on the test images) next to model.keras (None: no export).
    Returns the metrics, with "saved_model", "tflite" and "tflite_report" set by the export."""
    import keras

    from vit_zoo.export import saved_model, tflite

    metrics = train(config)
    if export_to is not None:
        output = Path(config.run.output)
        model = keras.saving.load_model(output / "model.keras")
        labels = [str(digit) for digit in range(10)]
        metrics["saved_model"] = str(saved_model(model, next_version(export_to), labels=labels))
        report = tflite(model, output / "model.tflite", validation_data=digits_test_images(config))
        metrics["tflite"], metrics["tflite_report"] = str(report.path), str(report)
    return metrics


def digits_test_images(config: TrainConfig):
    """The demo's test images (RGB in [0, 255], the model's size), as its evaluation saw them."""
    from vit_zoo.train.data import digit_arrays

    size = config.model.image_size
    return digit_arrays(size, config.data.digits_test_fraction, config.run.seed)[1][0]


def next_version(base: str | Path) -> Path:
    """base/<n + 1> where n is the highest numbered version already there (TF Serving serves the
    highest)."""
    base = Path(base)
    versions = [int(p.name) for p in base.glob("*") if p.is_dir() and p.name.isdigit()]
    return base / str(max(versions, default=0) + 1)
