"""Batch-1 latency and file size of exported vit_zoo models on CPU: the Keras model against its
SavedModel, TFLite (LiteRT) float32 / float16 / dynamic_int8 / int8, ONNX Runtime, and
keras-hub's own LiteRT export of a ViT of the same shape, interleaved in one run.

Models (random weights, seed 0; every float variable drawn from N(0, 0.05), LayerNorm scales
around 1, as in the test suite, since a fresh classifier head is all zeros):
- vit_s16: `vit_zoo.ViT_S16(weights=None)`, 224 px, 1000 classes, softmax, pixels in [0, 255];
- swin_t: `vit_zoo.Swin_T(weights=None)`, same interface.

Formats, each converted once and then timed on one image (batch 1):
- Keras: `model.predict_on_batch(x)` on a NumPy image, what a user calls for a single batch
  (Keras compiles it to a tf.function; jit_compile "auto" is no XLA on a CPU-only machine), and
  a bare `tf.function(lambda x: model(x, training=False))` on a tf.Tensor for comparison;
- SavedModel: `vit_zoo.export.saved_model(model, "<dir>/1")`, then `tf.saved_model.load` and
  its `serving_default` signature on `images` (it returns probabilities, logits and the top 5);
- TFLite: `vit_zoo.export.tflite(model, path, quantize=...)`, the default resizable batch, plus
  float32 with `batch_size=1` (a fixed batch; --no-fixed-batch skips it); int8 calibrated on
  --calibration random-but-structured images (smooth colour fields, rectangles, noise). Run by
  `vit_zoo.export.tflite.interpreter(path, num_threads=--threads)` (LiteRT, XNNPACK delegate by
  default) through one cached signature runner;
- ONNX: `vit_zoo.export.onnx(model, path)`, run by an onnxruntime CPU session with
  intra_op_num_threads=--threads;
- keras-hub LiteRT (vit_s16 only): `keras_hub.models.ViTImageClassifier` on a `ViTBackbone`
  (224 px, patch 16, 12 layers, 6 heads, width 384, MLP 1536, class token) with a 1000-class
  softmax head, written by Keras's own `model.export(path, format="litert")`, run by the same
  LiteRT harness.

Every runtime gets the same thread count (--threads, default the machine's cores): LiteRT's
num_threads, onnxruntime's intra_op_num_threads, TensorFlow's intra-op (and inter-op, unless
--tf-inter-op-threads) thread pools. After --warmup untimed calls each, every round times every
format once (--iterations calls) in a freshly shuffled order, with a short pause before each
(--gap-ms) so one runtime's spinning worker threads do not eat into the next one's time. Times
are medians with quartiles over rounds; ratios are medians (and quartiles) of per-round ratios.

Targets: (a) vit_zoo TFLite float32 no slower than keras-hub's LiteRT float32 (keras-hub time /
vit_zoo time >= 1.0); (b) TFLite dynamic_int8 at least 2x faster than the Keras model at batch 1.

Top-1 agreement of each file with the float32 file is printed on --eval-images structured random
images. With random weights and random images this is a smoke figure, not the quality of the
quantization: tests/test_export_quantization.py checks agreement on real digit images with
trained models.

    python benchmarks/export_latency.py [--models vit_s16,swin_t] [--threads 2] [--rounds 25]
        [--warmup 3] [--iterations 1] [--calibration 24] [--eval-images 24] [--no-fixed-batch]
        [--keep DIR]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from timing import cpu_description  # noqa: E402

MODELS = {"vit_s16": "ViT-S/16", "swin_t": "Swin-T"}
IMAGE = 224
KERAS = "Keras predict_on_batch"
QUANTIZED = ("float16", "dynamic_int8", "int8")


# --- setup --------------------------------------------------------------------------------------


def set_tf_threads(intra: int, inter: int) -> None:
    """Before TensorFlow runs anything: fixed sizes of its two thread pools."""
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)


def randomize(model, seed: int, scale: float = 0.05) -> None:
    """Every float variable from N(0, scale), LayerNorm scales (gamma) around 1."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        if "float" not in str(variable.dtype):
            continue
        center = 1.0 if variable.path.endswith("gamma") else 0.0
        variable.assign(rng.normal(center, scale, variable.shape).astype("float32"))


