"""ViT parity with timm beyond the logits of each case (those: tests/test_families.py): any-size
models resampling in the graph, pre-logits loaded."""

import numpy as np
import pytest

import vit_zoo
from tests.helpers import relative_error
from tests.parity_cases import VIT_CASES

TOLERANCE = 1e-4


def _files(reference, name):
    spec = VIT_CASES[name]
    suffix = "npz" if spec["format"] == "npz" else "safetensors"
    return (
        reference / f"{name}.{suffix}",
        np.load(reference / f"{name}.images.npy"),
        np.load(reference / f"{name}.logits.npy"),
    )


@pytest.mark.parametrize("name", ["b16_npz_at384", "ti16_npz_nonsquare"])
def test_dynamic_size_model_resamples_in_graph_like_upstream(vit_reference, name):
    """Built for any size, the model keeps the 224 px grid and resamples it per input size."""
    spec = VIT_CASES[name]
    weights, images, expected = _files(vit_reference, name)
    model = vit_zoo.ViT(
        spec["variant"], weights=weights, input_shape=(None, None, 3), classifier_activation=None
    )
    assert model.get_layer("pos_embed").grid_size == (14, 14)
    assert relative_error(model.predict(images, verbose=0), expected) <= TOLERANCE


def test_pre_logits_are_loaded(vit_reference):
    weights, _, _ = _files(vit_reference, "ti16_npz_prelogits")
    model = vit_zoo.ViT("Ti/16", weights=weights)
    layer = model.get_layer("pre_logits")
    assert layer.activation.__name__ == "tanh"
    stored = np.load(weights)["pre_logits/kernel"]
    np.testing.assert_array_equal(layer.kernel.numpy(), stored)
    assert model.output_shape == (None, 21843)
