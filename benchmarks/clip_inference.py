"""CLIP ViT-B/32 inference throughput: vit_zoo against open_clip (PyTorch), interleaved.

Same network on both sides, random weights: `vit_zoo.CLIP_ViT_B32(weights=None)` and
`open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)` (quick-GELU, as OpenAI's).
Measured per tower:
- image encoding: a batch of normalized 224 px images -> projected embeddings. vit_zoo is built
  with `include_preprocessing=False` because open_clip's `encode_image` takes normalized
  images too; vit_zoo's tower is called through a tf.function, open_clip's `encode_image`
  under `torch.inference_mode()`.
- text encoding: a batch of int32 token rows [N, 77] (real captions, tokenized) -> projected
  embeddings; vit_zoo's text tower through a tf.function, open_clip's `encode_text`.
float32, and bfloat16 (Keras mixed_bfloat16 policy; torch.autocast("cpu", bfloat16)). PyTorch
runs on 2 threads (this machine's cores). Each round times every contender back to back, so
drift on the shared machine hits all alike; throughputs are medians, ratios are medians of the
per-round ratios with quartiles, and each throughput is also given as a share of this
machine's matmul rate: a 4096^2 TF matmul timed as one more contender in the same rounds, so
the load of other work on the machine weighs on it as on the models.

    /work/venv/bin/python benchmarks/clip_inference.py [--image-batch 8] [--text-batch 32]
        [--rounds 11] [--iterations 1] [--float32-only]
"""

from __future__ import annotations

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# PyTorch first: importing open_clip (torch, torchvision) after TensorFlow segfaults.
import open_clip  # noqa: E402, I001
import torch  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import vit_zoo  # noqa: E402
from clip_tokenizer import captions  # noqa: E402
from timing import interleaved, speed_ratio  # noqa: E402

RESOLUTION, PATCH, CONTEXT = 224, 32, 77
MATMUL_SIZE = 4096


def transformer_macs(tokens: int, width: int, depth: int) -> float:
    """Multiply-accumulates of `depth` pre-norm blocks (MLP 4x): projections and attention."""
    projections = tokens * (4 * width * width + 2 * width * 4 * width)
    attention = 2 * tokens * tokens * width  # scores and the weighted sum of values
    return depth * (projections + attention)


def image_gmacs() -> float:
    """GMACs of one ViT-B/32 image: patch embedding, 12 blocks of width 768, projection."""
    patches = (RESOLUTION // PATCH) ** 2
    stem = patches * 3 * PATCH * PATCH * 768
    return (stem + transformer_macs(patches + 1, 768, 12) + 768 * 512) / 1e9


def text_gmacs() -> float:
    """GMACs of one text: 12 causal blocks of width 512 over 77 tokens (computed in full by
    both), projection of the pooled token."""
    return (transformer_macs(CONTEXT, 512, 12) + 512 * 512) / 1e9


def keras_runner(tower: keras.Model, inputs: np.ndarray):
    """A user's inference call: the tower in a tf.function on a fixed batch."""
    call = tf.function(lambda x: tower(x, training=False))
    tensor = tf.constant(inputs)
    return lambda: call(tensor).numpy()


def matmul_probe(dtype: str):
    """One MATMUL_SIZE^2 matmul in TF: the machine's matmul rate when timed."""
    a = tf.cast(tf.random.normal((MATMUL_SIZE, MATMUL_SIZE)), dtype)
    step = tf.function(lambda x: tf.linalg.matmul(x, x))
    return lambda: step(a).numpy()


def torch_runner(encode, inputs: torch.Tensor, bfloat16: bool):
    def run():
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bfloat16):
            return encode(inputs).float().numpy()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-batch", type=int, default=8)
    parser.add_argument("--text-batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--iterations", type=int, default=1, help="timed calls per round")
    parser.add_argument("--float32-only", action="store_true", help="skip bfloat16")
    args = parser.parse_args()

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(args.image_batch, RESOLUTION, RESOLUTION, 3)).astype("float32")
    token_ids = vit_zoo.CLIPTokenizer()(captions(args.text_batch))
    torch_images = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())  # NCHW
    torch_ids = torch.from_numpy(token_ids.astype(np.int64))

    reference = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None).eval()
    precisions = {"float32": "float32"}
    if not args.float32_only:
        precisions["bfloat16"] = "mixed_bfloat16"
    contenders = {}
    for precision, policy in precisions.items():
        keras.mixed_precision.set_global_policy(policy)  # Keras fixes dtypes at build time
        model = vit_zoo.CLIP_ViT_B32(weights=None, include_preprocessing=False)
        bfloat16 = precision == "bfloat16"
        contenders[(precision, "image", "vit_zoo")] = keras_runner(model.image_encoder, images)
        contenders[(precision, "image", "open_clip")] = torch_runner(
            reference.encode_image, torch_images, bfloat16)
        contenders[(precision, "text", "vit_zoo")] = keras_runner(model.text_encoder, token_ids)
        contenders[(precision, "text", "open_clip")] = torch_runner(
            reference.encode_text, torch_ids, bfloat16)
        contenders[(precision, "matmul", "tf")] = matmul_probe(precision)
    keras.mixed_precision.set_global_policy("float32")
    times = interleaved(contenders, args.rounds, args.iterations)

    rates = {p: 2 * MATMUL_SIZE**3 / statistics.median(times[(p, "matmul", "tf")]) / 1e9
             for p in precisions}
    towers = {"image": (args.image_batch, image_gmacs(), "img/s"),
              "text": (args.text_batch, text_gmacs(), "texts/s")}
    print(f"CLIP ViT-B/32, random weights, images {args.image_batch} x {RESOLUTION} px, texts "
          f"{args.text_batch} x {CONTEXT} tokens; {args.rounds} rounds x {args.iterations} "
          f"calls, medians; torch threads {torch.get_num_threads()}")
    measured = ", ".join(f"{p} {r:.0f} GFLOP/s" for p, r in rates.items())
    print(f"matmul {MATMUL_SIZE}^2 (TF, same rounds): {measured}; "
          f"GMACs: image {image_gmacs():.2f}, text {text_gmacs():.2f}")
    for precision in precisions:
        for tower, (batch, gmacs, unit) in towers.items():
            for name in ("vit_zoo", "open_clip"):
                throughput = batch / statistics.median(times[(precision, tower, name)])
                share = throughput * gmacs * 2 / rates[precision]
                print(f"  {precision:<9} {tower:<6} {name:<10} {throughput:8.2f} {unit:<8}"
                      f"({share:5.1%} of matmul rate)")
            ratio = speed_ratio(times[(precision, tower, "vit_zoo")],
                                times[(precision, tower, "open_clip")])
            print(f"  {precision:<9} {tower:<6} speed ratio vit_zoo / open_clip: {ratio}")


if __name__ == "__main__":
    main()
