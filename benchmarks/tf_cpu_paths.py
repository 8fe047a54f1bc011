"""What moves TensorFlow's CPU inference: one vit_zoo model under each TensorFlow setting that
could reach the CPU's matrix unit faster, each in its own process (TensorFlow reads most of them
once, at import), timed round by round against the default setting and timm in one run.

Settings (each a worker process; every worker holds the model in float32 and mixed_bfloat16):
  default       TensorFlow as installed (oneDNN on, its threadpool, grappler's fused kernels)
  inter-op 1    one inter-op thread, intra-op = CPUs (no second pool competing for the cores)
  Eigen         TF_ENABLE_ONEDNN_OPTS=0: TensorFlow's own Eigen kernels instead of oneDNN
  XLA           the call compiled with jit_compile=True (XLA:CPU)
  oneDNN bf16 math  ONEDNN_DEFAULT_FPMATH_MODE=BF16: float32 model, oneDNN free to compute its
                matmuls in bfloat16 (float32 in and out)
  TFLite        the builtin-op .tflite of vit_zoo.export.tflite on LiteRT with XNNPack (float32)
  timm          the same architecture on PyTorch (autocast for bfloat16), the reference

Kernel rows time, in every TensorFlow worker, the model's MLP matmul (batch x tokens, width) @
(width, hidden) alone and vit_zoo's whole MLP block (fc1 + bias + tanh-GELU, which grappler
fuses into one oneDNN call, then fc2; its rate counts both matmuls), and, in the default and
inter-op workers, the same block with keras.ops.gelu(approximate=True) (not fused), and the
attention logits as a head-major einsum (vit_zoo's form) against one flat batched matmul over
batch x heads.

    python benchmarks/tf_cpu_paths.py [--model vit_b16] [--batch 8] [--rounds 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from timing import cpu_description

SETTINGS = {
    "default": {},
    "inter-op 1": {"VIT_ZOO_BENCH_INTER_OP": "1"},
    "Eigen": {"TF_ENABLE_ONEDNN_OPTS": "0"},
    "XLA": {"VIT_ZOO_BENCH_XLA": "1"},
    "oneDNN bf16 math": {"ONEDNN_DEFAULT_FPMATH_MODE": "BF16"},
    "TFLite": {"VIT_ZOO_BENCH_TFLITE": "1"},
    "timm": {"VIT_ZOO_BENCH_TORCH": "1"},
}
# name: (vit_zoo builder, timm name, MLP matmul (tokens per image, width, hidden), heads)
MODELS = {
    "vit_b16": ("ViT_B16", "vit_base_patch16_224", (197, 768, 3072), 12),
    "vit_s16": ("ViT_S16", "vit_small_patch16_224", (197, 384, 1536), 6),
    "mixer_b16": ("Mixer_B16", "mixer_b16_224", (196, 768, 3072), 0),
    "swin_t": ("Swin_T", "swin_tiny_patch4_window7_224", (3136, 96, 384), 0),
}


def _tensorflow_worker(args, folder: Path) -> dict:
    """Runners keyed "model f32", "model bf16", "matmul f32", ... for this process's setting."""
    import keras
    import numpy as np
    import tensorflow as tf

    import vit_zoo
    from vit_zoo.layers.mlp import Mlp

    if os.environ.get("VIT_ZOO_BENCH_INTER_OP"):
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(os.cpu_count())
    xla = bool(os.environ.get("VIT_ZOO_BENCH_XLA"))
    builder, _, (tokens, width, hidden), heads = MODELS[args.model]
    features = dict(include_top=False, pooling="avg", include_preprocessing=False)
    images = np.random.default_rng(0).normal(size=(args.batch, 224, 224, 3)).astype("float32")
    runners = {}
    if os.environ.get("VIT_ZOO_BENCH_TFLITE"):
        from ai_edge_litert.interpreter import Interpreter

        path = folder / "model.tflite"
        vit_zoo.export.tflite(getattr(vit_zoo, builder)(**features), path, batch_size=args.batch)
        interpreter = Interpreter(str(path), num_threads=os.cpu_count())
        interpreter.allocate_tensors()
        signature = interpreter.get_signature_runner()
        name = next(iter(signature.get_input_details()))
        runners["model f32"] = lambda: signature(**{name: images})
        return runners

    rows = args.batch * tokens
    for precision, policy, dtype in (("f32", "float32", "float32"),
                                     ("bf16", "mixed_bfloat16", "bfloat16")):
        keras.mixed_precision.set_global_policy(policy)  # Keras fixes dtypes at build time
        model = getattr(vit_zoo, builder)(**features)
        call = tf.function(lambda x, model=model: model(x, training=False), jit_compile=xla)
        tensor = tf.constant(images)
        runners[f"model {precision}"] = lambda c=call, t=tensor: c(t).numpy()

        a = tf.cast(tf.random.normal((rows, width)), dtype)
        b = tf.cast(tf.random.normal((width, hidden)), dtype)
        matmul = tf.function(lambda x, y: tf.linalg.matmul(x, y), jit_compile=xla)
        mlp = Mlp(hidden, activation="gelu_tanh")
        mlp.build((args.batch, tokens, width))
        mlp_call = tf.function(lambda x, layer=mlp: layer(x), jit_compile=xla)
        mlp_input = tf.random.normal((args.batch, tokens, width))
        runners[f"matmul {precision}"] = (
            lambda f=matmul, x=a, y=b: f(x, y).numpy())
        runners[f"MLP block {precision}"] = lambda f=mlp_call, x=mlp_input: f(x).numpy()
        if heads and not os.environ.get("ONEDNN_DEFAULT_FPMATH_MODE") and not xla \
                and os.environ.get("TF_ENABLE_ONEDNN_OPTS") != "0":
            shape = (args.batch, heads, tokens, width // heads)
            q = tf.cast(tf.random.normal(shape), dtype)
            k = tf.cast(tf.random.normal(shape), dtype)
            einsum = tf.function(lambda x, y: tf.einsum("bhqd,bhkd->bhqk", x, y))
            flat = tf.function(lambda x, y, shape=shape: tf.linalg.matmul(
                tf.reshape(x, (-1,) + shape[2:]), tf.reshape(y, (-1,) + shape[2:]),
                transpose_b=True))
            # The same block with GELU as keras.ops.gelu(approximate=True): the same function,
            # in a form grappler does not fuse into the matmul.
            unfused = Mlp(hidden, activation="gelu_tanh")
            unfused.build((args.batch, tokens, width))
            unfused.activation_fn = lambda x: keras.ops.gelu(x, approximate=True)
            unfused_call = tf.function(lambda x, layer=unfused: layer(x))
            runners[f"MLP block unfused GELU {precision}"] = (
                lambda f=unfused_call, x=mlp_input: f(x).numpy())
            runners[f"attention einsum {precision}"] = lambda f=einsum, x=q, y=k: f(x, y).numpy()
            runners[f"attention flat {precision}"] = lambda f=flat, x=q, y=k: f(x, y).numpy()
    keras.mixed_precision.set_global_policy("float32")
    return runners


def _torch_worker(args) -> dict:
    import numpy as np
    import timm
    import torch

    torch.set_num_threads(os.cpu_count())
    _, name, (tokens, width, hidden), _ = MODELS[args.model]
    model = timm.create_model(name, pretrained=False, num_classes=0).eval()
    images = np.random.default_rng(0).normal(size=(args.batch, 224, 224, 3)).astype("float32")
    tensor = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())
    rows = args.batch * tokens
    runners = {}
    for precision, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        def run(bfloat16=precision == "bf16"):
            with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bfloat16):
                return model(tensor).float().numpy()

        a, b = torch.randn(rows, width, dtype=dtype), torch.randn(width, hidden, dtype=dtype)

        def matmul(a=a, b=b):
            with torch.inference_mode():
                return torch.matmul(a, b)

        runners[f"model {precision}"] = run
        runners[f"matmul {precision}"] = matmul
    return runners


