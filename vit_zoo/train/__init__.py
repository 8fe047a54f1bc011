"""Training: strategies, input pipelines, optimizers and schedules, distillation, fault
tolerance, masked-patch self-supervision and the `vit-zoo train` job. The optimizers, schedules,
the Distiller and MaskedPatchPrediction are Keras only; the rest uses TensorFlow (tf.data,
tf.distribute)."""

from vit_zoo.train.distillation import Distiller
from vit_zoo.train.masked_patches import MaskedPatchPrediction
from vit_zoo.train.optimizers import (
    ParameterGroupAdamW,
    ParameterGroupSGD,
    WarmupDecay,
    build_optimizer,
)

__all__ = ["KINDS", "Distiller", "MaskedPatchPrediction", "ParameterGroupAdamW",
           "ParameterGroupSGD", "WarmupDecay", "build_optimizer", "strategy"]


def __getattr__(name: str):
    # The strategy helper imports TensorFlow: only when asked for, so that `import vit_zoo`
    # works under KERAS_BACKEND=jax on machines without TensorFlow.
    if name in ("strategy", "KINDS"):
        from vit_zoo.train import strategies

        return getattr(strategies, name)
    raise AttributeError(f"module 'vit_zoo.train' has no attribute {name!r}")
