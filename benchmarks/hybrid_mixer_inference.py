"""R50+ViT-B/16 and Mixer-B/16 inference throughput: vit_zoo (Keras, TensorFlow) against timm
(PyTorch, CPU), interleaved in one run, float32 and bfloat16 (Keras mixed_bfloat16 against
torch.autocast(bfloat16)).

Same shapes on both sides (224 px, batch 8, 1000-class head), random weights. Each round times
every contender back to back; the ratio is the median of per-round ratios (quartiles shown).

    python benchmarks/hybrid_mixer_inference.py [--batch 8] [--rounds 9] [--iterations 2]
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# PyTorch first: importing torchvision (via timm) after TensorFlow segfaults in this pairing of
# wheels (TF 2.21, torch 2.14); the other order works.
import timm  # noqa: E402, I001
import torch  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import vit_zoo  # noqa: E402
from timing import interleaved, speed_ratio  # noqa: E402

MODELS = {"R50+ViT-B/16": ("R50_ViT_B16", "vit_base_r50_s16_224"),
          "Mixer-B/16": ("Mixer_B16", "mixer_b16_224")}


def keras_runner(builder: str, images: np.ndarray):
    model = getattr(vit_zoo, builder)(classes=1000, include_preprocessing=False)
    call = tf.function(lambda x: model(x, training=False))
    tensor = tf.constant(images)
    return lambda: call(tensor).numpy()


def timm_runner(name: str, images: np.ndarray, bfloat16: bool):
    model = timm.create_model(name, pretrained=False, num_classes=1000).eval()
    tensor = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())

    def run():
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bfloat16):
            return model(tensor).float().numpy()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--iterations", type=int, default=2, help="timed calls per round")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    images = np.random.default_rng(0).normal(size=(args.batch, 224, 224, 3)).astype("float32")

    contenders = {}
    for precision, policy in (("float32", "float32"), ("bfloat16", "mixed_bfloat16")):
        keras.mixed_precision.set_global_policy(policy)
        for label, (builder, timm_name) in MODELS.items():
            contenders[(label, precision, "vit_zoo")] = keras_runner(builder, images)
            contenders[(label, precision, "timm")] = timm_runner(
                timm_name, images, precision == "bfloat16")
    keras.mixed_precision.set_global_policy("float32")
    times = interleaved(contenders, args.rounds, args.iterations)

    print(f"224 px, batch {args.batch}, {args.rounds} rounds x {args.iterations} calls, "
          f"torch threads {torch.get_num_threads()}")
    for label in MODELS:
        for precision in ("float32", "bfloat16"):
            ours, theirs = times[(label, precision, "vit_zoo")], times[(label, precision, "timm")]
            ours_rate = args.batch / statistics.median(ours)
            theirs_rate = args.batch / statistics.median(theirs)
            print(f"  {label:<13} {precision:<9} vit_zoo {ours_rate:6.2f} img/s   "
                  f"timm {theirs_rate:6.2f} img/s   ratio {speed_ratio(ours, theirs)}")


if __name__ == "__main__":
    main()
