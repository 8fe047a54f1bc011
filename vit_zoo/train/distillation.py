"""DeiT distillation ("Training data-efficient image transformers", Touvron et al. 2021).

The student is a ViT built with `distillation_token=True`: its class head learns the labels and
its distillation head learns the teacher, either the teacher's hard decision (argmax, DeiT's best
recipe) or its temperature-softened distribution (Hinton et al.). Any Keras model that maps the
same images to class scores can teach.

    student = vit_zoo.ViT("S/16", classes=100, distillation_token=True, classifier_activation=None)
    distiller = Distiller(student, teacher, kind="hard")
    distiller.compile(optimizer=..., metrics=["accuracy"])
    distiller.fit(images_and_one_hot_labels)
    student.save("deit.keras")      # predicts the mean of both heads, as DeiT does at test time
"""

from __future__ import annotations

import keras
from keras import ops

from vit_zoo import structure

KINDS = ("hard", "soft")


@keras.saving.register_keras_serializable(package="vit_zoo")
class Distiller(keras.Model):
    """Trains a DeiT student against labels and a frozen teacher with `fit`.

    Args:
        student: a vit_zoo ViT with `distillation_token=True` (a head of each role, "class"
            and "distillation": vit_zoo.structure.heads).
        teacher: a Keras model on the same inputs; frozen here.
        kind: "hard" (cross-entropy against the teacher's argmax) or "soft" (KL divergence
            against softmax(teacher / temperature), times temperature ** 2).
        alpha: weight of the distillation term; the label term gets 1 - alpha (DeiT: 0.5).
        temperature: softening of both distributions in "soft" distillation (DeiT: 3).
        teacher_outputs: "logits", or "probabilities" when the teacher ends in a softmax.
        label_smoothing: for the label term.

    `fit` takes (images, one-hot labels). Metrics see the student's prediction: the mean of the
    two heads' logits.
    """

    def __init__(self, student: keras.Model, teacher: keras.Model, kind: str = "hard",
                 alpha: float = 0.5, temperature: float = 3.0, teacher_outputs: str = "logits",
                 label_smoothing: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
        if teacher_outputs not in ("logits", "probabilities"):
            raise ValueError("teacher_outputs must be 'logits' or 'probabilities', "
                             f"got {teacher_outputs!r}.")
        heads = structure.heads(student)
        if not {"class", "distillation"} <= set(heads):
            raise ValueError(f"{student.name} has no distillation head; build the student with "
                             "vit_zoo.ViT(..., distillation_token=True).")
        self.student = student
        self.teacher = teacher
        self.teacher.trainable = False
        self.kind, self.alpha, self.temperature = kind, alpha, temperature
        self.teacher_outputs, self.label_smoothing = teacher_outputs, label_smoothing
        # Both heads' logits (before their mean), sharing the student's layers.
        self.heads = keras.Model(
            student.inputs,
            {"class": heads["class"].output, "distillation": heads["distillation"].output},
            name=f"{student.name}_heads",
        )
        # keras.losses.Loss objects: under tf.distribute they divide by the number of replicas,
        # which makes the summed replica gradients those of one device on the global batch.
        self.label_loss = keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing)
        if kind == "hard":
            self.distillation_loss = keras.losses.CategoricalCrossentropy(from_logits=True)
        else:
            self.distillation_loss = keras.losses.KLDivergence()

    def call(self, images, training=False):
        return self.heads(images, training=training)

    def teacher_target(self, images):
        """What the distillation head learns: one-hot argmax (hard) or softened probabilities."""
        scores = ops.cast(self.teacher(images, training=False), "float32")
        logits = ops.log(ops.maximum(scores, 1e-12)) if self.teacher_outputs == "probabilities" \
            else scores
        if self.kind == "hard":
            return ops.one_hot(ops.argmax(logits, axis=-1), ops.shape(logits)[-1])
        return ops.softmax(logits / self.temperature, axis=-1)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        target = ops.stop_gradient(self.teacher_target(x))
        distilled = ops.cast(y_pred["distillation"], "float32")
        if self.kind == "hard":
            distillation = self.distillation_loss(target, distilled, sample_weight)
        else:
            softened = ops.softmax(distilled / self.temperature, axis=-1)
            distillation = self.distillation_loss(target, softened, sample_weight)
            distillation = distillation * self.temperature**2
        labels = self.label_loss(y, ops.cast(y_pred["class"], "float32"), sample_weight)
        total = (1.0 - self.alpha) * labels + self.alpha * distillation
        if self.losses:  # regularization losses of the student, scaled by Keras
            total = total + super().compute_loss(x, y, y_pred, sample_weight, training)
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        mean = (ops.cast(y_pred["class"], "float32")
                + ops.cast(y_pred["distillation"], "float32")) / 2.0
        return super().compute_metrics(x, y, mean, sample_weight)

    def get_config(self):
        return {**super().get_config(),
                "student": keras.saving.serialize_keras_object(self.student),
                "teacher": keras.saving.serialize_keras_object(self.teacher),
                "kind": self.kind, "alpha": self.alpha, "temperature": self.temperature,
                "teacher_outputs": self.teacher_outputs,
                "label_smoothing": self.label_smoothing}

    @classmethod
    def from_config(cls, config):
        config["student"] = keras.saving.deserialize_keras_object(config["student"])
        config["teacher"] = keras.saving.deserialize_keras_object(config["teacher"])
        return cls(**config)
