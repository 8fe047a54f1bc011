"""Optimizers and schedules for training any family, as the papers run them.

- Decoupled weight decay that skips what should not shrink: every variable of rank <= 1 (biases,
  norm scales and offsets, LayerScale) and what the model's layers declare (class tokens, ViT
  position embeddings, Swin's relative-position tables), the rules timm and open_clip apply.
  The head can have its own, heavier decay ("Scaling Vision Transformers" decays the head far
  more than the body).
- Layer-wise learning-rate decay (BEiT): block i of n learns at `decay ** (n + 1 - (i + 1))` times
  the base rate, the embeddings at `decay ** (n + 1)`, the final norm and head at the full rate;
  the blocks are the layers that declare themselves blocks (vit_zoo.structure).
- Warmup then cosine or linear decay; global-norm clipping of the batch gradient (also under
  tf.distribute, where Keras's `global_clipnorm` would clip each replica's share); gradient
  accumulation through Keras's `gradient_accumulation_steps` (one device).

Keras optimizers take one weight decay and one learning rate for all variables; the per-variable
values here are applied in `update_step`, the override point Keras documents for custom
optimizers, so every backend and distribution strategy sees the same arithmetic.
"""

from __future__ import annotations

import math

import keras
from keras import ops

from vit_zoo import structure


def weight_decay_per_variable(
    model: keras.Model, weight_decay: float, head_weight_decay: float | None = None
) -> dict[str, float]:
    """{variable path: decoupled weight decay} for every trainable variable of `model`: none for
    what its layers declare never decayed (vit_zoo.structure.never_decayed), `head_weight_decay`
    for the kernels of its classification heads, `weight_decay` for the rest."""
    exempt = structure.never_decayed(model)
    head_variables = {variable.path for head in structure.heads(model).values()
                      for variable in head.trainable_variables}
    decays = {}
    for variable in model.trainable_variables:
        if variable.path in exempt:
            decays[variable.path] = 0.0
        elif variable.path in head_variables and head_weight_decay is not None:
            decays[variable.path] = head_weight_decay
        else:
            decays[variable.path] = weight_decay
    return decays


def layer_decay_per_variable(model: keras.Model, layer_decay: float) -> dict[str, float]:
    """{variable path: learning-rate multiplier} for layer-wise learning-rate decay: a variable
    with layer id i among `depth` blocks learns at `layer_decay ** (depth + 1 - i)` times the
    base rate (ids as vit_zoo.structure.layer_ids gives them; variables outside any group of
    blocks, e.g. CLIP's temperature, at the full rate)."""
    ids = structure.layer_ids(model)
    if not ids:
        raise ValueError(
            f"Layer-wise learning-rate decay needs blocks (layers declaring is_block, such as "
            f"vit_zoo's EncoderBlock, SwinBlock or MixerBlock), and {model.name} has none. "
            "Use layer_decay=None (or 1.0)."
        )
    multipliers = {}
    for variable in model.trainable_variables:
        layer_id, depth = ids.get(variable.path, (1, 0))
        multipliers[variable.path] = layer_decay ** (depth + 1 - layer_id)
    return multipliers


class _PerVariable:
    """Mixin: per-variable learning-rate multipliers and decoupled weight decay.

    Decay is applied as `w -= lr * multiplier * decay * w` before the optimizer's own step, the
    convention of Keras's and PyTorch's AdamW. Variables missing from the dicts get multiplier 1
    and no decay.
    """

    def __init__(self, *args, lr_multipliers=None, weight_decays=None, clip_norm=None,
                 **kwargs):
        if kwargs.get("weight_decay"):
            raise ValueError("Pass per-variable decay through weight_decays=, not weight_decay=.")
        super().__init__(*args, **kwargs)
        self.lr_multipliers = dict(lr_multipliers or {})
        self.weight_decays = dict(weight_decays or {})
        self.clip_norm = clip_norm

    def apply(self, grads, trainable_variables=None):
        if self.clip_norm is not None:
            grads = _clip_by_global_norm(list(grads), self.clip_norm)
        return super().apply(grads, trainable_variables)

    def build(self, variables):
        super().build(variables)
        self._multiplier = [float(self.lr_multipliers.get(v.path, 1.0)) for v in variables]
        self._decay = [float(self.weight_decays.get(v.path, 0.0)) for v in variables]

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        if self._multiplier[index] != 1.0:
            learning_rate = learning_rate * self._multiplier[index]
        if self._decay[index]:
            rate = ops.cast(learning_rate * self._decay[index], variable.dtype)
            variable.assign(variable - variable * rate)
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "lr_multipliers": self.lr_multipliers,
                "weight_decays": self.weight_decays, "clip_norm": self.clip_norm}


