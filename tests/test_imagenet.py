"""preprocess_input and decode_predictions."""

import numpy as np
import pytest

import vit_zoo
from vit_zoo import numerics as nm


def test_preprocess_modes():
    x = np.array([[0.0, 127.5, 255.0]], "float32")
    np.testing.assert_allclose(vit_zoo.preprocess_input(x, "inception"), [[-1.0, 0.0, 1.0]])
    expected = (x / 255.0 - np.array(nm.IMAGENET_MEAN)) / np.array(nm.IMAGENET_STD)
    np.testing.assert_allclose(vit_zoo.preprocess_input(x, "imagenet"), expected, rtol=1e-6)
    np.testing.assert_allclose(vit_zoo.preprocess_input(x, nm.OPENAI_CLIP),
                               vit_zoo.preprocess_input(x, "clip"))
    with pytest.raises(ValueError, match="Unknown mode"):
        vit_zoo.preprocess_input(x, "caffe")


def test_decode_imagenet_1k_names_and_order():
    preds = np.zeros((2, 1000), "float32")
    preds[0, [1, 2, 0]] = [0.7, 0.2, 0.1]
    preds[1, 999] = 1.0
    first, second = vit_zoo.decode_predictions(preds, top=3)
    # Index order of the ILSVRC-2012 classes, as keras.applications names them.
    assert first == [("n01443537", "goldfish", pytest.approx(0.7)),
                     ("n01484850", "great_white_shark", pytest.approx(0.2)),
                     ("n01440764", "tench", pytest.approx(0.1))]
    assert second[0][:2] == ("n15075141", "toilet_tissue")


def test_decode_imagenet_21k():
    preds = np.zeros((1, 21843), "float32")
    preds[0, 0] = 1.0
    assert vit_zoo.decode_predictions(preds, top=1)[0][0][:2] == ("n00004475", "organism")


def test_label_names_for_imagenet_heads_only():
    from vit_zoo.imagenet import class_names, label_names

    assert label_names(1000) == [name for _, name in class_names(1000)]
    assert len(label_names(21843)) == 21843
    assert label_names(10) is None
