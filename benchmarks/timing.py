"""Shared timing for the benchmarks: warm-up, interleaved rounds, paired ratios."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Hashable


def interleaved(contenders: dict[Hashable, Callable[[], object]], rounds: int,
                iterations: int = 1) -> dict[Hashable, list[float]]:
    """Seconds per call of every contender, measured round by round, back to back, so drift on
    a shared machine hits all of them alike. Each contender is called twice first (tracing,
    compilation, caches)."""
    for run in contenders.values():
        run()
        run()
    times = {key: [] for key in contenders}
    for _ in range(rounds):
        for key, run in contenders.items():
            start = time.perf_counter()
            for _ in range(iterations):
                run()
            times[key].append((time.perf_counter() - start) / iterations)
    return times


def speed_ratio(ours: list[float], theirs: list[float]) -> str:
    """Median of per-round speed ratios (their time / our time) with quartiles."""
    low, median, high = statistics.quantiles([t / o for o, t in zip(ours, theirs)], n=4)
    return f"{median:.2f}x (quartiles {low:.2f}-{high:.2f} over {len(ours)} rounds)"


def cpu_description() -> str:
    """The CPU model and its matrix extensions (AMX, AVX512-BF16, VNNI), from lscpu."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                 if line.startswith("Model name")), "unknown CPU")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("Flags")), [])
    matrix = sorted(flag for flag in flags
                    if flag.startswith("amx") or flag in ("avx512_bf16", "avx512_vnni"))
    return f"{name} ({', '.join(matrix) or 'no bf16/AMX extensions'}), {os.cpu_count()} CPUs"
