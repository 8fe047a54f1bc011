"""ViT-S/16 training throughput: vit_zoo against keras-hub's ViT and timm on PyTorch, interleaved.

One training step is forward, loss, backward and an AdamW update with global-norm clipping at 1
on a fixed random batch already in memory (224 px, batch 32, 1000 classes, random weights):

- vit_zoo: `vit_zoo.ViT("S/16", classes=1000, classifier_activation=None)` compiled with
  `vit_zoo.train.optimizers.build_optimizer(model, "adamw", 1e-3, 0.05)` (per-variable decay,
  clipping at 1), CategoricalCrossentropy(from_logits=True), jit_compile from --jit-compile,
  trained by `model.fit` on a repeated tf.data dataset of the one batch (pixels in [0, 255]:
  the model normalizes them itself).
- keras-hub: `keras_hub.models.ViTBackbone` of the same shape (patch 16, 12 blocks, 6 heads,
  width 384, MLP 1536) with a Dense(1000) head on the class token, keras.optimizers.AdamW
  (decay 0.05, clipping at 1), same loss, the same jit_compile, `model.fit` on the same data
  (normalized pixels).
- timm: `vit_small_patch16_224` on PyTorch (eager), torch.optim.AdamW (decay 0.05),
  clip_grad_norm_(1), cross-entropy, torch.set_num_threads(2). It runs in a worker process (this
  script with --torch-worker: PyTorch and TensorFlow must not share a process) that trains on
  request, so its steps interleave with the Keras ones.

Each precision is its own model: float32, and bfloat16 as Keras's mixed_bfloat16 policy (float32
head on both Keras sides) or torch.autocast("cpu", bfloat16). Two calls per contender warm up
(XLA compilation, allocator, caches) and are not timed; then each round times every contender
back to back, and 4096 x 4096 TensorFlow matmuls in float32 and bfloat16 with them (TF's oneDNN
kernel, and XLA's), so drift on the shared machine hits all alike. Throughputs are medians over
rounds; ratios are medians of the per-round ratios (with quartiles). The share of the matmul rate
(oneDNN's, the faster) counts a training step as 3x the forward FLOPs (backward ~ 2x forward), the
forward computed from the architecture below.

    python benchmarks/vit_training.py [--batch 32] [--rounds 4] [--steps 1]
                                      [--jit-compile auto|true|false] [--quick]

--jit-compile is both Keras sides' `compile(jit_compile=...)`; "auto", the default of Keras and
of `vit-zoo train`, is XLA with an accelerator and the TF graph with oneDNN's kernels on a
CPU-only machine such as this one. "true" compiles whole steps with XLA.

--quick is a smoke run (1 block, batch 4, 2 rounds) that finishes in about a minute; its
figures say nothing about the full model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from timing import interleaved, speed_ratio  # noqa: E402

IMAGE_SIZE, PATCH, WIDTH, HEADS, MLP_DIM, CLASSES = 224, 16, 384, 6, 1536, 1000
LEARNING_RATE, WEIGHT_DECAY, CLIP_NORM = 1e-3, 0.05, 1.0
PRECISIONS = ("float32", "bfloat16")
KERAS_POLICY = {"float32": "float32", "bfloat16": "mixed_bfloat16"}


def forward_macs(depth: int, size: int = IMAGE_SIZE) -> int:
    """Multiply-accumulates of one ViT forward pass (one image): patch projection, per block the
    qkv projection, q k^T, attention x v, output projection and the two MLP matmuls, and the head
    on the class token. Elementwise work (norms, softmax, GELU) is left out. ViT-S/16 at 224:
    4.60 G."""
    patches = (size // PATCH) ** 2
    tokens = patches + 1
    block = (tokens * WIDTH * 3 * WIDTH  # qkv
             + 2 * tokens * tokens * WIDTH  # logits and weighted values, all heads
             + tokens * WIDTH * WIDTH  # output projection
             + 2 * tokens * WIDTH * MLP_DIM)  # MLP
    return patches * PATCH * PATCH * 3 * WIDTH + depth * block + WIDTH * CLASSES


def training_flops(depth: int) -> float:
    """FLOPs of one training step per image: forward plus a backward of about twice as much."""
    return 3 * 2 * forward_macs(depth)


def batch_data(batch: int):
    """Random pixels in [0, 255], the same normalized to [-1, 1], one-hot labels."""
    import numpy as np

    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, size=(batch, IMAGE_SIZE, IMAGE_SIZE, 3)).astype("float32")
    labels = np.eye(CLASSES, dtype="float32")[rng.integers(0, CLASSES, batch)]
    return pixels, pixels / 127.5 - 1.0, labels


# --- PyTorch side: a worker process that trains timm on request ---------------------------


def torch_worker(args) -> None:
    """Build both timm models, say "ready", then for each stdin line "<precision> <steps>" run
    that many training steps and answer with a JSON line."""
    import timm
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(0)
    _, normalized, labels = batch_data(args.batch)
    images = torch.from_numpy(normalized.transpose(0, 3, 1, 2).copy())
    targets = torch.from_numpy(labels.argmax(-1))
    steps = {}
    for precision in PRECISIONS:
        model = timm.create_model("vit_small_patch16_224", num_classes=CLASSES,
                                  depth=args.depth).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE,
                                      weight_decay=WEIGHT_DECAY)

        def step(model=model, optimizer=optimizer, bfloat16=precision == "bfloat16"):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
                loss = torch.nn.functional.cross_entropy(model(images), targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
            optimizer.step()
            return loss.detach()

        steps[precision] = step
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        precision, count = line.split()
        start = time.perf_counter()
        for _ in range(int(count)):
            loss = steps[precision]().item()
        print(json.dumps({"seconds": time.perf_counter() - start, "loss": loss}), flush=True)


class TorchWorker:
    """This script re-run with --torch-worker, driven over its stdin and stdout."""

    def __init__(self, args):
        command = [sys.executable, os.path.abspath(__file__), "--torch-worker",
                   "--batch", str(args.batch), "--depth", str(args.depth)]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
        self._answer()

    def _answer(self) -> dict:
        for line in self.process.stdout:  # skip anything a library printed
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"The PyTorch worker exited (status {self.process.wait()}).")

    def runner(self, precision: str, steps: int):
        def run():
            self.process.stdin.write(f"{precision} {steps}\n")
            self.process.stdin.flush()
            return self._answer()

        return run

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


# --- Keras side -------------------------------------------------------------------------------


def vit_zoo_model(depth: int):
    import vit_zoo
    from vit_zoo.models.vit import ViTArch
    from vit_zoo.train.optimizers import build_optimizer

    variant = "S/16" if depth == 12 else ViTArch(f"S/16-{depth}", WIDTH, depth, HEADS, MLP_DIM,
                                                 PATCH)
    model = vit_zoo.ViT(variant, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), classes=CLASSES,
                        classifier_activation=None)
    return model, build_optimizer(model, "adamw", LEARNING_RATE, WEIGHT_DECAY)


def keras_hub_model(depth: int):
    import keras
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), patch_size=PATCH, num_layers=depth,
        num_heads=HEADS, hidden_dim=WIDTH, mlp_dim=MLP_DIM,
    )
    tokens = backbone(backbone.input)
    # float32 head under mixed precision too, as vit_zoo's
    logits = keras.layers.Dense(CLASSES, dtype="float32", name="head")(tokens[:, 0])
    model = keras.Model(backbone.input, logits)
    optimizer = keras.optimizers.AdamW(LEARNING_RATE, weight_decay=WEIGHT_DECAY,
                                       global_clipnorm=CLIP_NORM)
    return model, optimizer


def repeated_batch(images, labels):
    """One batch, repeated, as a tf.data dataset. Autotuning is off: with it on, fit() often
    returned seconds after its last step had ended (call times rounded up to multiples of
    5.12 s on this machine), a stall in tearing down the iterator, not training."""
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return tf.data.Dataset.from_tensors((images, labels)).repeat().with_options(options)


def keras_runner(build, depth: int, precision: str, images, labels, steps: int,
                 xla: bool | str):
    """A call that trains `steps` steps of a fresh model under `precision` with model.fit."""
    import keras

    keras.config.set_dtype_policy(KERAS_POLICY[precision])
    try:
        model, optimizer = build(depth)
    finally:
        keras.config.set_dtype_policy("float32")
    model.compile(optimizer=optimizer,
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True), jit_compile=xla)
    data = repeated_batch(images, labels)
    return lambda: model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0, shuffle=False)


def matmul_runner(dtype: str, repeats: int, xla: bool = False, size: int = 4096):
    """A call that runs `repeats` size x size matmuls through TF: its oneDNN kernel, or XLA's."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal((size, size)), dtype)
    step = tf.function(lambda x: tf.linalg.matmul(x, x), jit_compile=xla)

    def run():
        for _ in range(repeats):
            result = step(a)
        return result.numpy()

    return run


