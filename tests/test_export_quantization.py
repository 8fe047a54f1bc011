"""Quantized TFLite files of models trained on real images (the digits) agree with float32:
float16 and dynamic_int8 on >= 99% of the test images' top-1 classes, full int8 on >= 97%."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import vit_zoo
import vit_zoo.export as export
from vit_zoo.export.tflite_export import interpreter, run_signature
from vit_zoo.models.swin import SwinArch
from vit_zoo.train.data import digit_arrays

BARS = {"float16": 0.99, "dynamic_int8": 0.99, "int8": 0.97}


def _agreements(model, folder, train_images, test_images) -> dict[str, tuple[float, int]]:
    """quantization -> (top-1 agreement with the float32 file, size in bytes)."""
    reference = export.tflite(model, folder / "float32.tflite")
    float32 = run_signature(interpreter(reference.path), "serving_default", test_images)
    results = {None: (1.0, reference.size_bytes)}
    for quantize in BARS:
        report = export.tflite(model, folder / f"{quantize}.tflite", quantize=quantize,
                               representative_data=train_images[:200])
        scores = run_signature(interpreter(report.path), "serving_default", test_images)
        agreement = np.mean(scores["output_0"].argmax(-1) == float32["output_0"].argmax(-1))
        results[quantize] = (float(agreement), report.size_bytes)
    for quantize, (agreement, size) in results.items():
        print(f"{model.name} {quantize or 'float32'}: agreement {agreement:.4f}, "
              f"size {size / reference.size_bytes:.2f}x of float32")
    return results


def _assert_bars(results):
    for quantize, bar in BARS.items():
        assert results[quantize][0] >= bar, (quantize, results)
    assert results["float16"][1] < 0.6 * results[None][1]
    assert results["dynamic_int8"][1] < 0.4 * results[None][1]


@pytest.mark.slow
def test_demo_model_quantizes(demo_run, tmp_path):
    folder = demo_run[0]
    model = keras.saving.load_model(folder / "runs" / "demo" / "model.keras")
    (train_images, _), (test_images, _) = digit_arrays(16, 0.2, 0)
    _assert_bars(_agreements(model, tmp_path, train_images, test_images))


@pytest.mark.slow
def test_swin_trained_on_digits_quantizes(tmp_path):
    (train_images, train_labels), (test_images, test_labels) = digit_arrays(32, 0.2, 0)
    keras.utils.set_random_seed(0)
    model = vit_zoo.Swin(SwinArch("digits", 48, (2, 2), (3, 6)), input_shape=(32, 32, 3),
                         classes=10, window_size=4, classifier_activation=None)
    model.compile(keras.optimizers.AdamW(2e-3, weight_decay=0.05),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(train_images, train_labels, batch_size=64, epochs=8, verbose=0)
    accuracy = model.evaluate(test_images, test_labels, verbose=0)[1]
    assert accuracy >= 0.85  # a trained model, whose decisions quantization could flip
    _assert_bars(_agreements(model, tmp_path, train_images, test_images))
