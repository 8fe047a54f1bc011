"""Keeping TensorFlow's native start-up log off the terminal.

TensorFlow 2.21's C++ side (absl, the CUDA stubs, the CPU feature guard) writes straight to file
descriptor 2, and TF_CPP_MIN_LOG_LEVEL does not silence all of it ("All log messages before
absl::InitializeLog() ..."). So, for the whole command, descriptor 2 points at a temporary file,
while Python's sys.stderr (warnings, vit_zoo's messages, tracebacks) keeps the terminal.
"""

from __future__ import annotations

import os
import sys
import tempfile


class NativeLogCapture:
    """Context manager: native writes to fd 2 go to a temporary file, Python's to the terminal.

    Only applies when sys.stderr is the process's own stderr (a harness that replaced it, such
    as pytest's capsys, is left alone)."""

    def __init__(self) -> None:
        self.active = False
        self._log = None

    def __enter__(self) -> NativeLogCapture:
        if sys.stderr is not sys.__stderr__ or not _has_fd(2):
            return self
        sys.stderr.flush()
        self._terminal = os.dup(2)
        self._log = tempfile.TemporaryFile()
        os.dup2(self._log.fileno(), 2)
        self._python_stderr = sys.stderr
        sys.stderr = open(os.dup(self._terminal), "w", buffering=1,
                          encoding=self._python_stderr.encoding, errors="backslashreplace")
        self.active = True
        return self

    def text(self) -> str:
        """What native code wrote so far."""
        if self._log is None:
            return ""
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")

    def __exit__(self, *exc_info) -> None:
        if not self.active:
            return
        sys.stderr.flush()
        sys.stderr.close()
        sys.stderr = self._python_stderr
        os.dup2(self._terminal, 2)
        os.close(self._terminal)
        self.active = False


def _has_fd(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