def worker(args) -> None:
    """Build the runners, warm each twice, then time one call per "KEY" line read from stdin."""
    import time

    with tempfile.TemporaryDirectory() as folder:
        if os.environ.get("VIT_ZOO_BENCH_TORCH"):
            runners = _torch_worker(args)
        else:
            runners = _tensorflow_worker(args, Path(folder))
        for run in runners.values():
            run()
            run()
        print(json.dumps(sorted(runners)), flush=True)
        for line in sys.stdin:
            run = runners[line.strip()]
            start = time.perf_counter()
            run()
            print(time.perf_counter() - start, flush=True)


def _quartiles(values: list[float]) -> str:
    low, median, high = statistics.quantiles(values, n=4)
    return f"{median:.2f}x ({low:.2f}-{high:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=list(MODELS), default="vit_b16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--settings", nargs="*", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if "default" not in args.settings:
        args.settings.insert(0, "default")
    command = [sys.executable, __file__, "--worker", "--model", args.model,
               "--batch", str(args.batch)]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    # Workers start one after another (building and warming uses the cores), then wait on stdin.
    workers, keys = {}, {}
    for setting in args.settings:
        process = subprocess.Popen(command, env={**environment, **SETTINGS[setting]},
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        keys[setting] = json.loads(process.stdout.readline())
        workers[setting] = process
    times = {(setting, key): [] for setting in workers for key in keys[setting]}
    for _ in range(args.rounds):
        for setting, key in times:
            process = workers[setting]
            process.stdin.write(key + "\n")
            process.stdin.flush()
            times[(setting, key)].append(float(process.stdout.readline()))
    for process in workers.values():
        process.stdin.close()
        process.wait()

    _, _, (tokens, width, hidden), heads = MODELS[args.model]
    print(f"{args.model}, 224 px, batch {args.batch}, {args.rounds} rounds, "
          f"{os.cpu_count()} threads; {cpu_description()}")
    for precision in ("f32", "bf16"):
        key = f"model {precision}"
        base = times[("default", key)]
        print(f"{precision}: images/s, and speed against TensorFlow's default setting and timm "
              "(median of per-round ratios, quartiles)")
        for setting in workers:
            if (setting, key) not in times:
                continue
            ours = times[(setting, key)]
            line = f"  {setting:17s} {args.batch / statistics.median(ours):7.2f} img/s"
            if setting != "default":
                line += f"  vs default {_quartiles([b / o for o, b in zip(ours, base)])}"
            if setting != "timm" and ("timm", key) in times:
                theirs = times[("timm", key)]
                line += f"  vs timm {_quartiles([t / o for o, t in zip(ours, theirs)])}"
            print(line)
    rows = args.batch * tokens
    print(f"kernels, GFLOP/s (median): MLP matmul {rows}x{width} @ {width}x{hidden}; "
          f"attention logits ({args.batch}x{heads}) {tokens}x{width // max(heads, 1)} @ "
          f"{width // max(heads, 1)}x{tokens}")
    flops = {"matmul": 2 * rows * width * hidden, "MLP block": 4 * rows * width * hidden,
             "MLP block unfused GELU": 4 * rows * width * hidden,
             "attention einsum": 2 * args.batch * tokens * tokens * width,
             "attention flat": 2 * args.batch * tokens * tokens * width}
    for kernel, count in flops.items():
        for precision in ("f32", "bf16"):
            cells = [f"{setting} {count / statistics.median(times[(setting, key)]) / 1e9:.0f}"
                     for setting in workers
                     for key in [f"{kernel} {precision}"] if (setting, key) in times]
            if cells:
                print(f"  {kernel} {precision}: " + ", ".join(cells))


if __name__ == "__main__":
    main()
