"""vit_zoo.train.strategy: the right tf.distribute strategy, and clear errors where none fits."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import tensorflow as tf

from tests.helpers import run_python
from vit_zoo.train import strategy

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_auto_and_cpu_give_the_default_strategy_here(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert strategy("cpu").num_replicas_in_sync == 1
    assert strategy("auto") is tf.distribute.get_strategy()


def test_tpu_without_a_tpu_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(ValueError, match="found no TPU"):
        strategy("tpu")


def test_multiworker_needs_tf_config(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        strategy("multiworker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        strategy("multiworker")


def test_mirrored_needs_more_than_one_device_and_unknown_kinds_are_refused():
    with pytest.raises(ValueError, match="one device only"):
        strategy("mirrored")
    with pytest.raises(ValueError, match="Unknown strategy kind"):
        strategy("gpu")


def test_mirrored_over_logical_cpus():
    script = """
import json, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from vit_zoo.train import strategy
mirrored = strategy("mirrored")
print(json.dumps([type(mirrored).__name__, mirrored.num_replicas_in_sync]))
"""
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    out = run_python(["-c", script], env=env)
    assert json.loads(out.strip().splitlines()[-1]) == ["MirroredStrategy", 2]
