"""Bad input: each case gets a clear error and loses nothing."""

import functools
import hashlib
import http.server
import shutil
import socket
import threading

import numpy as np
import pytest

import vit_zoo
from vit_zoo import numerics as nm
from vit_zoo.models.vit import TRANSLATORS
from vit_zoo.weights import CheckpointError, WeightsDownloadError, WeightsRecord, registry
from vit_zoo.weights.checkpoint import open_checkpoint
from vit_zoo.weights.loading import load_checkpoint


@pytest.fixture(scope="module")
def ti16_npz(vit_reference):
    return vit_reference / "ti16_npz.npz"


@pytest.fixture
def served(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields (base_url, folder)."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", folder
    server.shutdown()
    server.server_close()


@pytest.fixture
def register_tag(monkeypatch):
    """Register a temporary ViT-Ti/16 weights tag pointing at a test URL."""

    def register(url, sha256=None, tag="test-local"):
        record = WeightsRecord("vit", "Ti/16", tag, url, "google_npz", nm.GOOGLE, 224, 1000,
                               sha256=sha256)
        monkeypatch.setitem(registry._REGISTRY[("vit", "Ti/16")], tag, record)
        return record

    return register


def _cache_entries(tmp_path):
    cache = tmp_path / "cache"
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_channels_other_than_three():
    with pytest.raises(ValueError, match="3 channels"):
        vit_zoo.ViT_Ti16(input_shape=(224, 224, 1))


def test_size_not_divisible_by_patch():
    with pytest.raises(ValueError, match="not divisible by the patch size 16.*224"):
        vit_zoo.ViT_Ti16(input_shape=(230, 224, 3))


def test_dynamic_model_rejects_indivisible_images_when_called():
    model = vit_zoo.ViT_Ti16(input_shape=(None, None, 3), classes=2)
    with pytest.raises(ValueError, match="not divisible by the patch size 16"):
        model(np.zeros((1, 40, 32, 3), "float32"))


def test_unknown_variant():
    with pytest.raises(ValueError, match="Unknown ViT variant 'X/16'"):
        vit_zoo.ViT("X/16")


def test_unknown_weights_tag_lists_known_tags():
    with pytest.raises(ValueError, match="Unknown weights 'imagenet' .*'augreg-imagenet21k'"):
        vit_zoo.ViT_Ti16(weights="imagenet")


def test_missing_weights_file(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        vit_zoo.ViT_Ti16(weights=tmp_path / "nope.npz")


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "weights.pth"
    path.write_bytes(b"\x80\x02")
    with pytest.raises(CheckpointError, match="Unsupported weights file"):
        vit_zoo.ViT_Ti16(weights=path)


def test_truncated_npz(tmp_path, ti16_npz):
    data = ti16_npz.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        vit_zoo.ViT_Ti16(weights=truncated)


def test_corrupted_npz(tmp_path, ti16_npz):
    data = bytearray(ti16_npz.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 4096] = b"\x00" * 4096  # inside a member's data
    corrupted = tmp_path / "corrupted.npz"
    corrupted.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        vit_zoo.ViT_Ti16(weights=corrupted)


def test_pickled_npz_is_refused(tmp_path):
    path = tmp_path / "pickled.npz"
    np.savez(path, objects=np.array([{"a": 1}], dtype=object))
    with pytest.raises(CheckpointError, match="pickled"):
        vit_zoo.ViT_Ti16(weights=path)


def test_checkpoint_of_another_variant_names_variables_and_shapes(vit_reference):
    with pytest.raises(CheckpointError) as error:
        vit_zoo.ViT_Ti16(weights=vit_reference / "s32_npz.npz")
    message = str(error.value)
    assert "patch_embed/kernel: checkpoint has shape (32, 32, 3, 384), model expects " \
           "(16, 16, 3, 192)" in message
    assert "nothing was loaded" in message


def test_failed_load_leaves_the_model_unchanged(vit_reference):
    model = vit_zoo.ViT_Ti16(classes=1000)
    before = [w.copy() for w in model.get_weights()]
    checkpoint = open_checkpoint(vit_reference / "b16_npz.npz", "vit", "Ti/16", TRANSLATORS)
    with pytest.raises(CheckpointError):
        load_checkpoint(model, checkpoint)
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_unknown_key_is_an_error(tmp_path, ti16_npz):
    arrays = dict(np.load(ti16_npz))
    arrays["Transformer/encoderblock_0/Extra_9/kernel"] = np.zeros((3, 3), "float32")
    path = tmp_path / "extra.npz"
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match="Extra_9/kernel: not a variable"):
        vit_zoo.ViT_Ti16(weights=path)


def test_missing_key_is_an_error(tmp_path, ti16_npz):
    arrays = dict(np.load(ti16_npz))
    del arrays["Transformer/encoderblock_3/LayerNorm_2/scale"]
    path = tmp_path / "missing.npz"
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match="block_3/norm2/gamma: missing"):
        vit_zoo.ViT_Ti16(weights=path)


