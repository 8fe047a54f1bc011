import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

from tests.helpers import run_reference  # noqa: E402
from tests.parity_cases import HYBRID_MIXER_CASES, SWIN_CASES, VIT_CASES  # noqa: E402

# Session fixtures that cost a minute or more each (a reference run of timm / open_clip in its
# own process, `vit-zoo demo`). Under pytest-xdist (`--dist loadgroup`) every test using one of
# them runs on the same worker, so each is computed once per run, not once per worker.
SHARED_FIXTURES = ("demo_run", "vit_reference", "hybrid_mixer_reference", "swin_reference",
                   "clip_reference")


# First among the hooks: xdist's worker reads the groups in its own pytest_collection_modifyitems,
# and a conftest hook running after it would mark the items too late (each worker then computed
# every shared fixture for itself).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        shared = [name for name in SHARED_FIXTURES if name in getattr(item, "fixturenames", ())]
        if shared:
            item.add_marker(pytest.mark.xdist_group(shared[0]))


@pytest.fixture(scope="session")
def vit_reference(tmp_path_factory):
    """Directory with <case>.npz|.safetensors, <case>.images.npy, <case>.logits.npy from timm."""
    return run_reference("timm_models.py", tmp_path_factory.mktemp("timm_vit"), VIT_CASES)


@pytest.fixture(scope="session")
def hybrid_mixer_reference(tmp_path_factory):
    """Like vit_reference, for the hybrid and Mixer cases (plus <case>.timm_logits.npy)."""
    return run_reference("timm_models.py", tmp_path_factory.mktemp("timm_hybrid_mixer"),
                         HYBRID_MIXER_CASES)


@pytest.fixture(scope="session")
def swin_reference(tmp_path_factory):
    """Like vit_reference, for the Swin cases."""
    return run_reference("timm_models.py", tmp_path_factory.mktemp("timm_swin"), SWIN_CASES)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own empty weights cache and never reaches the network by accident."""
    monkeypatch.setenv("VIT_ZOO_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="session")
def clip_reference(tmp_path_factory):
    """Directory with the CLIP reference files of tests/parity_cases.CLIP_CASES (see
    tests/reference/open_clip_models.py): weights, inputs, open_clip / transformers embeddings."""
    from tests.parity_cases import CLIP_CASES

    return run_reference("open_clip_models.py", tmp_path_factory.mktemp("open_clip"), CLIP_CASES)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """`vit-zoo demo` run once, as a user runs it (fresh process, default settings, in an empty
    folder): (folder, stdout, seconds)."""
    import subprocess
    import sys
    import time

    folder = tmp_path_factory.mktemp("demo")
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "vit_zoo.cli", "demo"], cwd=folder,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
                            capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-4000:]
    return folder, result.stdout, seconds
