"""Forward + backward of the layers vit_zoo trains with fused kernels on TensorFlow, against the
path TensorFlow's autodiff would take, at the shapes of one ViT-S/16 block (batch 32, 224 px).

- GELU (tanh) on the MLP's hidden activations (6,304 x 1,536): `activations.gelu_tanh` under
  autodiff against `training_kernels.fused_activation("gelu_tanh")`.
- Layer norm on the tokens (32 x 197 x 384): vit_zoo's `LayerNormalization` with
  training=False (Keras's own ops) against training=True (the fused kernel).
- Patch projection of the images (32 x 224 x 224 x 3): `PatchEmbedding` with training=False (the
  strided convolution) against training=True (one matmul).

Each pass is one call of a tf.function (no XLA around it, Keras's default on CPU); each timing is
10 passes; contenders alternate round by round (benchmarks/timing.py).

    python benchmarks/training_kernels.py [--rounds 7] [--dtype bfloat16|float32]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from timing import interleaved, speed_ratio  # noqa: E402

REPEATS = 10  # passes per timed call


def gradient_runner(function, inputs: list, weights: list):
    """A call running one forward + backward pass of `function` over `inputs` in a tf.function,
    with the gradients of `inputs` and `weights` (all of them fetched, so none is pruned)."""
    import tensorflow as tf

    @tf.function
    def one_pass():
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.reduce_sum(tf.cast(function(*inputs), tf.float32))
        gradients = tape.gradient(loss, inputs + weights)
        return [tf.reduce_sum(tf.cast(g, tf.float32)) for g in gradients]

    return lambda: [g.numpy() for g in one_pass()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--dtype", choices=("bfloat16", "float32"), default="bfloat16")
    args = parser.parse_args()

    import tensorflow as tf

    from vit_zoo.layers import PatchEmbedding, activations, training_kernels
    from vit_zoo.layers.normalization import LayerNormalization

    policy = "mixed_bfloat16" if args.dtype == "bfloat16" else "float32"
    hidden = tf.cast(tf.random.normal((32 * 197, 1536)), args.dtype)
    tokens = tf.cast(tf.random.normal((32, 197, 384)), args.dtype)
    images = tf.random.uniform((32, 224, 224, 3))
    norm = LayerNormalization(epsilon=1e-6, dtype=policy)
    embed = PatchEmbedding(16, 384, dtype=policy)
    norm.build(tokens.shape)
    embed.build(images.shape)

    contenders = {
        ("gelu", "autodiff"): gradient_runner(activations.gelu_tanh, [hidden], []),
        ("gelu", "fused"): gradient_runner(training_kernels.fused_activation("gelu_tanh"),
                                           [hidden], []),
    }
    for name, layer, inputs in (("layer norm", norm, tokens), ("patch projection", embed, images)):
        for label, training in (("autodiff", False), ("fused", True)):
            contenders[(name, label)] = gradient_runner(
                lambda x, layer=layer, training=training: layer(x, training=training),
                [inputs], list(layer.trainable_weights))
    times = interleaved(contenders, args.rounds, iterations=REPEATS)

    print(f"forward + backward, {args.dtype}, {REPEATS} passes per timing, {args.rounds} rounds, "
          f"on {os.cpu_count()} cores")
    for name in ("gelu", "layer norm", "patch projection"):
        plain, fused = times[(name, "autodiff")], times[(name, "fused")]
        print(f"  {name:<17} TF autodiff {1e3 * min(plain):6.1f} ms, vit_zoo training path "
              f"{1e3 * min(fused):6.1f} ms: {speed_ratio(fused, plain)}")


if __name__ == "__main__":
    main()
