"""The classification head, a Dense layer that says which target it classifies for."""

from __future__ import annotations

import keras

ROLES = ("class", "distillation")


@keras.saving.register_keras_serializable(package="vit_zoo")
class ClassifierHead(keras.layers.Dense):
    """keras.layers.Dense with a `head_role`: "class" (the labels) or "distillation" (DeiT's
    head on the distillation token, which learns the teacher). Training code finds heads by
    role (vit_zoo.structure.heads), not by layer name.

    Zero-initialized, as upstream fine-tuning starts a head, and float32 by default even under
    a mixed-precision policy: a softmax over many classes wants the range.
    """

    def __init__(self, units: int, role: str = "class", **kwargs):
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {role!r}.")
        kwargs.setdefault("kernel_initializer", "zeros")
        kwargs.setdefault("dtype", "float32")
        super().__init__(units, **kwargs)
        self.head_role = role

    def get_config(self):
        return {**super().get_config(), "role": self.head_role}
