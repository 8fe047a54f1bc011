"""The evaluation transform a checkpoint was scored with: resize, center crop, interpolation.

It travels with the weights like the numerics do (timm keeps it as `crop_pct` and
`interpolation` in each pretrained config): the same ViT-B/16 architecture is evaluated with a
squashed whole image by Google's JAX pipeline and with a 90% center crop, bicubic, by timm.
The training job's evaluation and the exported SavedModel's image-bytes signature both apply it
with `apply_eval_transform`, so a served model sees what the model saw at evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras

INTERPOLATIONS = ("bilinear", "bicubic", "nearest", "area")


@dataclass(frozen=True)
class EvalTransform:
    """How an image of any size becomes a model input of size (height, width).

    crop_fraction: the center crop covers this fraction of the (aspect-corrected) image; the
        image is first resized to size / crop_fraction, as timm's `crop_pct` does.
    interpolation: resampling of the resize ("bilinear", "bicubic", "nearest", "area").
    keep_aspect: True: center-crop the image to the model's aspect ratio before resizing (the
        shorter side decides, as timm and CLIP do); False: squash the whole image to the model's
        aspect ratio (Google's JAX evaluation of its ViT, Mixer and hybrid releases).
    antialias: filter when downsampling (as PIL's resize does, which timm and CLIP use).
    """

    crop_fraction: float = 1.0
    interpolation: str = "bilinear"
    keep_aspect: bool = True
    antialias: bool = True

    def __post_init__(self):
        if not 0.0 < self.crop_fraction <= 1.0:
            raise ValueError(f"crop_fraction must be in (0, 1], got {self.crop_fraction}.")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, "
                             f"got {self.interpolation!r}.")


#: What to use when nothing is known about the weights: the whole image, bilinear.
WHOLE_IMAGE = EvalTransform()


def for_record(record) -> EvalTransform:
    """The evaluation transform of a registered checkpoint (a vit_zoo.weights.WeightsRecord).

    Google's own .npz releases are scored on the whole image squashed to the input size,
    bilinear (google-research/vision_transformer's input pipeline). Files trained or fine-tuned
    with timm carry timm's pretrained config: bicubic, crop 0.9 at 224 px and below (0.875 for
    the Mixers), the whole image at higher resolutions, or the crop its record states; OpenAI
    CLIP resizes the shorter side bicubic and center-crops (crop 1.0).
    """
    if record is None:
        return WHOLE_IMAGE
    if record.layout == "google_npz":
        return EvalTransform(1.0, "bilinear", keep_aspect=False)
    if record.family == "clip":
        return EvalTransform(1.0, "bicubic")
    if record.crop is not None:
        return EvalTransform(record.crop, "bicubic")
    if record.resolution > 224:
        return EvalTransform(1.0, "bicubic")
    return EvalTransform(0.875 if record.family == "mixer" else 0.9, "bicubic")


def eval_transform_of(model: keras.Model) -> EvalTransform:
    """The transform recorded when the model's weights were loaded from a registered checkpoint
    (`model.eval_transform`, or its image tower's for CLIP), else the whole image resized
    bilinear."""
    for candidate in (model, getattr(model, "image_encoder", None)):
        transform = getattr(candidate, "eval_transform", None)
        if transform is not None:
            return transform
    return WHOLE_IMAGE


def apply_eval_transform(image, size: tuple[int, int], transform: EvalTransform = WHOLE_IMAGE):
    """One image (H, W, 3) or a batch of same-size images (N, H, W, 3), float, any size ->
    the model's input size `(height, width)`. keras.ops only: runs in tf.data and in graphs."""
    height, width = size
    fraction = transform.crop_fraction
    resized = (int(round(height / fraction)), int(round(width / fraction)))
    image = keras.ops.image.resize(
        image, resized, transform.interpolation, antialias=transform.antialias,
        crop_to_aspect_ratio=transform.keep_aspect,
    )
    if resized != (height, width):
        top, left = (resized[0] - height) // 2, (resized[1] - width) // 2
        image = image[..., top:top + height, left:left + width, :]
    if transform.interpolation == "bicubic":  # overshoots; PIL's uint8 result is clipped
        image = keras.ops.clip(image, 0.0, 255.0)
    return image