def structured_images(count: int, seed: int) -> np.ndarray:
    """RGB float32 images in [0, 255] with some structure: a smooth colour field (a coarse random
    grid resized bilinearly), a few flat rectangles, and mild noise."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        grid = int(rng.integers(3, 9))
        coarse = rng.uniform(0, 255, (1, grid, grid, 3)).astype("float32")
        image = tf.image.resize(coarse, (IMAGE, IMAGE), "bilinear")[0].numpy()
        for _ in range(int(rng.integers(1, 5))):
            y, x = rng.integers(0, IMAGE - 16, 2)
            h, w = rng.integers(16, IMAGE // 2, 2)
            image[y:y + h, x:x + w] = rng.uniform(0, 255, 3)
        image += rng.normal(0, 8, image.shape)
        images.append(np.clip(image, 0, 255))
    return np.stack(images).astype("float32")


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


class Clock:
    """Seconds each conversion took, printed with the results."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def run(self, label: str, work: Callable[[], object]):
        start = time.perf_counter()
        result = work()
        self.seconds[label] = time.perf_counter() - start
        print(f"  [{label}: {self.seconds[label]:.0f} s]", flush=True)
        return result


# --- runners ------------------------------------------------------------------------------------


def litert_runner(path: Path, threads: int, image: np.ndarray):
    """One LiteRT interpreter and its cached signature runner on a fixed image; returns
    (call, interpreter)."""
    from vit_zoo.export.tflite_export import interpreter

    runner_interpreter = interpreter(path, num_threads=threads)
    (key,) = runner_interpreter.get_signature_list()
    function = runner_interpreter.get_signature_runner(key)
    (name,) = function.get_input_details()
    feed = {name: image}

    def run():
        return function(**feed)

    run()  # allocates (and resizes a free batch to 1) before anything is inspected
    return run, runner_interpreter


def delegation(runner_interpreter) -> tuple[int, dict[str, int], int]:
    """(XNNPACK partitions, op counts left to LiteRT's own kernels, dynamic-shape ops in the
    file) of an interpreter that has run: its execution plan, found by walking back from the
    outputs through the DELEGATE nodes that replaced the delegated ops."""
    ops = runner_interpreter._get_ops_details()  # the analyzer's accessor; no public one
    delegates = [op for op in ops if op["op_name"] == "DELEGATE"]
    from_delegate = {int(t): op for op in delegates for t in op["outputs"]}
    producer = {int(t): op for op in ops if op["op_name"] != "DELEGATE" for t in op["outputs"]}
    wanted = [int(detail["index"]) for detail in runner_interpreter.get_output_details()]
    seen, plan = set(), {}
    while wanted:
        tensor = wanted.pop()
        if tensor in seen:
            continue
        seen.add(tensor)
        op = from_delegate.get(tensor) or producer.get(tensor)
        if op is None or op["index"] in plan:
            continue
        plan[op["index"]] = op
        wanted.extend(int(t) for t in op["inputs"] if t >= 0)
    left = {}
    for op in plan.values():
        if op["op_name"] != "DELEGATE":
            left[op["op_name"]] = left.get(op["op_name"], 0) + 1
    dynamic = sum(op["op_name"] in ("SHAPE", "PACK") for op in ops)
    return sum(op["op_name"] == "DELEGATE" for op in plan.values()), left, dynamic


def onnx_runner(path: Path, threads: int, image: np.ndarray):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    session = onnxruntime.InferenceSession(str(path), options,
                                           providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: image}
    return lambda: session.run(None, feed)


def saved_model_runner(folder: Path, image: np.ndarray):
    loaded = tf.saved_model.load(str(folder))
    signature = loaded.signatures["serving_default"]
    tensor = tf.constant(image)

    def run():
        return signature(images=tensor)["probabilities"].numpy()

    run.loaded = loaded  # keep the trackable alive with the runner
    return run


# --- building and converting --------------------------------------------------------------------


def build_vit_zoo(key: str, seed: int):
    import vit_zoo

    model = vit_zoo.ViT_S16(weights=None) if key == "vit_s16" else vit_zoo.Swin_T(weights=None)
    randomize(model, seed)
    return model


