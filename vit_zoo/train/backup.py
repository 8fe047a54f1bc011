"""Fault tolerance: back up the training state every N steps, resume mid-epoch exactly.

`keras.callbacks.BackupAndRestore` saves the right things (the model's and the optimizer's
variables, through `save_weights`) but resumes at the start of the interrupted epoch: it records
the batch and never uses it, so the first batches of that epoch are trained twice and the run
ends with other weights than an uninterrupted one. `StepBackup` builds on it and keeps the rest:
- the global step travels inside the weights file (an HDF5 attribute), written to a temporary
  file and renamed into place, so a SIGKILL during a save leaves the previous backup whole;
- `fit_resumable` restores the state before `fit` starts, asks the caller's `batches(step)`
  for the stream from that step, finishes the interrupted epoch, then runs the remaining ones.
With a stream that is a function of the step (vit_zoo.train.data.training_batches) and
deterministic ops, the resumed run ends with the weights of the uninterrupted one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import h5py
import keras

WEIGHTS_FILE = "latest.weights.h5"
STEP_ATTRIBUTE = "vit_zoo_global_step"


class StepBackup(keras.callbacks.BackupAndRestore):
    """Saves model + optimizer state and the global step every `save_freq` steps (and at each
    epoch end) into `backup_dir`. Restoring is `restore_step`'s job, before `fit`."""

    def __init__(self, backup_dir: str | os.PathLike, save_freq: int, start_step: int = 0):
        super().__init__(str(backup_dir), save_freq=save_freq, delete_checkpoint=False)
        self.global_step = start_step
        self._epoch_start = start_step

    def on_train_begin(self, logs=None):
        """The state was restored by restore_step before fit started; nothing to load here."""

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = self.global_step

    def on_train_batch_end(self, batch, logs=None):
        # `batch` is the index of the last batch run (steps_per_execution may run several).
        self.global_step = self._epoch_start + batch + 1
        super().on_train_batch_end(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._save_model()

    def _save_model(self):
        directory = Path(self.backup_dir)
        directory.mkdir(parents=True, exist_ok=True)
        partial = directory / f".partial-{WEIGHTS_FILE}"
        self.model.save_weights(partial, overwrite=True)
        with h5py.File(partial, "a") as file:
            file.attrs[STEP_ATTRIBUTE] = self.global_step
        os.replace(partial, directory / WEIGHTS_FILE)


def restore_step(model: keras.Model, backup_dir: str | os.PathLike) -> int:
    """Load the backup in `backup_dir` into the compiled `model` (weights and optimizer state);
    returns its global step, or 0 when there is no backup."""
    path = Path(backup_dir) / WEIGHTS_FILE
    if not path.exists():
        return 0
    with h5py.File(path, "r") as file:
        step = int(file.attrs[STEP_ATTRIBUTE])
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model.load_weights(path)
    return step


def fit_resumable(
    model: keras.Model,
    batches: Callable[[int], object],
    epochs: int,
    steps_per_epoch: int,
    backup_dir: str | os.PathLike,
    save_freq: int,
    callbacks: list | None = None,
    **fit_kwargs,
) -> list[keras.callbacks.History]:
    """`model.fit` for `epochs` epochs of `steps_per_epoch` steps that resumes where the last
    run in `backup_dir` stopped. `batches(step)` returns the training stream from global `step`
    on. Returns the History of each `fit` call (two after a mid-epoch resume, else one)."""
    start = restore_step(model, backup_dir)
    epoch, offset = divmod(start, steps_per_epoch)
    backup = StepBackup(backup_dir, save_freq, start_step=start)
    callbacks = [backup, *(callbacks or [])]
    # The batches come shuffled from tf.data (a function of seed, epoch and step); Keras's
    # default shuffle=True does nothing for a dataset but warn.
    fit_kwargs = {"shuffle": False, **fit_kwargs}
    histories = []
    if epoch >= epochs:
        return histories
    if offset:  # finish the interrupted epoch on the batches it had left
        histories.append(model.fit(batches(start), initial_epoch=epoch, epochs=epoch + 1,
                                   steps_per_epoch=steps_per_epoch - offset,
                                   callbacks=callbacks, **fit_kwargs))
        epoch += 1
    if epoch < epochs:
        histories.append(model.fit(batches(epoch * steps_per_epoch), initial_epoch=epoch,
                                   epochs=epochs, steps_per_epoch=steps_per_epoch,
                                   callbacks=callbacks, **fit_kwargs))
    return histories