def paired_median(ours: list[float], theirs: list[float]) -> float:
    """The median of per-round speed ratios (their time / our time), as speed_ratio prints."""
    return statistics.median(t / o for o, t in zip(ours, theirs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=1, help="training steps per timed call")
    parser.add_argument("--depth", type=int, default=12, help="transformer blocks")
    parser.add_argument("--jit-compile", choices=("auto", "true", "false"), default="auto",
                        help="Keras's compile(jit_compile=...) on both Keras sides")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: --depth 1 --batch 4 --rounds 2")
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.depth, args.batch, args.rounds = 1, 4, 2
    if args.torch_worker:
        torch_worker(args)
        return

    xla = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
    worker = TorchWorker(args)  # builds its models while TensorFlow starts here
    pixels, normalized, labels = batch_data(args.batch)
    contenders = {}
    for precision in PRECISIONS:
        contenders[(precision, "vit_zoo")] = keras_runner(
            vit_zoo_model, args.depth, precision, pixels, labels, args.steps, xla)
        contenders[(precision, "keras_hub")] = keras_runner(
            keras_hub_model, args.depth, precision, normalized, labels, args.steps, xla)
        contenders[(precision, "timm")] = worker.runner(precision, args.steps)
    matmul_repeats = {"float32": 2, "bfloat16": 6}
    for precision in PRECISIONS:
        contenders[(precision, "matmul")] = matmul_runner(precision, matmul_repeats[precision])
        contenders[(precision, "matmul XLA")] = matmul_runner(precision, 2, xla=True)
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    times = interleaved(contenders, args.rounds)
    elapsed, load_after = time.perf_counter() - start, os.getloadavg()[0]
    worker.close()

    flops = training_flops(args.depth)
    rates = {p: 2 * 4096**3 * matmul_repeats[p] / statistics.median(times[(p, "matmul")])
             for p in PRECISIONS}
    xla_rates = {p: 2 * 4096**3 * 2 / statistics.median(times[(p, "matmul XLA")])
                 for p in PRECISIONS}
    name = "ViT-S/16" if args.depth == 12 else f"ViT-S/16 cut to {args.depth} block(s)"
    mode = f"jit_compile={args.jit_compile}"
    print(f"{name} training, 224 px, batch {args.batch}, Keras {mode}, {args.rounds} rounds x "
          f"{args.steps} step(s), medians; {elapsed:.0f} s incl. warm-up")
    # Other work on the machine hurts timm most: two OpenMP threads on two cores wait at every
    # barrier for whichever thread was preempted.
    print(f"load average {load_before:.1f} before, {load_after:.1f} after, on {os.cpu_count()} "
          "cores")
    print(f"forward {forward_macs(args.depth) / 1e9:.2f} GMACs/image, training step "
          f"{flops / 1e9:.1f} GFLOP/image (3x forward)")
    print(f"matmul 4096^2, TF (oneDNN): float32 {rates['float32'] / 1e9:.0f} GFLOP/s, "
          f"bfloat16 {rates['bfloat16'] / 1e9:.0f} GFLOP/s; under XLA: float32 "
          f"{xla_rates['float32'] / 1e9:.0f} GFLOP/s, bfloat16 {xla_rates['bfloat16'] / 1e9:.0f} "
          "GFLOP/s")
    throughput = {}
    for precision in PRECISIONS:
        for library in ("vit_zoo", "keras_hub", "timm"):
            seconds = statistics.median(times[(precision, library)]) / args.steps
            throughput[(precision, library)] = args.batch / seconds
            share = args.batch / seconds * flops / rates[precision]
            print(f"  {precision:<9} {library:<10} {args.batch / seconds:7.2f} img/s "
                  f"({seconds:6.2f} s/step, {share:5.1%} of the {precision} matmul rate)")

    def ratio(ours, theirs, label, target=None, strict=False):
        line = f"  {label}: {speed_ratio(times[ours], times[theirs])}"
        if target is not None:
            median = paired_median(times[ours], times[theirs])
            met = median > target if strict else median >= target
            line += f"  [target {'>' if strict else '>='} {target:.2f}: "
            line += f"{'met' if met else 'NOT met'}]"
        print(line)

    best = max(PRECISIONS, key=lambda p: throughput[(p, "vit_zoo")])
    print("speed ratios (median of per-round ratios):")
    ratio(("float32", "vit_zoo"), ("float32", "keras_hub"), "vit_zoo f32 / keras_hub f32", 1.10)
    ratio(("bfloat16", "vit_zoo"), ("bfloat16", "keras_hub"), "vit_zoo bf16 / keras_hub bf16")
    ratio((best, "vit_zoo"), ("bfloat16", "timm"),
          f"vit_zoo best ({best}) / timm bf16", 1.0, strict=True)
    ratio(("float32", "vit_zoo"), ("float32", "timm"), "vit_zoo f32 / timm f32")


if __name__ == "__main__":
    main()