def test_download_verifies_hash_and_caches(served, register_tag, ti16_npz, tmp_path):
    url, folder = served
    shutil.copy(ti16_npz, folder / "ti.npz")
    record = register_tag(f"{url}/ti.npz", sha256=_sha256(ti16_npz))
    first = vit_zoo.ViT_Ti16(weights="test-local")
    assert _cache_entries(tmp_path) == [record.filename, record.filename + ".sha256"]
    (folder / "ti.npz").unlink()  # the second build must come from the cache
    second = vit_zoo.ViT_Ti16(weights="test-local")
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_missing_file_on_server(served, register_tag, tmp_path):
    url, _ = served
    register_tag(f"{url}/absent.npz")
    with pytest.raises(WeightsDownloadError, match=r"Could not download .*absent.npz.*404"):
        vit_zoo.ViT_Ti16(weights="test-local")
    assert _cache_entries(tmp_path) == []


def test_unreachable_host_names_url_and_manual_path(register_tag, tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    record = register_tag(f"http://127.0.0.1:{port}/ti.npz")
    with pytest.raises(WeightsDownloadError) as error:
        vit_zoo.ViT_Ti16(weights="test-local")
    message = str(error.value)
    assert f"http://127.0.0.1:{port}/ti.npz" in message
    assert str(tmp_path / "cache" / record.filename) in message
    assert _cache_entries(tmp_path) == []


def test_offline_without_cached_file(monkeypatch, register_tag, tmp_path):
    monkeypatch.setenv("VIT_ZOO_OFFLINE", "1")
    record = register_tag("https://example.invalid/ti.npz")
    with pytest.raises(WeightsDownloadError, match="VIT_ZOO_OFFLINE") as error:
        vit_zoo.ViT_Ti16(weights="test-local")
    assert record.url in str(error.value)
    assert str(tmp_path / "cache" / record.filename) in str(error.value)


def test_offline_uses_cached_file(monkeypatch, register_tag, tmp_path, ti16_npz):
    monkeypatch.setenv("VIT_ZOO_OFFLINE", "1")
    record = register_tag("https://example.invalid/ti.npz")
    (tmp_path / "cache").mkdir()
    shutil.copy(ti16_npz, tmp_path / "cache" / record.filename)
    model = vit_zoo.ViT_Ti16(weights="test-local")
    np.testing.assert_array_equal(
        model.get_layer("cls_token").token.numpy(), np.load(ti16_npz)["cls"]
    )


def test_weights_h5_of_another_shape_is_refused_and_explained(tmp_path):
    source = vit_zoo.ViT_Ti16(input_shape=(32, 32, 3), classes=3)
    source.save_weights(tmp_path / "w.weights.h5")
    with pytest.raises(CheckpointError, match="exact architecture"):
        vit_zoo.ViT_Ti16(input_shape=(32, 32, 3), classes=4, weights=tmp_path / "w.weights.h5")


def test_preprocess_and_decode_validate_shapes():
    with pytest.raises(ValueError, match="RGB"):
        vit_zoo.preprocess_input(np.zeros((2, 8, 8, 1)))
    with pytest.raises(ValueError, match=r"\(N, 1000\) or \(N, 21843\)"):
        vit_zoo.decode_predictions(np.zeros((2, 10)))
