"""How XCiT's cost grows with the input size, beside a ViT of the same width and depth.

XCiT-S12/16 and ViT-S/16 (width 384, 12 blocks, 16 px patches), random weights, float32,
batch 1, at 224, 448 and 896 px (196, 784 and 3136 tokens). Two measures per size:
- multiply-accumulates counted from the graph (vit_zoo.complexity, nothing allocated): exact
  and machine-independent;
- time per image, every model timed in interleaved rounds (median).
Cross-covariance attention is linear in the tokens, so one doubling of the side (4x the
tokens) should cost XCiT about 4x; ViT's N x N attention grows towards 16x.

    python benchmarks/xcit_scaling.py [--rounds 5] [--sizes 224 448 896]
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from timing import cpu_description, interleaved  # noqa: E402

from vit_zoo import complexity  # noqa: E402
from vit_zoo.models.vit import ViT_S16  # noqa: E402
from vit_zoo.models.xcit import XCiT_S12_P16  # noqa: E402

BUILDERS = {"XCiT-S12/16": XCiT_S12_P16, "ViT-S/16": ViT_S16}


def build(name: str, size: int):
    return BUILDERS[name](input_shape=(size, size, 3), include_preprocessing=False)


def runner(model, size: int):
    call = tf.function(lambda x: model(x, training=False))
    images = tf.constant(np.random.default_rng(0).normal(size=(1, size, size, 3)), tf.float32)
    return lambda: call(images).numpy()


def growth(values: dict[int, float]) -> str:
    sizes = sorted(values)
    return ", ".join(f"{a}->{b} x{values[b] / values[a]:.2f}" for a, b in zip(sizes, sizes[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 448, 896])
    args = parser.parse_args()
    print(cpu_description())
    macs = {name: {size: complexity.cost(lambda n=name, s=size: build(n, s)).macs
                   for size in args.sizes} for name in BUILDERS}
    runs = {(name, size): runner(build(name, size), size)
            for name in BUILDERS for size in args.sizes}
    times = {key: statistics.median(t) for key, t in interleaved(runs, args.rounds).items()}
    print(f"float32, batch 1, median of {args.rounds} interleaved rounds")
    for name in BUILDERS:
        seconds = {size: times[(name, size)] for size in args.sizes}
        print(f"  {name:<12} " + ", ".join(
            f"{size} px {macs[name][size] / 1e9:.2f} GMACs {seconds[size] * 1000:.0f} ms"
            for size in args.sizes))
        print(f"  {'':<12} growth per doubling of the side: MACs {growth(macs[name])}; "
              f"time {growth(seconds)}")


if __name__ == "__main__":
    main()