def _clip_by_global_norm(grads: list, clip_norm: float) -> list:
    """Scale the gradients so that the global norm of the *summed* replica gradients is at most
    clip_norm. Keras's `global_clipnorm` clips each replica's partial gradient before the
    all-reduce, which under tf.distribute is not the clipping of the batch gradient. The factor
    needs the norm of the sum, hence one all-reduce of the gradients here; the factor is the same
    on every replica and the sum is linear, so scaling the partial gradients clips the sum."""
    summed = grads
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        context = tf.distribute.get_replica_context()
        if context is not None and context.num_replicas_in_sync > 1:
            summed = context.all_reduce(tf.distribute.ReduceOp.SUM, grads)
    squares = [ops.sum(ops.square(ops.cast(g, "float32"))) for g in summed if g is not None]
    norm = ops.sqrt(ops.sum(ops.stack(squares)))
    factor = ops.minimum(1.0, clip_norm / ops.maximum(norm, 1e-12))
    return [None if g is None else g * ops.cast(factor, g.dtype) for g in grads]


@keras.saving.register_keras_serializable(package="vit_zoo")
class ParameterGroupAdamW(_PerVariable, keras.optimizers.Adam):
    """Adam with decoupled, per-variable weight decay and learning-rate multipliers."""


@keras.saving.register_keras_serializable(package="vit_zoo")
class ParameterGroupSGD(_PerVariable, keras.optimizers.SGD):
    """SGD (with momentum) with decoupled, per-variable weight decay and learning-rate
    multipliers."""


@keras.saving.register_keras_serializable(package="vit_zoo")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup from 0 to `peak` over `warmup_steps`, then cosine or linear decay to `end`
    at `total_steps` (held there after). Keras's CosineDecay has a warmup but no linear decay."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0,
                 decay: str = "cosine", end: float = 0.0):
        if decay not in ("cosine", "linear"):
            raise ValueError(f"decay must be 'cosine' or 'linear', got {decay!r}.")
        if not 0 <= warmup_steps < total_steps:
            raise ValueError(f"Need 0 <= warmup_steps < total_steps, got warmup_steps="
                             f"{warmup_steps}, total_steps={total_steps}.")
        self.peak, self.total_steps, self.warmup_steps = peak, total_steps, warmup_steps
        self.decay, self.end = decay, end

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = self.peak * step / max(self.warmup_steps, 1)
        progress = ops.clip((step - self.warmup_steps) / (self.total_steps - self.warmup_steps),
                            0.0, 1.0)
        if self.decay == "cosine":
            shape = 0.5 * (1.0 + ops.cos(math.pi * progress))
        else:
            shape = 1.0 - progress
        decayed = self.end + (self.peak - self.end) * shape
        return ops.where(step < self.warmup_steps, warmup, decayed)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "decay": self.decay, "end": self.end}


def build_optimizer(
    model: keras.Model,
    name: str = "adamw",
    learning_rate: float | keras.optimizers.schedules.LearningRateSchedule = 1e-3,
    weight_decay: float = 0.05,
    head_weight_decay: float | None = None,
    layer_decay: float | None = None,
    momentum: float = 0.9,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    clip_norm: float | None = 1.0,
    accumulation_steps: int = 1,
) -> keras.optimizers.Optimizer:
    """The optimizer for `model`: "adamw" (pre-training, and most fine-tuning) or "sgd" (SGD with
    momentum, the ViT paper's fine-tuning), with the decay rules of this module.

    Args:
        learning_rate: a number or a schedule (e.g. WarmupDecay).
        weight_decay: decoupled decay of the weight matrices (norms, biases, embeddings skip it).
        head_weight_decay: decay of the head (default: weight_decay).
        layer_decay: layer-wise learning-rate decay factor (e.g. 0.75), or None.
        clip_norm: clip the global gradient norm (ViT clips at 1), or None.
        accumulation_steps: average the gradients of this many batches per update.
    """
    common = {
        "learning_rate": learning_rate,
        "weight_decays": weight_decay_per_variable(model, weight_decay, head_weight_decay),
        "lr_multipliers": layer_decay_per_variable(model, layer_decay)
        if layer_decay not in (None, 1.0) else None,
        # Accumulation (one device only) clips the accumulated gradient with Keras's own
        # clipping; otherwise the clipping above, right under tf.distribute as well.
        "global_clipnorm": clip_norm if accumulation_steps > 1 else None,
        "clip_norm": None if accumulation_steps > 1 else clip_norm,
        "gradient_accumulation_steps": accumulation_steps if accumulation_steps > 1 else None,
    }
    if name == "adamw":
        return ParameterGroupAdamW(beta_1=beta_1, beta_2=beta_2, **common)
    if name == "sgd":
        return ParameterGroupSGD(momentum=momentum, **common)
    raise ValueError(f"optimizer must be 'adamw' or 'sgd', got {name!r}.")
