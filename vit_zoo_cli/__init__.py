"""The `vit-zoo` command's front door, outside the vit_zoo package on purpose.

`import vit_zoo` imports Keras and TensorFlow (it registers vit_zoo's layers, so that .keras files
load), which takes seconds and prints TensorFlow's native start-up log. This package needs only
the standard library: it parses the arguments (so `--help` and argument errors answer at once),
checks the command's files (vit_zoo_cli.checks), and only then imports vit_zoo.cli, which does
the work, with TensorFlow's native log kept off the terminal (vit_zoo_cli.quiet). Errors the
user can act on print one line, `vit-zoo: error: ...`, and exit with status 2; anything else
keeps its traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback

from vit_zoo_cli import arguments, checks
from vit_zoo_cli.checks import UsageError
from vit_zoo_cli.quiet import NativeLogCapture

__all__ = ["UsageError", "main"]

#: When the command started (before TensorFlow was imported): commands report wall time from it.
STARTED = time.perf_counter()

_NATIVE_LOG_LINES = 40


def _verbose(args) -> bool:
    flag = os.environ.get("VIT_ZOO_VERBOSE", "").strip().lower()
    return bool(args.verbose) or flag not in ("", "0", "false", "no")


def _actionable() -> tuple[type[BaseException], ...]:
    """Exceptions that describe something the user can fix (vit_zoo's messages say what)."""
    try:
        from vit_zoo.weights import CheckpointError, WeightsDownloadError, WeightsIntegrityError
    except ImportError:  # vit_zoo itself failed to import: not the user's doing
        return ()
    return (ValueError, CheckpointError, WeightsDownloadError, WeightsIntegrityError,
            FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
            PermissionError)


def error(message: object) -> int:
    print(f"vit-zoo: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run `vit-zoo` with `argv` (default: the process's arguments); returns the exit status."""
    args = arguments.parser().parse_args(argv)
    verbose = _verbose(args)
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        checks.preflight(args)
    except UsageError as problem:
        return error(problem)
    capture = contextlib.nullcontext() if verbose else NativeLogCapture()
    with capture as log:
        try:
            from vit_zoo import cli

            return cli.run(args)
        except KeyboardInterrupt:
            print("vit-zoo: interrupted", file=sys.stderr)
            return 130
        except Exception as problem:
            if isinstance(problem, (UsageError, *_actionable())):
                if verbose:
                    traceback.print_exc()
                return error(str(problem).strip())
            if log is not None and log.active and log.text().strip():
                tail = log.text().strip().splitlines()[-_NATIVE_LOG_LINES:]
                print("TensorFlow's log (hidden by default, --verbose shows it live):\n  "
                      + "\n  ".join(tail), file=sys.stderr)
            raise