def build_keras_hub(seed: int):
    """keras-hub's ViT classifier of ViT-S/16's shape, with a 1000-class softmax head."""
    import keras_hub

    backbone = keras_hub.models.ViTBackbone(
        image_shape=(IMAGE, IMAGE, 3), patch_size=16, num_layers=12, num_heads=6,
        hidden_dim=384, mlp_dim=1536)
    model = keras_hub.models.ViTImageClassifier(backbone=backbone, num_classes=1000,
                                                activation="softmax")
    randomize(model, seed)
    return model


def prepare(key: str, args, folder: Path, calibration: np.ndarray, evaluation: np.ndarray):
    """Convert every format once. Returns (contenders {label: call}, sizes {label: bytes},
    outputs {label: probabilities on the evaluation images}, notes, conversion clock,
    LiteRT interpreters {label: interpreter})."""
    import vit_zoo.export as export
    from vit_zoo.export.onnx_export import run_onnx
    from vit_zoo.export.tflite_export import interpreter, run_signature

    clock = Clock()
    image = evaluation[:1]
    model = build_vit_zoo(key, args.seed)
    contenders, sizes, outputs, interpreters, notes = {}, {}, {}, {}, []

    keras_file = folder / f"{key}.keras"
    clock.run("Keras save", lambda: model.save(keras_file))
    sizes[KERAS] = sizes["Keras tf.function"] = size_of(keras_file)
    contenders[KERAS] = lambda: model.predict_on_batch(image)
    call = tf.function(lambda x: model(x, training=False))
    tensor = tf.constant(image)
    contenders["Keras tf.function"] = lambda: call(tensor).numpy()
    outputs[KERAS] = model.predict(evaluation, batch_size=16, verbose=0)

    saved = folder / f"{key}_saved_model" / "1"
    clock.run("SavedModel", lambda: export.saved_model(model, saved))
    sizes["SavedModel"] = size_of(saved)
    contenders["SavedModel"] = saved_model_runner(saved, image)
    outputs["SavedModel"] = contenders["SavedModel"].loaded.signatures["serving_default"](
        images=tf.constant(evaluation))["probabilities"].numpy()

    tflite_files = {"TFLite float32": (None, None)}
    if args.fixed_batch:
        tflite_files["TFLite float32 batch_size=1"] = (None, 1)
    tflite_files.update({f"TFLite {q}": (q, None) for q in QUANTIZED})
    for label, (quantize, batch_size) in tflite_files.items():
        path = folder / f"{key}_{label.split(' ', 1)[1].replace(' ', '_').replace('=', '')}.tflite"
        report = clock.run(label, lambda q=quantize, b=batch_size, p=path: export.tflite(
            model, p, quantize=q, batch_size=b,
            representative_data=calibration if q == "int8" else None))
        sizes[label] = report.size_bytes
        contenders[label], interpreters[label] = litert_runner(path, args.threads, image)
        outputs[label] = run_signature(interpreter(path, num_threads=args.threads),
                                       "serving_default", evaluation)["output_0"]

    onnx_path = folder / f"{key}.onnx"
    clock.run("ONNX", lambda: export.onnx(model, onnx_path))
    sizes["ONNX Runtime"] = size_of(onnx_path)
    contenders["ONNX Runtime"] = onnx_runner(onnx_path, args.threads, image)
    outputs["ONNX Runtime"] = run_onnx(onnx_path, evaluation)

    if key == "vit_s16" and not args.no_keras_hub:
        hub = build_keras_hub(args.seed)
        hub_path = folder / "keras_hub_vit_s16.tflite"
        clock.run("keras-hub LiteRT",
                  lambda: hub.export(str(hub_path), format="litert", verbose=False))
        label = "keras-hub LiteRT float32"
        sizes[label] = size_of(hub_path)
        hub_image = image / 127.5 - 1.0  # keras-hub's model takes normalized pixels
        contenders[label], interpreters[label] = litert_runner(hub_path, args.threads,
                                                               hub_image)
        hub_out = contenders[label]()
        (hub_out,) = hub_out.values()
        reference = hub.predict_on_batch(hub_image)
        notes.append(f"keras-hub LiteRT vs its Keras model on one image: max relative error "
                     f"{np.max(np.abs(hub_out - reference)) / np.max(np.abs(reference)):.1e}")
        del hub
    return contenders, sizes, outputs, notes, clock, interpreters


