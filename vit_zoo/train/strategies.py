"""`vit_zoo.train.strategy(kind)`: the tf.distribute strategy for where training runs.

    strategy = vit_zoo.train.strategy("auto")
    with strategy.scope():
        model = vit_zoo.ViT_B16(weights=...); model.compile(...)
    model.fit(dataset)   # a global batch, split over strategy.num_replicas_in_sync replicas
"""

from __future__ import annotations

import json
import os

KINDS = ("auto", "tpu", "mirrored", "multiworker", "cpu")
# One MirroredStrategy per device set and process: a second one over the same CPU devices
# reuses the first one's collective instance keys, and its all-reduces then meet the first
# one's shapes ("Shape mismatch in the collective instance"). Training twice in one process
# (a notebook, a test) gets the same strategy back.
_MADE: dict = {}


def strategy(kind: str = "auto", tpu: str | None = None, zone: str | None = None,
             project: str | None = None):
    """A tf.distribute strategy.

    Args:
        kind: "tpu" (TPUStrategy through the cluster resolver), "multiworker"
            (MultiWorkerMirroredStrategy, cluster from the TF_CONFIG environment variable),
            "mirrored" (MirroredStrategy over the local GPUs, or over the logical CPU devices when
            there are several and no GPU), "cpu" (the default one-device strategy) or "auto": a
            TPU when one is named or attached, else several workers when TF_CONFIG lists them,
            else several local GPUs, else the default.
        tpu, zone, project: the TPU's name (default: $TPU_NAME; "local" on a TPU VM), zone and
            GCP project, for the cluster resolver.
    """
    import tensorflow as tf

    if kind not in KINDS:
        raise ValueError(f"Unknown strategy kind {kind!r}; expected one of {list(KINDS)}.")
    tpu = tpu or os.environ.get("TPU_NAME")
    if kind == "auto":
        kind = _detect(tpu)
    if kind == "tpu":
        return _tpu_strategy(tpu, zone, project)
    if kind == "multiworker":
        if not _cluster_workers():
            raise ValueError(
                "strategy('multiworker') needs the cluster in the TF_CONFIG environment "
                'variable, e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}}, set on every worker.'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        cpus = tf.config.list_logical_devices("CPU")
        devices = [d.name for d in (gpus or (cpus if len(cpus) > 1 else []))]
        if not devices:
            raise ValueError(
                "strategy('mirrored') found one device only (no GPU, one CPU). Use "
                "strategy('cpu'), or split the CPU into logical devices first with "
                "tf.config.set_logical_device_configuration."
            )
        key = ("mirrored", tuple(devices))
        if key not in _MADE:
            _MADE[key] = tf.distribute.MirroredStrategy(devices)
        return _MADE[key]
    return tf.distribute.get_strategy()


def _detect(tpu: str | None) -> str:
    import tensorflow as tf

    if tpu or tf.config.list_physical_devices("TPU"):
        return "tpu"
    if len(_cluster_workers()) > 1:
        return "multiworker"
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return "mirrored"
    return "cpu"


def _cluster_workers() -> list[str]:
    """The worker addresses TF_CONFIG lists (empty when it is unset or lists none)."""
    config = os.environ.get("TF_CONFIG")
    if not config:
        return []
    try:
        cluster = json.loads(config).get("cluster", {})
    except (json.JSONDecodeError, AttributeError) as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {config[:200]}") from None
    return [*cluster.get("chief", []), *cluster.get("worker", [])]


def _tpu_strategy(tpu: str | None, zone: str | None, project: str | None):
    import tensorflow as tf

    if not tpu and not tf.config.list_physical_devices("TPU"):
        # Checked here: without a name the resolver would ask a GCE metadata server, which
        # off Google Cloud only times out.
        raise ValueError(
            "strategy('tpu') found no TPU: pass tpu='<name>' (or set TPU_NAME) for a TPU node, "
            "run on a TPU VM, or choose another kind (e.g. strategy('auto'))."
        )
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=tpu or "local", zone=zone, project=project
        )
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as error:
        raise ValueError(f"Could not reach the TPU {tpu or 'local'!r}: {error}") from error
    return tf.distribute.TPUStrategy(resolver)
