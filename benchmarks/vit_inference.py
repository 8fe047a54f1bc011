"""ViT-B/16 inference throughput: vit_zoo against keras-hub's ViTBackbone, interleaved.

Both models have the same shape (224 px, patch 16, width 768, 12 blocks, 12 heads, MLP 3072,
class token, no head) and run through the same harness: a tf.function around
`model(images, training=False)` on a fixed batch, float32 and mixed_bfloat16. Each round times
every contender back to back, so drift on the shared machine hits both alike; the ratio is the
median of the per-round ratios (with its quartiles), throughputs are medians, and each is also
given as a share of this machine's matmul rate measured in the same run.

    python benchmarks/vit_inference.py [--batch 8] [--rounds 7] [--iterations 3] [--xla]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from timing import interleaved, speed_ratio  # noqa: E402

import vit_zoo  # noqa: E402

GMACS_PER_IMAGE = 17.56  # ViT-B/16 at 224, forward


def matmul_rate(dtype: str, size: int = 4096, repeats: int = 10) -> float:
    """Median GFLOP/s of a size x size matmul through TF on this machine."""
    a = tf.random.normal((size, size), dtype="float32")
    a = tf.cast(a, dtype)
    step = tf.function(lambda x: tf.linalg.matmul(x, x))
    step(a).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(a).numpy()
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def vit_zoo_model() -> keras.Model:
    return vit_zoo.ViT_B16(include_top=False, pooling="token", include_preprocessing=False)


def keras_hub_model() -> keras.Model:
    import keras_hub

    return keras_hub.models.ViTBackbone(
        image_shape=(224, 224, 3), patch_size=16, num_layers=12, num_heads=12, hidden_dim=768,
        mlp_dim=3072,
    )


def harness(model: keras.Model, jit: bool):
    call = tf.function(lambda x: model(x, training=False), jit_compile=jit)
    return lambda x: tf.nest.flatten(call(x))[0].numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--iterations", type=int, default=3, help="timed calls per round")
    parser.add_argument("--xla", action="store_true", help="jit_compile the harness (both)")
    args = parser.parse_args()

    images = np.random.default_rng(0).normal(size=(args.batch, 224, 224, 3)).astype("float32")
    contenders = {}
    for policy in ("float32", "mixed_bfloat16"):
        keras.mixed_precision.set_global_policy(policy)
        for name, build in (("vit_zoo", vit_zoo_model), ("keras_hub", keras_hub_model)):
            run = harness(build(), args.xla)
            contenders[(policy, name)] = lambda run=run: run(images)
    keras.mixed_precision.set_global_policy("float32")
    times = interleaved(contenders, args.rounds, args.iterations)

    rates = {"float32": matmul_rate("float32"), "mixed_bfloat16": matmul_rate("bfloat16")}
    print(f"ViT-B/16 224 px, batch {args.batch}, {'XLA' if args.xla else 'no XLA'}, "
          f"{args.rounds} rounds x {args.iterations} calls, medians")
    print(f"matmul 4096^2: float32 {rates['float32']:.0f} GFLOP/s, "
          f"bfloat16 {rates['mixed_bfloat16']:.0f} GFLOP/s")
    for policy in ("float32", "mixed_bfloat16"):
        for name in ("vit_zoo", "keras_hub"):
            throughput = args.batch / statistics.median(times[(policy, name)])
            share = throughput * GMACS_PER_IMAGE * 2 / rates[policy]
            print(f"  {policy:<15} {name:<10} {throughput:7.2f} img/s "
                  f"({share:5.1%} of matmul rate)")
        ratio = speed_ratio(times[(policy, "vit_zoo")], times[(policy, "keras_hub")])
        print(f"  {policy:<15} speed ratio vit_zoo / keras_hub: {ratio}")


if __name__ == "__main__":
    main()
