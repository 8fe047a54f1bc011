"""Swin-T inference: vit_zoo against keras-hub's SwinTransformerBackbone and timm (PyTorch),
interleaved in one run, float32 and bfloat16; then how vit_zoo's time grows with input size.

Same network on all three sides: Swin-T backbone (window 7, final LayerNorm), 224 px, batch 8,
random weights, no classification head. Each round times every contender back to back; ratios
are medians of per-round ratios (quartiles shown). bfloat16 is Keras mixed_bfloat16 and
torch.autocast(bfloat16).

Scaling: windowed attention costs O(HW), so one doubling of the side should cost about 4x
(global attention would cost about 16x at these sizes). Printed as time ratios for 224 -> 448
-> 896 px, batch 1, float32.

    python benchmarks/swin_inference.py [--batch 8] [--rounds 7] [--skip-scaling]
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# PyTorch first: importing torchvision (via timm) after TensorFlow segfaults with these wheels.
import timm  # noqa: E402, I001
import torch  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import vit_zoo  # noqa: E402
from timing import interleaved, speed_ratio  # noqa: E402


def keras_runner(model: keras.Model, images: np.ndarray):
    call = tf.function(lambda x: model(x, training=False))
    tensor = tf.constant(images)
    return lambda: tf.nest.flatten(call(tensor))[0].numpy()


def vit_zoo_swin(size: int) -> keras.Model:
    return vit_zoo.Swin_T(include_top=False, include_preprocessing=False,
                          input_shape=(size, size, 3))


def keras_hub_swin(size: int) -> keras.Model:
    from keras_hub.models import SwinTransformerBackbone

    return SwinTransformerBackbone(image_shape=(size, size, 3), embed_dim=96,
                                   depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7)


def timm_runner(images: np.ndarray, bfloat16: bool):
    model = timm.create_model("swin_tiny_patch4_window7_224", num_classes=0,
                              global_pool="").eval()
    tensor = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())

    def run():
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bfloat16):
            return model(tensor).float().numpy()

    return run


def compare(args) -> None:
    images = np.random.default_rng(0).normal(size=(args.batch, 224, 224, 3)).astype("float32")
    contenders = {}
    for precision, policy in (("float32", "float32"), ("bfloat16", "mixed_bfloat16")):
        keras.mixed_precision.set_global_policy(policy)
        contenders[(precision, "vit_zoo")] = keras_runner(vit_zoo_swin(224), images)
        contenders[(precision, "keras_hub")] = keras_runner(keras_hub_swin(224), images)
        contenders[(precision, "timm")] = timm_runner(images, precision == "bfloat16")
    keras.mixed_precision.set_global_policy("float32")
    times = interleaved(contenders, args.rounds)
    print(f"Swin-T backbone, 224 px, batch {args.batch}, {args.rounds} rounds")
    for precision in ("float32", "bfloat16"):
        rates = {name: args.batch / statistics.median(times[(precision, name)])
                 for name in ("vit_zoo", "keras_hub", "timm")}
        print(f"  {precision:<9} " + "   ".join(f"{n} {r:6.2f} img/s" for n, r in rates.items()))
        ours = times[(precision, "vit_zoo")]
        print(f"  {precision:<9} vit_zoo / keras_hub "
              f"{speed_ratio(ours, times[(precision, 'keras_hub')])}, vit_zoo / timm "
              f"{speed_ratio(ours, times[(precision, 'timm')])}")


def scaling(args) -> None:
    runs = {}
    for size in (224, 448, 896):
        images = np.random.default_rng(0).normal(size=(1, size, size, 3)).astype("float32")
        runs[size] = keras_runner(vit_zoo_swin(size), images)
    seconds = {size: statistics.median(t) for size, t in interleaved(runs, args.rounds).items()}
    print("vit_zoo Swin-T float32, batch 1: " + ", ".join(
        f"{size} px {s * 1000:.0f} ms" for size, s in seconds.items()))
    print(f"  time ratio per doubling of the side: 224->448 {seconds[448] / seconds[224]:.2f}x, "
          f"448->896 {seconds[896] / seconds[448]:.2f}x (linear in pixels: 4x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--skip-scaling", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    compare(args)
    if not args.skip_scaling:
        scaling(args)


if __name__ == "__main__":
    main()
