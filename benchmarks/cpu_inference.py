"""CPU inference throughput of one model, every path side by side in one interleaved run:
vit_zoo on TensorFlow, vit_zoo on OpenVINO (the IR `vit_zoo.export.openvino` writes), vit_zoo's
builtin-op TFLite file on LiteRT with XNNPack (float32 only: LiteRT has no bfloat16 kernels),
timm (or open_clip) on PyTorch and keras-hub where it has the model, in float32 and bfloat16,
with the TensorFlow and PyTorch matmul rates at the model's MLP shape, so each side's distance
from its own kernel ceiling shows.

bfloat16 is Keras's mixed_bfloat16 policy on TensorFlow (float32 weights cast on every call;
"TF bf16 weights" is the same model under the "bfloat16" policy, weights bfloat16 once), the
CPU plugin's
INFERENCE_PRECISION_HINT=bf16 on OpenVINO, `torch.autocast(bfloat16)` under
`torch.inference_mode()` for timm. Random weights, 224 px, features before the classifier (the
same computation on every side). Each round times every contender back to back, so drift on a
shared machine hits all alike; ratios are medians of per-round ratios, with quartiles.

    python benchmarks/cpu_inference.py --model vit_b16 [--batch 8] [--rounds 7]
    models: vit_b16, swin_t, mixer_b16, r50_vit_b16, clip_b32 (image tower), and the
    derivatives pvt_v2_b2, swinv2_t, xcit_s12_p16, convmixer_768_32, mvitv2_t
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# PyTorch first: importing torchvision (via timm / open_clip) after TensorFlow segfaults in this
# pairing of wheels (TF 2.21, torch 2.14); the other order works.
import open_clip  # noqa: E402, I001
import timm  # noqa: E402
import torch  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import vit_zoo  # noqa: E402
from timing import cpu_description, interleaved  # noqa: E402


def _keras_hub_vit():
    import keras_hub

    return keras_hub.models.ViTBackbone(image_shape=(224, 224, 3), patch_size=16, num_layers=12,
                                        num_heads=12, hidden_dim=768, mlp_dim=3072)


def _keras_hub_swin():
    from keras_hub.models import SwinTransformerBackbone

    return SwinTransformerBackbone(image_shape=(224, 224, 3), embed_dim=96, depths=(2, 2, 6, 2),
                                   num_heads=(3, 6, 12, 24), window_size=7)


def _timm(name: str):
    return lambda: timm.create_model(name, pretrained=False, num_classes=0).eval()


def _open_clip_b32():
    model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None).eval()
    return model.visual


FEATURES = dict(include_top=False, pooling="avg", include_preprocessing=False)
# name: (vit_zoo builder, PyTorch reference, keras-hub builder or None,
#        MLP matmul (tokens per image, width, hidden) of the widest stage)
MODELS = {
    "vit_b16": (lambda: vit_zoo.ViT_B16(**{**FEATURES, "pooling": "token"}),
                _timm("vit_base_patch16_224"), _keras_hub_vit, (197, 768, 3072)),
    "swin_t": (lambda: vit_zoo.Swin_T(**FEATURES), _timm("swin_tiny_patch4_window7_224"),
               _keras_hub_swin, (3136, 96, 384)),
    "mixer_b16": (lambda: vit_zoo.Mixer_B16(**FEATURES), _timm("mixer_b16_224"), None,
                  (196, 768, 3072)),
    "r50_vit_b16": (lambda: vit_zoo.R50_ViT_B16(**{**FEATURES, "pooling": "token"}),
                    _timm("vit_base_r50_s16_224"), None, (197, 768, 3072)),
    "clip_b32": (lambda: vit_zoo.CLIPImageEncoder("B/32", include_preprocessing=False),
                 _open_clip_b32, None, (50, 768, 3072)),
    # The derivative families (none of them is in keras-hub). MLP shape: the first stage's
    # (most tokens) for the pyramids; ConvMixer's channel mixing is a 768 -> 768 1x1 conv.
    "pvt_v2_b2": (lambda: vit_zoo.PVTv2_B2(**FEATURES), _timm("pvt_v2_b2"), None,
                  (3136, 64, 512)),
    "swinv2_t": (lambda: vit_zoo.SwinV2_T(**FEATURES, input_shape=(224, 224, 3)),
                 lambda: timm.create_model("swinv2_tiny_window8_256", pretrained=False,
                                           num_classes=0, img_size=224).eval(),
                 None, (3136, 96, 384)),
    "xcit_s12_p16": (lambda: vit_zoo.XCiT_S12_P16(**{**FEATURES, "pooling": "token"}),
                     _timm("xcit_small_12_p16_224"), None, (196, 384, 1536)),
    "convmixer_768_32": (lambda: vit_zoo.ConvMixer_768_32(**FEATURES), _timm("convmixer_768_32"),
                         None, (1024, 768, 768)),
    "mvitv2_t": (lambda: vit_zoo.MViTv2_T(**FEATURES), _timm("mvitv2_tiny"), None,
                 (3136, 96, 384)),
}


def keras_runner(model: keras.Model, images: np.ndarray):
    call = tf.function(lambda x: model(x, training=False))
    tensor = tf.constant(images)
    return lambda: tf.nest.flatten(call(tensor))[0].numpy()


def openvino_runner(model: keras.Model, images: np.ndarray, folder: Path, precision: str):
    path = folder / f"model_{precision}.xml"
    if not path.exists():
        vit_zoo.export.openvino(model, path, precision=precision, batch_size=len(images))
    compiled = vit_zoo.export.compile_openvino(path, precision, threads=os.cpu_count())
    request = compiled.create_infer_request()
    return lambda: request.infer({0: images})


def tflite_runner(model: keras.Model, images: np.ndarray, folder: Path):
    """The builtin-op .tflite of vit_zoo.export.tflite on LiteRT (XNNPack), float32."""
    path = folder / "model.tflite"
    vit_zoo.export.tflite(model, path, batch_size=len(images))
    interpreter = vit_zoo.export.tflite_export.interpreter(path, num_threads=os.cpu_count())
    interpreter.allocate_tensors()
    signature = interpreter.get_signature_runner()
    name = next(iter(signature.get_input_details()))
    return lambda: signature(**{name: images})


def torch_runner(model: torch.nn.Module, images: np.ndarray, bfloat16: bool):
    tensor = torch.from_numpy(images.transpose(0, 3, 1, 2).copy())

    def run():
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bfloat16):
            return model(tensor).float().numpy()

    return run


def tf_matmul(rows: int, width: int, hidden: int, dtype: str):
    a = tf.cast(tf.random.normal((rows, width)), dtype)
    b = tf.cast(tf.random.normal((width, hidden)), dtype)
    step = tf.function(lambda x, y: tf.linalg.matmul(x, y))
    return lambda: step(a, b).numpy()


def torch_matmul(rows: int, width: int, hidden: int, bfloat16: bool):
    dtype = torch.bfloat16 if bfloat16 else torch.float32
    a, b = torch.randn(rows, width, dtype=dtype), torch.randn(width, hidden, dtype=dtype)

    def run():
        with torch.inference_mode():
            return torch.matmul(a, b)

    return run


def ratio(ours: list[float], theirs: list[float]) -> str:
    """Median of per-round speed ratios (their time / our time) with quartiles."""
    low, median, high = statistics.quantiles([t / o for o, t in zip(ours, theirs)], n=4)
    return f"{median:.2f}x ({low:.2f}-{high:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=list(MODELS), default="vit_b16")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--iterations", type=int, default=1, help="timed calls per round")
    parser.add_argument("--skip-keras-hub", action="store_true")
    args = parser.parse_args()
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    build, reference, keras_hub_build, (tokens, width, hidden) = MODELS[args.model]
    images = np.random.default_rng(0).normal(size=(args.batch, 224, 224, 3)).astype("float32")
    torch_model = reference()
    rows = args.batch * tokens

    contenders = {}
    with tempfile.TemporaryDirectory() as folder:
        for precision, policy in (("f32", "float32"), ("bf16", "mixed_bfloat16")):
            keras.mixed_precision.set_global_policy(policy)  # Keras fixes dtypes at build time
            bfloat16 = precision == "bf16"
            contenders[(precision, "vit_zoo TF")] = keras_runner(build(), images)
            if keras_hub_build and not args.skip_keras_hub:
                contenders[(precision, "keras-hub TF")] = keras_runner(keras_hub_build(), images)
            contenders[(precision, "reference")] = torch_runner(torch_model, images, bfloat16)
            contenders[(precision, "matmul TF")] = tf_matmul(rows, width, hidden,
                                                             "bfloat16" if bfloat16 else "float32")
            contenders[(precision, "matmul torch")] = torch_matmul(rows, width, hidden, bfloat16)
        keras.mixed_precision.set_global_policy("bfloat16")
        contenders[("bf16", "vit_zoo TF bf16 weights")] = keras_runner(build(), images)
        keras.mixed_precision.set_global_policy("float32")
        float32_model = build()  # OpenVINO converts the float32 graph, either precision
        for precision in ("f32", "bf16"):
            contenders[(precision, "vit_zoo OpenVINO")] = openvino_runner(
                float32_model, images, Path(folder), precision)
        contenders[("f32", "vit_zoo TFLite")] = tflite_runner(float32_model, images, Path(folder))
        times = interleaved(contenders, args.rounds, args.iterations)

    reference_name = "open_clip" if args.model == "clip_b32" else "timm"
    print(f"{args.model}, 224 px, batch {args.batch}, {args.rounds} rounds x {args.iterations} "
          f"calls; {threads} threads; {cpu_description()}")
    print(f"TF {tf.__version__}, Keras {keras.__version__}, torch {torch.__version__}, "
          f"timm {timm.__version__}")
    for precision in ("f32", "bf16"):
        for kind in ("TF", "torch"):
            rate = 2 * rows * width * hidden / statistics.median(
                times[(precision, f"matmul {kind}")]) / 1e9
            print(f"  {precision} matmul {rows}x{width} @ {width}x{hidden} on {kind}: "
                  f"{rate:.0f} GFLOP/s")
        theirs = times[(precision, "reference")]
        print(f"  {precision} {reference_name}: {args.batch / statistics.median(theirs):.2f} "
              "img/s")
        for name in ("vit_zoo TF", "vit_zoo TF bf16 weights", "vit_zoo OpenVINO",
                     "vit_zoo TFLite", "keras-hub TF"):
            if (precision, name) not in times:
                continue
            ours = times[(precision, name)]
            line = (f"  {precision} {name}: {args.batch / statistics.median(ours):.2f} img/s, "
                    f"vs {reference_name} {ratio(ours, theirs)}")
            if name.startswith("vit_zoo") and (precision, "keras-hub TF") in times:
                line += f", vs keras-hub {ratio(ours, times[(precision, 'keras-hub TF')])}"
            print(line)


if __name__ == "__main__":
    main()
