"""The installed `vit-zoo` command as a new user meets it: fast help, no TensorFlow start-up log,
one-line errors with exit status 2, the log back with --verbose. Real subprocesses."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

VIT_ZOO = Path(sys.executable).parent / "vit-zoo"
# Lines TensorFlow 2.21's native side prints at start-up on a machine without a GPU.
TF_LOG_MARKERS = ("absl::InitializeLog", "cudart_stub", "cpu_feature_guard", "cuda drivers",
                  "oneDNN custom operations", "cuInit", "rebuild TensorFlow")


def _run(*args, env=None, cwd=None):
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("TF_CPP_MIN_LOG_LEVEL", "VIT_ZOO_VERBOSE")}
    return subprocess.run([str(VIT_ZOO), *args], capture_output=True, text=True, timeout=300,
                          env={**environment, **(env or {})}, cwd=cwd)


def _tf_log_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if any(m in line for m in TF_LOG_MARKERS)]


def _one_error_line(result) -> str:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("vit-zoo: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_the_command_is_installed():
    assert VIT_ZOO.exists(), "pip install -e . installs the vit-zoo script next to python"


def test_help_and_argument_errors_never_import_tensorflow():
    probe = ("import sys, vit_zoo_cli\n"
             "for argv in (['--help'], ['predict'], ['export', '--format', 'nope']):\n"
             "    try:\n"
             "        vit_zoo_cli.main(argv)\n"
             "    except SystemExit as stop:\n"
             "        assert stop.code in (0, 2), stop.code\n"
             "print(sorted(m for m in ('tensorflow', 'keras', 'vit_zoo') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert "usage: vit-zoo" in result.stderr


def test_help_and_list_print_no_tensorflow_log():
    help_text = _run("--help")
    assert help_text.returncode == 0 and "vit-zoo" in help_text.stdout
    assert help_text.stderr == ""
    listing = _run("list")
    assert listing.returncode == 0 and "ViT_B16" in listing.stdout
    assert _tf_log_lines(listing.stderr) == [] and listing.stderr == "", listing.stderr


def test_verbose_brings_the_log_back():
    for env, args in (({}, ("--verbose", "list")), ({"VIT_ZOO_VERBOSE": "1"}, ("list",))):
        result = _run(*args, env=env)
        assert result.returncode == 0
        assert _tf_log_lines(result.stderr), result.stderr


def test_a_missing_image_is_one_line_before_anything_heavy(tmp_path):
    line = _one_error_line(_run("predict", str(tmp_path / "missing.jpg"), "--model", "ViT_S16"))
    assert "no such image file" in line and "missing.jpg" in line


def test_an_unknown_tag_is_one_line(tmp_path):
    from PIL import Image

    Image.new("RGB", (20, 20)).save(tmp_path / "image.png")
    line = _one_error_line(_run("predict", str(tmp_path / "image.png"), "--model", "ViT_Ti16",
                                "--weights", "no-such-tag",
                                env={"VIT_ZOO_CACHE": str(tmp_path / "cache")}))
    assert "'no-such-tag'" in line and "augreg-imagenet21k" in line  # the tags that exist


def test_offline_without_a_cached_file_is_one_line(tmp_path):
    from PIL import Image

    Image.new("RGB", (20, 20)).save(tmp_path / "image.png")
    line = _one_error_line(_run("predict", str(tmp_path / "image.png"), "--model", "ViT_Ti16",
                                "--weights", "augreg-imagenet21k+imagenet2012",
                                env={"VIT_ZOO_OFFLINE": "1",
                                     "VIT_ZOO_CACHE": str(tmp_path / "cache")}))
    assert "VIT_ZOO_OFFLINE" in line and str(tmp_path / "cache") in line


@pytest.mark.parametrize("config, expected", [
    ("model: [unclosed\n", "not valid YAML"),
    ("model: {variant: B/16, no_such_key: 1}\n", "no_such_key"),
])
def test_a_bad_config_is_one_line(tmp_path, config, expected):
    (tmp_path / "config.yaml").write_text(config)
    line = _one_error_line(_run("train", "--config", str(tmp_path / "config.yaml"),
                                cwd=tmp_path))
    assert expected in line
    assert not (tmp_path / "runs").exists()  # nothing started


def test_an_unexpected_error_keeps_its_traceback(tmp_path):
    """Only errors the user can act on become one line; a bug still shows where it is."""
    probe = ("import sys, vit_zoo_cli\n"
             "from vit_zoo import cli\n"
             "def broken(args):\n"
             "    raise RuntimeError('a bug')\n"
             "cli.COMMANDS['list'] = broken\n"
             "sys.exit(vit_zoo_cli.main(['list']))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "RuntimeError: a bug" in result.stderr