# --- timing and reporting -----------------------------------------------------------------------


def rounds(contenders: dict, args) -> dict[str, list[float]]:
    """Seconds per call, per round; each round runs every contender once in a shuffled order."""
    for run in contenders.values():
        for _ in range(args.warmup):
            run()
    order = list(contenders)
    shuffle = random.Random(args.seed)
    times = {key: [] for key in contenders}
    for _ in range(args.rounds):
        shuffle.shuffle(order)
        for key in order:
            run = contenders[key]
            time.sleep(args.gap_ms / 1000)
            start = time.perf_counter()
            for _ in range(args.iterations):
                run()
            times[key].append((time.perf_counter() - start) / args.iterations)
    return times


def quartiles(values: list[float]) -> tuple[float, float, float]:
    low, median, high = statistics.quantiles(values, n=4)
    return low, median, high


def per_round_ratio(ours: list[float], theirs: list[float]) -> tuple[float, float, float]:
    """Quartiles of their time / our time over rounds (> 1: ours is faster)."""
    return quartiles([t / o for o, t in zip(ours, theirs)])


def fmt_ratio(ratio: tuple[float, float, float]) -> str:
    return f"{ratio[1]:5.2f}x ({ratio[0]:.2f}-{ratio[2]:.2f})"


def report(key: str, args, times, sizes, outputs, notes, clock, interpreters) -> dict[str, bool]:
    name = MODELS[key]
    print(f"\n=== {name}, 224 px, batch 1, {args.threads} thread(s) per runtime, {args.rounds} "
          f"rounds x {args.iterations} call(s), {args.warmup} warm-up call(s) ===")
    print("conversion seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in clock.seconds.items()))
    header = (f"  {'format':<30} {'MiB':>7} {'median ms':>10} {'quartiles ms':>15}   "
              f"{'speed vs Keras pob':>20}   {'vs Keras tf.function':>20}")
    print(header)
    print("  " + "-" * (len(header) - 2))
    for label, values in times.items():
        low, median, high = quartiles(values)
        vs_keras = fmt_ratio(per_round_ratio(values, times[KERAS]))
        vs_function = fmt_ratio(per_round_ratio(values, times["Keras tf.function"]))
        print(f"  {label:<30} {sizes[label] / 2**20:7.1f} {median * 1000:10.1f} "
              f"{low * 1000:7.1f}-{high * 1000:<7.1f}   {vs_keras:>20}   {vs_function:>20}")
    print("  (speed ratios: Keras time / format time per round, median (quartiles); "
          "> 1 = the format is faster. pob = predict_on_batch)")

    results = {}
    ratio_b = per_round_ratio(times["TFLite dynamic_int8"], times[KERAS])
    results[f"{name} (b)"] = ratio_b[1] >= 2.0
    print(f"  target (b) TFLite dynamic_int8 vs Keras predict_on_batch: {fmt_ratio(ratio_b)} "
          f"[target >= 2.00: {'met' if results[f'{name} (b)'] else 'NOT met'}]")
    hub = "keras-hub LiteRT float32"
    if hub in times:
        ratio_a = per_round_ratio(times["TFLite float32"], times[hub])
        results[f"{name} (a)"] = ratio_a[1] >= 1.0
        print(f"  target (a) keras-hub LiteRT float32 time / vit_zoo TFLite float32 time: "
              f"{fmt_ratio(ratio_a)} [target >= 1.00: "
              f"{'met' if results[f'{name} (a)'] else 'NOT met'}]")
        fixed = "TFLite float32 batch_size=1"
        if fixed in times:
            print(f"  (keras-hub / vit_zoo float32 batch_size=1: "
                  f"{fmt_ratio(per_round_ratio(times[fixed], times[hub]))})")
    fixed = "TFLite float32 batch_size=1"
    if fixed in times:
        print(f"  vit_zoo TFLite float32 resizable batch time / batch_size=1 time: "
              f"{fmt_ratio(per_round_ratio(times[fixed], times['TFLite float32']))}")

    print("  LiteRT execution plans (XNNPACK partitions; ops left to LiteRT's own kernels; "
          "SHAPE+PACK ops in the file):")
    for label, runner_interpreter in interpreters.items():
        partitions, left, dynamic = delegation(runner_interpreter)
        rest = ", ".join(f"{op} x{n}" for op, n in sorted(left.items())) or "none"
        print(f"    {label:<30} {partitions:3d} partitions; undelegated: {rest}; "
              f"SHAPE+PACK {dynamic}")

    reference = outputs["TFLite float32"]
    print(f"  agreement on {len(reference)} structured random images (random weights: a smoke "
          "check, not the quality figure; the test suite checks agreement on real digits):")
    keras_out = outputs[KERAS]
    for label, values in outputs.items():
        if label in ("TFLite float32",):
            against, base = keras_out, "Keras"
        else:
            against, base = reference, "TFLite float32"
        agreement = np.mean(values.argmax(-1) == against.argmax(-1))
        error = np.max(np.abs(values - against)) / np.max(np.abs(against))
        print(f"    {label:<30} vs {base:<15} top-1 agreement {agreement:6.1%}, max relative "
              f"error {error:.1e}")
    for note in notes:
        print(f"  {note}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="vit_s16,swin_t",
                        help="comma-separated: " + ", ".join(MODELS))
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads of every runtime (default: the machine's cores)")
    parser.add_argument("--tf-inter-op-threads", type=int, default=None,
                        help="TensorFlow's inter-op pool (default: --threads)")
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per format first")
    parser.add_argument("--iterations", type=int, default=1, help="timed calls per round")
    parser.add_argument("--gap-ms", type=float, default=10.0,
                        help="pause before each timed call (lets spinning threads park)")
    parser.add_argument("--calibration", type=int, default=24,
                        help="int8 calibration images")
    parser.add_argument("--eval-images", type=int, default=24,
                        help="images for the agreement figures")
    parser.add_argument("--no-fixed-batch", dest="fixed_batch", action="store_false",
                        help="skip the float32 TFLite file with batch_size=1")
    parser.add_argument("--no-keras-hub", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=None,
                        help="write the files here and keep them (default: a temporary folder)")
    args = parser.parse_args()
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = set(keys) - set(MODELS)
    if unknown:
        parser.error(f"unknown model(s) {sorted(unknown)}; choose from {list(MODELS)}")
    set_tf_threads(args.threads, args.tf_inter_op_threads or args.threads)
    tf.get_logger().setLevel("ERROR")  # tf2onnx's calls of deprecated TF1 graph utilities

    import ai_edge_litert
    import keras
    import keras_hub
    import onnxruntime

    started, load_before = time.perf_counter(), os.getloadavg()[0]
    print(f"CPU: {cpu_description()}; threads per runtime: {args.threads} "
          f"(TF intra-op {args.threads}, inter-op {args.tf_inter_op_threads or args.threads})")
    print(f"TensorFlow {tf.__version__}, Keras {keras.__version__}, keras-hub "
          f"{keras_hub.__version__}, ai-edge-litert "
          f"{getattr(ai_edge_litert, '__version__', '?')}, onnxruntime {onnxruntime.__version__}, "
          f"Python {sys.version.split()[0]}")
    calibration = structured_images(args.calibration, args.seed + 1)
    evaluation = structured_images(args.eval_images, args.seed + 2)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="vit_zoo_export_latency_"))
    folder.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        for key in keys:
            print(f"\nconverting {MODELS[key]} ...", flush=True)
            phase = time.perf_counter()
            contenders, sizes, outputs, notes, clock, interpreters = prepare(
                key, args, folder, calibration, evaluation)
            print(f"timing {MODELS[key]} ...", flush=True)
            timing = time.perf_counter()
            times = rounds(contenders, args)
            notes.append(f"phases: building, converting and agreement {timing - phase:.0f} s, "
                         f"timing {time.perf_counter() - timing:.0f} s")
            results.update(report(key, args, times, sizes, outputs, notes, clock, interpreters))
            del contenders, interpreters
            keras.backend.clear_session()
            gc.collect()
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(f"\nwall time {time.perf_counter() - started:.0f} s; load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores")
    for label, met in results.items():
        print(f"  target {label}: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
