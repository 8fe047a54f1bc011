"""CLIP: parity with open_clip and transformers on random perturbed weights in both upstream
layouts, parameter counts, the similarity head, towers alone, bad checkpoints, JAX. Saving and
training: tests/test_families.py; TFLite: tests/test_export.py."""

import json

import keras
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tests.helpers import relative_error, run_python
from vit_zoo.models import clip
from vit_zoo.weights import clip_layout
from vit_zoo.weights.checkpoint import open_checkpoint
from vit_zoo.weights.loading import load_checkpoint
from vit_zoo.weights.readers import CheckpointError, detect_layout

TOLERANCE = 1e-4


def _reference(directory, case):
    """(images, token ids, image embeddings, text embeddings, logit_scale) of a CLIP case."""
    return tuple(
        np.load(directory / f"{case}.{part}.npy")
        for part in ("images", "token_ids", "image_embeddings", "text_embeddings", "logit_scale")
    )


def _check_parity(model, directory, case):
    images, token_ids, image_expected, text_expected, logit_scale = _reference(directory, case)
    image_error = relative_error(model.encode_image(images), image_expected)
    text_error = relative_error(model.encode_text(token_ids), text_expected)
    print(f"{case}: image embeddings {image_error:.2e}, text embeddings {text_error:.2e}")
    assert image_error <= TOLERANCE
    assert text_error <= TOLERANCE
    np.testing.assert_allclose(float(model.logit_scale.numpy()), float(logit_scale), rtol=1e-6)


@pytest.fixture(scope="module")
def open_clip_model(clip_reference):
    """CLIP B/32 loaded from the open_clip-layout reference file (shared: it is 600 MB)."""
    return clip.CLIP_ViT_B32(weights=clip_reference / "open_clip_b32.safetensors")


def test_layouts_are_detected_from_keys(clip_reference):
    assert detect_layout(clip_reference / "open_clip_b32.safetensors") == "open_clip_safetensors"
    assert detect_layout(clip_reference / "hf_b32" / "model.safetensors") == "hf_clip_safetensors"


def test_open_clip_layout_matches_open_clip(open_clip_model, clip_reference):
    _check_parity(open_clip_model, clip_reference, "open_clip_b32")


def test_hf_layout_matches_transformers(clip_reference):
    model = clip.CLIP("B/32", weights=clip_reference / "hf_b32" / "model.safetensors")
    _check_parity(model, clip_reference, "hf_b32")


def test_parameter_counts_match_open_clip(clip_reference):
    expected = json.loads((clip_reference / "param_counts.json").read_text())
    builders = {
        "B/32": clip.CLIP_ViT_B32,
        "B/16": clip.CLIP_ViT_B16,
        "L/14": clip.CLIP_ViT_L14,
        "L/14@336": clip.CLIP_ViT_L14_336,
    }
    counts = {variant: builder().count_params() for variant, builder in builders.items()}
    assert counts == expected


