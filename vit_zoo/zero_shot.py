"""Zero-shot classification with a CLIP model: class embeddings from prompts, then cosine scores.

    model = vit_zoo.CLIP_ViT_B32(weights="openai")
    classifier = vit_zoo.zero_shot.zero_shot_classifier(model, ["cat", "dog"], ["a photo of a {}."])
    probabilities = vit_zoo.zero_shot.zero_shot_predict(model, classifier, images)

`imagenet_classnames()` and `imagenet_templates()` are OpenAI's lists for ImageNet (shipped as
package data), so `zero_shot_classifier(model, imagenet_classnames(), imagenet_templates())`
reproduces CLIP's ImageNet zero-shot head.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources

import keras
import numpy as np
from keras import ops

from vit_zoo.text import CLIPTokenizer


def _data_lines(name: str) -> list[str]:
    text = (resources.files("vit_zoo") / "data" / name).read_text(encoding="utf-8")
    return [line for line in text.split("\n") if line]


def imagenet_classnames() -> list[str]:
    """OpenAI's 1,000 ImageNet class names for CLIP prompts, in the standard index order."""
    return _data_lines("clip_imagenet_classnames.txt")


def imagenet_templates() -> list[str]:
    """OpenAI's 80 ImageNet prompt templates, each with one "{}" for the class name."""
    return _data_lines("clip_imagenet_templates.txt")


def zero_shot_classifier(
    model,
    classnames: Sequence[str],
    templates: Sequence[str] = ("a photo of a {}.",),
    tokenizer: CLIPTokenizer | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Class weights (embed_dim, num_classes): for each class, the mean of its prompts' L2-
    normalized text embeddings, normalized again (CLIP's prompt ensembling).

    `model` is a CLIPModel (its `text_encoder` is used) or a text tower alone.
    """
    if not classnames:
        raise ValueError("zero_shot_classifier needs at least one class name.")
    if not templates or any(t.count("{}") != 1 for t in templates):
        raise ValueError(
            "Each template needs exactly one '{}' where the class name goes, e.g. "
            f"'a photo of a {{}}.'; got {list(templates)[:3]}..."
        )
    text_encoder = getattr(model, "text_encoder", model)
    context_length = text_encoder.input_shape[-1]
    tokenizer = tokenizer or CLIPTokenizer(context_length=context_length)
    prompts = [template.format(name) for name in classnames for template in templates]
    token_ids = tokenizer(prompts, context_length=context_length)
    embeddings = np.concatenate(
        [
            keras.ops.convert_to_numpy(text_encoder(token_ids[i : i + batch_size], training=False))
            for i in range(0, len(prompts), batch_size)
        ]
    ).astype("float64")
    embeddings = _normalize(embeddings).reshape(len(classnames), len(templates), -1)
    return _normalize(embeddings.mean(axis=1)).T.astype("float32")


def zero_shot_predict(model, classifier: np.ndarray, images, batch_size: int = 32) -> np.ndarray:
    """Class probabilities (N, num_classes) of RGB images in [0, 255]: softmax over
    exp(logit_scale) * cosine(image, class)."""
    image_encoder = getattr(model, "image_encoder", model)
    # A CLIPModel's own temperature; a bare image tower gets OpenAI's trained value, 100.
    scale = (
        np.exp(ops.convert_to_numpy(model.logit_scale)) if hasattr(model, "logit_scale") else 100.0
    )
    features = np.concatenate(
        [
            keras.ops.convert_to_numpy(image_encoder(images[i : i + batch_size], training=False))
            for i in range(0, len(images), batch_size)
        ]
    )
    logits = scale * _normalize(features.astype("float64")) @ classifier.astype("float64")
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    return (probabilities / probabilities.sum(axis=1, keepdims=True)).astype("float32")


def _normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
