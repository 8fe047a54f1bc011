"""The model code is backend-agnostic: the same parity under KERAS_BACKEND=jax."""

import pytest

from tests.helpers import run_python

pytest.importorskip("jax")

_SCRIPT = """
import sys
import numpy as np
import keras
import vit_zoo

assert keras.backend.backend() == "jax", keras.backend.backend()
reference, name, variant, dynamic = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
images = np.load(f"{reference}/{name}.images.npy")
expected = np.load(f"{reference}/{name}.logits.npy")
shape = (None, None, 3) if dynamic else images.shape[1:]
model = vit_zoo.ViT(variant, weights=f"{reference}/{name}.npz", input_shape=shape,
                    classifier_activation=None)
logits = np.asarray(model.predict(images, verbose=0), "float64")
error = np.max(np.abs(logits - expected)) / np.max(np.abs(expected))
assert "tensorflow" not in sys.modules, "model code imported TensorFlow"
print(f"relative error {error:.3g}")
assert error <= 1e-4, error
"""


@pytest.mark.parametrize("name, variant, dynamic",
                         [("ti16_npz", "Ti/16", False), ("b16_npz_at384", "B/16", True)])
def test_parity_under_jax(vit_reference, name, variant, dynamic):
    output = run_python(["-c", _SCRIPT, str(vit_reference), name, variant, str(int(dynamic))],
                        env={"KERAS_BACKEND": "jax"})
    assert "relative error" in output
