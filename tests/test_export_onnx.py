"""ONNX export: each family converts and agrees with Keras; refusals and failures leave no file."""

import sys

import keras
import numpy as np
import pytest

pytest.importorskip("tf2onnx")
pytest.importorskip("onnxruntime")

import vit_zoo  # noqa: E402
from tests.export_cases import (  # noqa: E402
    TEXT_CONTEXT,
    TINY_CLIP,
    TINY_HYBRID,
    TINY_MIXER,
    TINY_SWIN,
    TINY_VIT,
)
from tests.helpers import randomize, relative_error  # noqa: E402
from vit_zoo.export.onnx_export import (  # noqa: E402
    OnnxConversionError,
    onnx,
    onnx_input_size,
    run_onnx,
)
from vit_zoo.numerics import TIMM_VIT  # noqa: E402

TOLERANCE = 1e-4

# Heads give logits (a softmax would hide errors); 40 px Swin: a 10x10 first stage, padded to
# two 7x7 windows a side and shifted; DeiT with timm numerics exercises exact GELU (Erfc).
CASES = {
    "vit": lambda: vit_zoo.ViT(TINY_VIT, input_shape=(32, 32, 3), classes=10,
                               classifier_activation=None),
    "deit_exact_gelu": lambda: vit_zoo.ViT(TINY_VIT, input_shape=(32, 32, 3), classes=10,
                                           distillation_token=True, numerics=TIMM_VIT,
                                           classifier_activation=None),
    "hybrid": lambda: vit_zoo.ViT(TINY_HYBRID, input_shape=(32, 32, 3), classes=10,
                                  classifier_activation=None),
    "mixer": lambda: vit_zoo.Mixer(TINY_MIXER, input_shape=(32, 32, 3), classes=10,
                                   classifier_activation=None),
    "swin": lambda: vit_zoo.Swin(TINY_SWIN, input_shape=(40, 40, 3), classes=10, window_size=7,
                                 classifier_activation=None),
    "vit_tokens": lambda: vit_zoo.ViT(TINY_VIT, include_top=False, input_shape=(32, 32, 3)),
    "swin_stages": lambda: vit_zoo.Swin(TINY_SWIN, include_top=False, input_shape=(40, 40, 3),
                                        window_size=7),
    "clip_image": lambda: vit_zoo.CLIPImageEncoder(TINY_CLIP),
    "clip_text": lambda: vit_zoo.CLIPTextEncoder(TINY_CLIP, context_length=TEXT_CONTEXT),
}


def _inputs(model, count: int = 3) -> np.ndarray:
    rng = np.random.default_rng(1)
    if model.inputs[0].dtype == "int32":
        return rng.integers(0, 49408, (count, model.input_shape[1])).astype("int32")
    return rng.uniform(0, 255, (count, *model.input_shape[1:])).astype("float32")


def _tiny_vit():
    return randomize(CASES["vit"](), scale=0.05, gamma_center=1.0)


@pytest.mark.parametrize("name", list(CASES))
def test_family_converts_and_matches_keras(tmp_path, name):
    model = randomize(CASES[name](), scale=0.05, gamma_center=1.0)
    inputs = _inputs(model)
    path = tmp_path / f"{name}.onnx"
    report = onnx(model, path, validation_data=inputs)
    print(report)
    assert report.max_relative_error <= TOLERANCE and report.examples == len(inputs)
    assert report.inputs == ["token_ids" if name == "clip_text" else "images"]
    assert report.outputs == [f"output_{i}" for i in range(len(model.outputs))]
    assert report.size_bytes == path.stat().st_size and f"opset {report.opset}" in str(report)
    expected = model.predict(inputs, verbose=0)
    expected = expected[0] if isinstance(expected, list) else expected
    assert relative_error(run_onnx(path, inputs), expected) <= TOLERANCE
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left
    if name == "clip_text":
        with pytest.raises(ValueError, match="token_ids"):
            onnx_input_size(path)


def test_fixed_batch_size_and_opset(tmp_path):
    model = _tiny_vit()
    inputs = _inputs(model, count=3)
    report = onnx(model, tmp_path / "vit.onnx", opset=17, batch_size=2, validation_data=inputs)
    assert report.opset == 17
    assert report.max_relative_error <= TOLERANCE  # slices of 2, the last one padded
    assert run_onnx(tmp_path / "vit.onnx", inputs).shape == (3, 10)
    assert onnx_input_size(tmp_path / "vit.onnx") == (32, 32)


def test_unconvertible_op_is_named_and_leaves_the_old_file(tmp_path):
    images = keras.Input((8, 8, 3), name="images")
    model = keras.Model(images, keras.layers.Lambda(
        lambda x: keras.ops.erfinv(x / 255.0 * 1.8 - 0.9))(images), name="erfinv_model")
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous")
    with pytest.raises(OnnxConversionError, match=r"erfinv_model \(features\).*Erfinv"):
        onnx(model, path)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_existing_file_is_kept_without_overwrite(tmp_path):
    path = tmp_path / "vit.onnx"
    path.write_bytes(b"previous")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        onnx(_tiny_vit(), path, overwrite=False)
    assert path.read_bytes() == b"previous"


def test_clip_model_is_refused_with_the_two_tower_recipe(tmp_path):
    model = vit_zoo.CLIP(TINY_CLIP, context_length=TEXT_CONTEXT)
    with pytest.raises(ValueError, match=r"model\.image_encoder.*model\.text_encoder"):
        onnx(model, tmp_path / "clip.onnx")
    assert not any(tmp_path.iterdir())


def test_dynamic_size_model_is_refused(tmp_path):
    model = vit_zoo.ViT(TINY_VIT, input_shape=(None, None, 3), classes=10)
    with pytest.raises(ValueError, match="fixed size"):
        onnx(model, tmp_path / "vit.onnx")


def test_missing_converter_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"pip install 'vit_zoo\[onnx\]'"):
        onnx(_tiny_vit(), tmp_path / "vit.onnx")