def test_logits_are_scaled_cosine_similarities(open_clip_model, clip_reference):
    images, token_ids, *_ = _reference(clip_reference, "open_clip_b32")
    logits_per_image, logits_per_text = open_clip_model({"images": images, "token_ids": token_ids})
    image = np.asarray(open_clip_model.encode_image(images), "float64")
    text = np.asarray(open_clip_model.encode_text(token_ids), "float64")
    image /= np.linalg.norm(image, axis=-1, keepdims=True)
    text /= np.linalg.norm(text, axis=-1, keepdims=True)
    expected = np.exp(float(open_clip_model.logit_scale.numpy())) * image @ text.T
    assert logits_per_image.shape == (len(images), len(token_ids))
    np.testing.assert_allclose(logits_per_image, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(logits_per_text, np.transpose(logits_per_image))


def test_towers_alone(open_clip_model, clip_reference):
    images, token_ids, image_expected, text_expected, _ = _reference(
        clip_reference, "open_clip_b32"
    )
    weights = clip_reference / "open_clip_b32.safetensors"
    image_encoder = clip.CLIPImageEncoder("B/32", weights=weights)
    assert relative_error(image_encoder.predict(images, verbose=0), image_expected) <= TOLERANCE
    features = clip.CLIPImageEncoder("B/32", include_top=False, pooling="token", weights=weights)
    assert features.output_shape == (None, 768)
    class_token = open_clip_model.image_encoder.get_layer("pool").output
    pooled = keras.Model(open_clip_model.image_encoder.inputs, class_token)
    np.testing.assert_allclose(
        features.predict(images, verbose=0), pooled.predict(images, verbose=0), rtol=1e-5, atol=1e-5
    )
    text_encoder = clip.CLIPTextEncoder("B/32", weights=weights)
    assert relative_error(text_encoder.predict(token_ids, verbose=0), text_expected) <= TOLERANCE


def test_shorter_context_uses_the_first_positions(clip_reference):
    _, token_ids, _, text_expected, _ = _reference(clip_reference, "open_clip_b32")
    weights = clip_reference / "open_clip_b32.safetensors"
    short = clip.CLIPTextEncoder("B/32", weights=weights, context_length=40)
    # The first two texts end before position 40; causal attention never looks further.
    embeddings = short.predict(token_ids[:2, :40], verbose=0)
    assert relative_error(embeddings, text_expected[:2]) <= TOLERANCE


def _rewritten(source, target, change):
    arrays = load_file(str(source))
    change(arrays)
    save_file(arrays, str(target))
    return target


def test_wrong_shape_names_the_variable_and_leaves_the_model_unchanged(
    open_clip_model, clip_reference, tmp_path
):
    def shrink_ln_post(arrays):
        arrays["visual.ln_post.weight"] = arrays["visual.ln_post.weight"][:700].copy()

    bad = _rewritten(
        clip_reference / "open_clip_b32.safetensors", tmp_path / "bad.safetensors", shrink_ln_post
    )
    before = [keras.ops.convert_to_numpy(variable) for variable in open_clip_model.weights]
    checkpoint = open_checkpoint(bad, "clip", "B/32", clip.TRANSLATORS)
    with pytest.raises(CheckpointError, match="nothing was loaded") as error:
        load_checkpoint(open_clip_model, checkpoint)
    assert "norm/gamma: checkpoint has shape (700,), model expects (768,)" in str(error.value)
    for variable, value in zip(open_clip_model.weights, before):
        np.testing.assert_array_equal(variable, value)


def test_unknown_keys_are_errors_and_buffers_are_not():
    ones = np.ones((4,), "float32")
    arrays, unknown = clip_layout.from_open_clip(
        {
            "ln_final.weight": ones,
            "attn_mask": np.zeros((77, 77), "float32"),
            "visual.attnpool.k_proj.weight": ones,
        }
    )
    assert arrays == {"text_norm/gamma": ones} and unknown == ["visual.attnpool.k_proj.weight"]
    arrays, unknown = clip_layout.from_hf(
        {"text_model.embeddings.position_ids": np.arange(77)[None], "logit_scale": np.float32(2)}
    )
    assert list(arrays) == ["logits/logit_scale"] and unknown == []


def test_bad_variant_and_pooling_are_explained():
    with pytest.raises(ValueError, match="Unknown CLIP variant 'B/14'"):
        clip.CLIP("B/14")
    with pytest.raises(ValueError, match="class token"):
        clip.CLIPImageEncoder("B/32", pooling="avg")


def test_registry_records_point_at_open_clip_safetensors():
    from vit_zoo.weights import lookup

    for variant in clip.VARIANTS:
        record = lookup("clip", variant, "openai")
        # Pinned to the hub revision whose sha256 two public sources state (weights_pins.tsv).
        suffix = (f"_clip_{record.resolution}.openai/resolve/{record.revision}/"
                  "open_clip_model.safetensors")
        assert record.url.endswith(suffix) and record.sha256 and len(record.revision) == 40
        assert record.numerics.activation == "quick_gelu" and record.license == "MIT"


_JAX_SCRIPT = """
import sys
import numpy as np
import keras
from vit_zoo.models import clip

assert keras.backend.backend() == "jax", keras.backend.backend()
reference = sys.argv[1]
load = lambda part: np.load(f"{reference}/open_clip_b32.{part}.npy")
model = clip.CLIP_ViT_B32(weights=f"{reference}/open_clip_b32.safetensors")
for name, ours, part in (("image", model.encode_image(load("images")), "image_embeddings"),
                         ("text", model.encode_text(load("token_ids")), "text_embeddings")):
    expected = load(part)
    error = np.max(np.abs(np.asarray(ours, "float64") - expected)) / np.max(np.abs(expected))
    print(f"{name} relative error {error:.3g}")
    assert error <= 1e-4, (name, error)
assert "tensorflow" not in sys.modules, "model code imported TensorFlow"
"""


def test_parity_under_jax(clip_reference):
    """The fused attention path (dot_product_attention with is_causal) of non-TF backends."""
    pytest.importorskip("jax")
    output = run_python(["-c", _JAX_SCRIPT, str(clip_reference)], env={"KERAS_BACKEND": "jax"})
    print(output)
    assert "text relative error" in output
