"""`model.fit` and `model.evaluate` under MultiWorkerMirroredStrategy.

Keras 3's TensorFlow trainer fails there twice (tensorflow/tensorflow#72388, still so in Keras
3.15):
- before the first step, `fit` peeks at one distributed (x, y) batch and all-reduces it to
  build the metrics; the collective all-reduce takes one tensor, not a nested batch;
- after every step it reduces the scalar logs across workers with `axis=0`, which a rank-0
  tensor does not have.

`use_collective_steps(model, strategy)` gives a compiled model train and test functions of its
own that run `train_step` / `test_step` on every replica and average each log across all of
them (`axis=None`), the reduction Keras applies on one machine. On CPU workers the step runs
without XLA, which has no collective operations for CPUs. The metrics are built in the
first traced step instead of from the peeked batch, which is how Keras 2 did it. Everything
else about `fit` (callbacks, backups, progress, TensorBoard) is Keras's own.
"""
from __future__ import annotations

import keras
import tensorflow as tf


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` spans more than one worker process."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return len(cluster.get("chief", [])) + len(cluster.get("worker", [])) > 1


def use_collective_steps(model: keras.Model, strategy: tf.distribute.Strategy) -> None:
    """Install multi-worker-safe train/test functions on a compiled `model`.

    Call after `compile` (which clears them) and run `fit` / `evaluate` inside
    `strategy.scope()`. Does nothing unless `strategy` spans several workers.
    """
    if not is_multi_worker(strategy):
        return
    if model.optimizer is None:
        raise ValueError("use_collective_steps needs a compiled model; call compile() first.")
    if model.steps_per_execution != 1:
        raise ValueError(
            f"steps_per_execution={model.steps_per_execution} is not supported across several "
            "workers (a multi-step loop over a distributed iterator fails there); use 1 "
            "(run.steps_per_execution: 1).")
    # Keras peeks at (and all-reduces) a batch before fit when the model holds its strategy;
    # without it Keras takes the strategy from the surrounding scope and builds while tracing.
    model._distribute_strategy = None
    model.train_function = _step_function(model, model.train_step, strategy)
    model.test_function = _step_function(model, model.test_step, strategy)


def _step_function(model: keras.Model, step_fn, strategy: tf.distribute.Strategy):
    """One `step_fn` on the next batch of a distributed iterator; each log averaged over all
    replicas of all workers."""

    def one_step(data):
        logs = strategy.run(step_fn, args=(data,))
        return {name: strategy.reduce("MEAN", value, axis=None) for name, value in logs.items()}

    # XLA has no collectives on CPU devices (b/194942685): CPU workers run the step as a graph.
    on_cpu = any("CPU" in device.upper() for device in strategy.extended.worker_devices)
    one_step = tf.function(one_step, jit_compile=bool(model.jit_compile) and not on_cpu,
                           reduce_retracing=True)

    @tf.function(reduce_retracing=True)
    def next_step(iterator):
        return one_step(next(iterator))  # OutOfRange at the end of the data: fit ends the epoch

    return next_step
