"""Training losses: CLIP's symmetric contrastive loss, and the model hook that feeds it in `fit`.

    class CLIP(vit_zoo.losses.ContrastiveLossMixin, keras.Model): ...   # call -> (lpi, lpt)
    model.compile(optimizer="adamw", loss=vit_zoo.losses.CLIPLoss())
    model.fit(dataset)   # elements ((images, token_ids),): inputs only, no labels

The loss returns one value per image-text pair, never a pre-reduced scalar: Keras divides a
per-example vector by its length and, under tf.distribute, by the number of replicas. With the
logits gathered over the global batch (ContrastiveLogits) every replica then holds the global
loss divided by the number of replicas, and the summed replica gradients equal the one-device
gradients exactly. A scalar would skip that division (keras.losses.Loss leaves scalars alone)
and make the gradients num_replicas times too large.
"""

from __future__ import annotations

import keras
from keras import ops

# "sum" (and "mean_with_sample_weight") are not divided by the number of replicas by Keras, so
# they would give wrong gradients under tf.distribute; "none" is for inspecting per-pair values.
_REDUCTIONS = ("sum_over_batch_size", "mean", "none", None)


@keras.saving.register_keras_serializable(package="vit_zoo")
class CLIPLoss(keras.losses.Loss):
    """Symmetric contrastive loss of CLIP (open_clip's `ClipLoss`).

    The mean of the cross-entropy over the rows of `logits_per_image` (each image against every
    text) and over the rows of `logits_per_text`, the target of row i being column i.

    Args:
        label_smoothing: weight moved from the matching column to a uniform distribution over the
            row (the convention of `keras.losses.CategoricalCrossentropy` and torch).
        reduction: "sum_over_batch_size" (the mean over pairs, the default), "mean" (the same),
            or "none" (one value per pair).
        name: name of the loss.
        dtype: dtype of the computation; float32 unless the global floatx says otherwise.

    Call with `y_true` ignored (None is fine: pair i matches pair i) and `y_pred` one of:
    the pair `(logits_per_image, logits_per_text)`, each [n, n]; the pair stacked into
    [2, n, n] (what `ContrastiveLossMixin` hands over); or `logits_per_image` alone, [n, n],
    whose transpose is then `logits_per_text`. `sample_weight`, if given, weighs pairs.
    """

    def __init__(
        self,
        label_smoothing: float = 0.0,
        reduction: str | None = "sum_over_batch_size",
        name: str = "clip_loss",
        dtype=None,
    ):
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing}")
        if reduction not in _REDUCTIONS:
            raise ValueError(
                f"CLIPLoss supports reduction in {_REDUCTIONS}; got {reduction!r} (a sum is not "
                "rescaled per replica under tf.distribute)"
            )
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.label_smoothing = float(label_smoothing)

    def __call__(self, y_true, y_pred, sample_weight=None):
        # keras.losses.Loss converts y_true to a tensor, and None does not convert; contrastive
        # training has no labels, so stand in an empty structure.
        return super().__call__((), y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        del y_true  # the target of row i is column i
        if isinstance(y_pred, (tuple, list)):
            logits_per_image, logits_per_text = y_pred
            return 0.5 * (
                self._row_cross_entropy(logits_per_image) + self._row_cross_entropy(logits_per_text)
            )
        if len(y_pred.shape) == 3:
            return ops.mean(self._row_cross_entropy(y_pred), axis=0)
        if len(y_pred.shape) == 2:
            return 0.5 * (
                self._row_cross_entropy(y_pred) + self._row_cross_entropy(ops.transpose(y_pred))
            )
        raise ValueError(
            "CLIPLoss expects (logits_per_image, logits_per_text), their stack [2, n, n] or "
            f"logits_per_image [n, n]; got a tensor of shape {y_pred.shape}"
        )

    def _row_cross_entropy(self, logits):
        """[..., n, n] logits -> [..., n] cross-entropy of each row against its diagonal entry."""
        rows, columns = logits.shape[-2:]
        if rows is not None and columns is not None and rows != columns:
            # Pair i is row i and column i: with more texts than images there is no such pairing.
            raise ValueError(f"CLIPLoss needs square logits (n pairs); got {rows}x{columns}")
        log_probs = ops.log_softmax(logits, axis=-1)
        matching = ops.diagonal(log_probs, axis1=-2, axis2=-1)
        if not self.label_smoothing:
            return -matching
        # Smoothed target: (1 - s) on the match plus s / n on every column of the row.
        return -(1.0 - self.label_smoothing) * matching - self.label_smoothing * ops.mean(
            log_probs, axis=-1
        )

    def get_config(self) -> dict:
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


class ContrastiveLossMixin:
    """Lets `fit` / `evaluate` train a model whose call returns (logits_per_image,
    logits_per_text) with `compile(loss=CLIPLoss())` and a dataset of inputs only.

    Put it before `keras.Model` in the bases: `class CLIP(ContrastiveLossMixin, keras.Model)`.
    Stock Keras pairs a compiled loss with each output and its label, and with two outputs and
    no labels it fails (KeyError on the loss path); this hands the compiled `CLIPLoss` the pair
    as one [2, n, n] tensor instead, and leaves everything else (loss tracking, regularization
    losses, their per-replica scaling) to Keras. Any other compiled loss sees the outputs as
    stock Keras gives them.
    """

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Keras's `Model.compute_loss`, with the logit pair packed for `CLIPLoss`."""
        if isinstance(getattr(self, "loss", None), CLIPLoss) and isinstance(y_pred, (tuple, list)):
            if sample_weight is not None:
                # Under a strategy each replica holds the weights of its own slice only, while the
                # loss has one value per pair of the global batch.
                raise ValueError("CLIPLoss in fit() takes no sample_weight")
            y_pred = ops.stack(y_pred)
        return super().compute_loss(
            x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=training
        )
