"""Verified downloads: pinned hashes, trust on first use, interrupted transfers, the upstream-file
policy and heads that are not valid classifiers. Files are served from 127.0.0.1."""

import functools
import hashlib
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import vit_zoo
from tests.helpers import run_python
from vit_zoo import cli
from vit_zoo import numerics as nm
from vit_zoo.weights import WeightsIntegrityError, WeightsRecord, download, integrity, registry

PAYLOAD_BYTES = 3 << 20


def _record(url: str, sha256: str | None = None, **fields) -> WeightsRecord:
    return WeightsRecord("vit", "Ti/16", "test-local", url, "google_npz", nm.GOOGLE, 224, 1000,
                         sha256=sha256, **fields)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cache(tmp_path) -> Path:
    return tmp_path / "cache"


def _cache_entries(tmp_path) -> list[str]:
    cache = _cache(tmp_path)
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


@pytest.fixture
def payload():
    return np.random.default_rng(0).bytes(PAYLOAD_BYTES)


@pytest.fixture
def served(tmp_path, payload):
    """An HTTP server on 127.0.0.1 serving tmp_path/www, with payload.bin in it; yields
    (url of payload.bin, folder)."""
    folder = tmp_path / "www"
    folder.mkdir()
    (folder / "payload.bin").write_bytes(payload)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/payload.bin", folder
    server.shutdown()
    server.server_close()


def test_pinned_hash_that_matches_is_kept_and_checked_on_every_load(served, payload, tmp_path,
                                                                    capsys):
    url, folder = served
    record = _record(url, sha256=_sha256(payload))
    path = download.fetch(record)
    assert path.read_bytes() == payload
    progress = capsys.readouterr().out  # Keras's bar, then size and speed
    assert f"Downloading data from {url}" in progress
    assert "Downloaded 3.1 MB in" in progress and "MB/s" in progress
    assert _cache_entries(tmp_path) == [record.filename, record.filename + ".sha256"]
    (folder / "payload.bin").unlink()  # later loads come from the cache, and are checked
    assert download.fetch(record) == path
    path.write_bytes(payload[:-1] + bytes([payload[-1] ^ 1]))
    with pytest.raises(WeightsIntegrityError) as error:
        download.fetch(record)
    message = str(error.value)
    assert str(path) in message and record.sha256 in message
    assert _sha256(path.read_bytes()) in message and "vit_zoo's registry" in message


def test_pinned_hash_that_does_not_match_leaves_nothing_in_the_cache(served, payload, tmp_path):
    url, _ = served
    wrong = _sha256(b"another file")
    with pytest.raises(WeightsIntegrityError) as error:
        download.fetch(_record(url, sha256=wrong, size=PAYLOAD_BYTES + 1))
    message = str(error.value)
    assert wrong in message and _sha256(payload) in message
    assert "Nothing was kept in the cache" in message and "truncated" in message
    assert _cache_entries(tmp_path) == []


