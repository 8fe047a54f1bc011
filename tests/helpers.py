"""Shared test helpers: running reference scripts out of process, comparing outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REFERENCE_DIR = Path(__file__).parent / "reference"


def relative_error(ours, reference) -> float:
    """max |ours - reference| / max |reference|: the parity figure of the project guide."""
    ours, reference = np.asarray(ours, "float64"), np.asarray(reference, "float64")
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))


def run_python(
    args: list[str], env: dict | None = None, timeout: float = 900, check: bool = True
) -> str:
    """Run `python args...` in a fresh process; fail with its output if it fails. With
    check=False a failure is expected: its stdout and stderr are returned together."""
    result = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    if not check:
        assert result.returncode != 0, f"{' '.join(args)} should have failed:\n{result.stdout}"
        return result.stdout + result.stderr
    if result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


def run_reference(script: str, out_dir: Path, cases: dict) -> Path:
    """Run tests/reference/<script> (PyTorch side) on `cases`, writing into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = out_dir / "cases.json"
    spec.write_text(json.dumps(cases))
    run_python([str(REFERENCE_DIR / script), str(out_dir), str(spec)])
    return out_dir


def randomize(model, seed: int = 0, scale: float = 0.1, gamma_center: float = 0.0):
    """Give every variable random values (heads start at zero otherwise), norm scales around
    `gamma_center`, BatchNorm variances in [0.5, 1.5] (a negative one would make NaN outputs,
    which compare equal in the round trips); returns the model."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        if variable.path.endswith("moving_variance"):
            value = rng.uniform(0.5, 1.5, variable.shape)
        else:
            center = gamma_center if variable.path.endswith("gamma") else 0.0
            value = rng.normal(center, scale, variable.shape)
        variable.assign(value.astype("float32"))
    return model
