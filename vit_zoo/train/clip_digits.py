"""Contrastive training of a small CLIP on scikit-learn's digits with captions, offline: one
config of the training job (`vit-zoo train --config` with these sections does the same).

Each digit image (8x8 scans shipped in scikit-learn, upscaled to RGB in [0, 255]) is paired with
a caption from training templates ("a photo of the number seven"), drawn per example and epoch;
the captions are tokenized inside tf.data by the in-graph CLIPTokenizer, and `model.fit`
minimizes CLIPLoss (vit_zoo.train.captions, vit_zoo.train.tasks). The test is zero-shot: the
held-out digits are classified by prompts written with templates the model never saw in
training, so the score measures what the text tower learned about the number words, not a
memorized caption.

    from vit_zoo.train.clip_digits import clip_digits_config
    from vit_zoo.train.runner import train
    metrics = train(clip_digits_config(epochs=12))   # metrics["test_zero_shot_accuracy"]
"""

from __future__ import annotations

from vit_zoo.train.captions import NUMBER_WORDS, TEST_TEMPLATES, TRAIN_TEMPLATES
from vit_zoo.train.runner import TrainConfig

__all__ = ["CLIP_DIGITS", "NUMBER_WORDS", "TEST_TEMPLATES", "TRAIN_TEMPLATES",
           "clip_digits_config"]

#: A CLIP with a 2-block ViT image tower (16 px digits, 4 px patches) and a 2-block text tower
#: over the full CLIP vocabulary, in the layout of a `vit-zoo train` YAML file.
CLIP_DIGITS = {
    "model": {"family": "clip", "image_size": 16, "context_length": 16,
              "shape": {"image": {"hidden_dim": 64, "depth": 2, "num_heads": 2, "mlp_dim": 128,
                                  "patch_size": 4},
                        "resolution": 16, "embed_dim": 64, "text_width": 64, "text_heads": 2,
                        "text_depth": 2}},
    # Full-frame scans: no center crop.
    "data": {"source": "digits-captions", "batch_size": 64, "eval_crop_fraction": 1.0},
    "optimization": {"objective": "contrastive", "learning_rate": 2e-3, "epochs": 40,
                     "warmup_epochs": 4, "weight_decay": 0.05, "clip_norm": None},
    "run": {"output": "runs/clip_digits", "backup_every": 1000},
}


def clip_digits_config(epochs: int | None = None, output: str | None = None,
                       seed: int = 0) -> TrainConfig:
    """CLIP_DIGITS as a TrainConfig, with the epochs (warmup a tenth of them), output folder
    and seed overridable."""
    config = TrainConfig.from_dict(CLIP_DIGITS)
    if epochs is not None:
        config.optimization.epochs = epochs
        config.optimization.warmup_epochs = max(epochs / 10, 0.1)
    if output is not None:
        config.run.output = output
    config.run.seed = seed
    return config