def test_first_use_records_the_hash_and_a_changed_file_is_refused(served, payload, tmp_path):
    url, folder = served
    record = _record(url)
    path = download.fetch(record)
    assert integrity.read_sidecar(path) == _sha256(payload)
    # The sidecar is what `sha256sum -c` reads, next to the file it names.
    check = subprocess.run(["sha256sum", "-c", path.name + ".sha256"], cwd=path.parent,
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    (folder / "payload.bin").write_bytes(b"changed upstream")  # the cache is what counts now
    assert download.fetch(record).read_bytes() == payload

    path.write_bytes(payload[: PAYLOAD_BYTES // 2])  # e.g. a disk problem, or a bad copy
    with pytest.raises(WeightsIntegrityError) as error:
        download.fetch(record)
    message = str(error.value)
    assert str(path) in message and "first download" in message
    assert _sha256(payload) in message and _sha256(payload[: PAYLOAD_BYTES // 2]) in message
    assert path.exists()  # the user's file is reported, not deleted behind their back

    # Following the message (delete both) gets a fresh download, trusted anew.
    path.unlink()
    integrity.sidecar(path).unlink()
    assert download.fetch(record).read_bytes() == b"changed upstream"


def test_a_file_saved_by_hand_is_trusted_from_its_first_load(payload, tmp_path, monkeypatch):
    monkeypatch.setenv("VIT_ZOO_OFFLINE", "1")
    record = _record("https://example.invalid/ti.npz")
    _cache(tmp_path).mkdir()
    (_cache(tmp_path) / record.filename).write_bytes(payload)
    path = download.fetch(record)
    assert integrity.read_sidecar(path) == _sha256(payload)


def test_a_record_whose_url_changes_never_reuses_the_old_file():
    old = _record("https://example.invalid/run-a.npz")
    new = _record("https://example.invalid/run-b.npz")
    assert old.filename != new.filename
    assert old.filename.startswith("vit-Ti16-test-local-") and old.filename.endswith(".npz")


class _StallingHandler(http.server.BaseHTTPRequestHandler):
    """Sends the headers and the first half of the payload, then waits to be released."""

    payload = b""
    half_sent: threading.Event
    release: threading.Event

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        half = len(self.payload) // 2
        self.wfile.write(self.payload[:half])
        self.wfile.flush()
        type(self).half_sent.set()
        type(self).release.wait(60)
        try:
            self.wfile.write(self.payload[half:])
        except OSError:  # the client is gone
            pass

    def log_message(self, *args):
        pass


_FETCH_IN_CHILD = """
import sys
from vit_zoo import numerics as nm
from vit_zoo.weights import WeightsRecord, download
record = WeightsRecord("vit", "Ti/16", "test-local", sys.argv[1], "google_npz", nm.GOOGLE, 224,
                       1000)
download.fetch(record)
"""


def test_a_download_killed_midway_leaves_no_file_a_later_load_accepts(payload, tmp_path):
    handler = type("Handler", (_StallingHandler,), {
        "payload": payload, "half_sent": threading.Event(), "release": threading.Event()})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/payload.bin"
    env = {**os.environ, "VIT_ZOO_CACHE": str(_cache(tmp_path)), "TF_CPP_MIN_LOG_LEVEL": "3"}
    child = subprocess.Popen([sys.executable, "-c", _FETCH_IN_CHILD, url], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert handler.half_sent.wait(120), "the child never started its download"
        partial = [p for p in _cache(tmp_path).rglob("*") if p.is_file()]
        assert partial and all(".partial-" in str(p) for p in partial)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        child.kill()
        handler.release.set()
    record = _record(url)
    assert not download.cached_path(record).exists()
    assert not integrity.sidecar(download.cached_path(record)).exists()
    assert [p.name for p in download.abandoned_downloads(_cache(tmp_path))]  # the dead child's

    # The next load downloads afresh (the server now sends it whole: the handler's release is
    # set) and clears the dead process's staging folder.
    path = download.fetch(record)
    server.shutdown()
    server.server_close()
    assert path.read_bytes() == payload
    assert integrity.read_sidecar(path) == _sha256(payload)
    assert _cache_entries(tmp_path) == [record.filename, record.filename + ".sha256"]


def test_staging_folders_of_live_processes_and_other_hosts_are_left_alone(tmp_path):
    cache = _cache(tmp_path)
    host = socket.gethostname()
    mine = cache / f".partial-{host}-{os.getpid()}-abc"
    elsewhere = cache / ".partial-some-other-host-1-abc"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    gone = cache / f".partial-{host}-{dead}-abc"
    for folder in (mine, elsewhere, gone):
        folder.mkdir(parents=True)
    assert download.abandoned_downloads(cache) == [gone]
    download.remove_abandoned_downloads(cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted([mine.name, elsewhere.name])


# --- the registry: pins and the upstream-file policy ----------------------------------------

def _all_records() -> list[WeightsRecord]:
    return registry.all_records()


def test_every_pin_names_a_registered_file_and_is_well_formed():
    pins = registry.read_pins()
    registered = {record.url.replace(f"/resolve/{record.revision}/", "/resolve/main/")
                  for record in _all_records()}
    assert pins
    for url, pin in pins.items():
        assert url in registered, f"{url} is pinned but not registered"
        assert pin.revision is None or len(pin.revision) == 40
        if pin.sha256:
            assert len(pin.sha256) == 64 and int(pin.sha256, 16) >= 0
            assert len(pin.sources) >= 2, f"{url}: a sha256 needs two independent sources"
    for record in _all_records():
        if record.revision:
            assert f"/resolve/{record.revision}/" in record.url
            assert "/resolve/main/" not in record.url


_TIMM_CONFIGS = """
import json, sys
import timm
configs = {}
for name in json.loads(sys.argv[1]):
    config = timm.models.get_pretrained_cfg(name)
    configs[name] = None if config is None else [config.url, config.num_classes]
print(json.dumps(configs))
"""


def test_every_google_tag_means_the_file_timm_converted():
    """The policy in vit_zoo.weights.registry, checked against timm's own pretrained configs (in
    a process of their own: torch and TensorFlow do not share one): a Google .npz tag's hub copy
    is a timm model whose config names that very file (where the config names a Google file at
    all), and a head vit_zoo calls invalid is the one timm drops."""
    copies = [record for record in _all_records() if record.hub_copy]
    names = sorted({record.hub_copy.removeprefix("timm/") for record in copies})
    configs = json.loads(run_python(["-c", _TIMM_CONFIGS, json.dumps(names)]))
    checked = 0
    for record in copies:
        config = configs[record.hub_copy.removeprefix("timm/")]
        assert config is not None, record.hub_copy
        url, classes = config
        if url and "storage.googleapis.com" in url:
            assert record.url == url, (record.variant, record.tag)
            checked += 1
        assert record.valid_head == (classes != 0 or record.classes == 0), record
    augreg = [record for record in _all_records() if "/vit_models/augreg/" in record.url]
    assert checked == len(augreg) == 29  # every AugReg tag: 20 ViT files, 9 hybrid files
    assert "aug_medium1" in registry.lookup("vit", "B/8", "augreg-imagenet21k").url


# --- heads that are not valid classifiers ----------------------------------------------------

@pytest.fixture
def invalid_head_tag(vit_reference, served, monkeypatch):
    """A registered Ti/16 tag like the ViT paper's ImageNet-21k files: pre-logits, and a
    21,843-class head upstream did not release as a classifier."""
    url, folder = served
    shutil.copy(vit_reference / "ti16_npz_prelogits.npz", folder / "in21k.npz")
    record = WeightsRecord("vit", "Ti/16", "test-in21k", url.replace("payload.bin", "in21k.npz"),
                           "google_npz", nm.GOOGLE, 224, 21843, representation_size=192,
                           valid_head=False)
    monkeypatch.setitem(registry._REGISTRY[("vit", "Ti/16")], "test-in21k", record)
    return np.load(vit_reference / "ti16_npz_prelogits.npz")


def test_a_head_that_is_not_valid_is_refused_unless_classes_are_given(invalid_head_tag):
    with pytest.raises(ValueError, match="not a valid classifier.*include_top=False.*classes="):
        vit_zoo.ViT_Ti16(weights="test-in21k")

    features = vit_zoo.ViT_Ti16(weights="test-in21k", include_top=False, pooling="token")
    np.testing.assert_array_equal(features.get_layer("pre_logits").kernel.numpy(),
                                  invalid_head_tag["pre_logits/kernel"])
    np.testing.assert_array_equal(features.get_layer("cls_token").token.numpy(),
                                  invalid_head_tag["cls"])

    with pytest.warns(UserWarning, match="not a valid classifier"):
        tuned = vit_zoo.ViT_Ti16(weights="test-in21k", classes=21843)
    assert not np.any(tuned.get_layer("head").kernel.numpy())
    assert np.any(invalid_head_tag["head/kernel"])  # a head was there, and was not loaded


def test_the_original_imagenet21k_files_are_marked():
    for variant in ("B/16", "B/32", "L/16", "L/32", "H/14"):
        assert not registry.lookup("vit", variant, "imagenet21k").valid_head
    assert not registry.lookup("hybrid", "R50+B/16", "imagenet21k").valid_head
    assert registry.lookup("vit", "B/16", "augreg-imagenet21k").valid_head


# --- the command line -----------------------------------------------------------------------

def test_verify_and_list_report_each_file(served, payload, tmp_path, monkeypatch, capsys):
    url, _ = served
    record = _record(url)
    monkeypatch.setitem(registry._REGISTRY[("vit", "Ti/16")], "test-local", record)
    assert cli.main(["verify", "ViT_Ti16:test-local"]) == 1  # not cached yet: nothing verified
    assert "not in the cache" in capsys.readouterr().out

    path = download.fetch(record)
    assert cli.main(["verify", "ViT_Ti16"]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and str(path) in out and "first use" in out

    assert cli.main(["list", "--verbose"]) == 0
    listing = capsys.readouterr().out
    assert "not pinned" in listing and "first use" in listing  # the test tag, cached
    assert "pinned to a6f597a30f7b" in listing and "registry" in listing  # CLIP B/32

    path.write_bytes(b"not the file")
    assert cli.main(["verify"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and str(path) in out
