"""vit_zoo.serving against a real SavedModel: REST bodies decoded by TF Serving's JSON rules and
fed to the exported signatures, replies formatted as TF Serving formats them, an HTTP and a gRPC
server on 127.0.0.1 that run the loaded model, and the real tensorflow_model_server when it is
installed."""

from __future__ import annotations

import base64
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent import futures
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import vit_zoo
from tests.helpers import randomize, relative_error
from vit_zoo import serving
from vit_zoo.export import saved_model

LABELS = list("abcdefghij")
MODEL_NAME = "tiny_vit"


@dataclass
class Exported:
    model: keras.Model
    base: Path  # TF Serving's model_base_path: <base>/1/saved_model.pb
    loaded: object  # tf.saved_model.load of version 1


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Exported:
    """A tiny ViT classifier with random weights, exported once as version 1."""
    model = vit_zoo.ViT(vit_zoo.models.vit.ViTArch("tiny", 64, 2, 4, 128, 8),
                        input_shape=(32, 32, 3), classes=10, classifier_activation=None)
    randomize(model, seed=1, scale=0.1, gamma_center=1.0)
    base = tmp_path_factory.mktemp("serving") / MODEL_NAME
    version = saved_model(model, base / "1", labels=LABELS)
    return Exported(model, base, tf.saved_model.load(str(version)))


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    """Whole-number pixels: a PNG of them decodes to exactly these floats."""
    return np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype("float32")


def _png(image: np.ndarray) -> bytes:
    return tf.io.encode_png(image.astype("uint8")).numpy()


def _expect(model: keras.Model, images: np.ndarray) -> dict[str, np.ndarray]:
    """What the classifier signatures must answer, from Keras."""
    logits = model.predict(images, verbose=0)
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(logits))
    top = np.argsort(-probabilities, axis=-1)[:, :5]
    return {"logits": logits, "probabilities": probabilities, "top_k_indices": top,
            "top_k_labels": np.array(LABELS, dtype=object)[top].astype(bytes)}


def _check(outputs: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    for name in ("logits", "probabilities"):
        assert relative_error(outputs[name], expected[name]) <= 1e-5, name
    np.testing.assert_array_equal(outputs["top_k_indices"], expected["top_k_indices"])
    assert [list(row) for row in outputs["top_k_labels"]] == \
        [list(row) for row in expected["top_k_labels"]]
    np.testing.assert_allclose(outputs["top_k_scores"],
                               np.take_along_axis(expected["probabilities"],
                                                  expected["top_k_indices"], -1), rtol=1e-5)


# ---- TF Serving's side of the REST API, after its documented JSON rules (api_rest.md) ----


def _leaves(value, string: bool):
    """JSON -> tensor values: {"b64": s} is base64 bytes and only for DT_STRING; a JSON string
    is UTF-8 DT_STRING."""
    if isinstance(value, list):
        return [_leaves(item, string) for item in value]
    if isinstance(value, dict):
        assert set(value) == {"b64"} and string, f"not a tensor value: {value}"
        return base64.b64decode(value["b64"])
    if isinstance(value, str):
        assert string, "a JSON string for a numeric input"
        return value.encode("utf-8")
    return value


def _is_b64(value) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def serving_decode(body: dict, loaded) -> tuple[object, dict[str, tf.Tensor]]:
    """A predict body -> (signature, feeds) as TF Serving's REST handler builds them: row
    format stacks `instances` per input (bare values feed the only input), columnar takes
    `inputs` (an object of named inputs, or the only input's value)."""
    signature = loaded.signatures[body.get("signature_name", "serving_default")]
    specs = signature.structured_input_signature[1]
    if "instances" in body:
        rows = body["instances"]
        if rows and all(isinstance(row, dict) and not _is_b64(row) for row in rows):
            columns = {name: [row[name] for row in rows] for name in rows[0]}
        else:
            assert len(specs) == 1, "bare instances need a single-input signature"
            columns = {next(iter(specs)): rows}
    else:
        inputs = body["inputs"]
        if isinstance(inputs, dict) and not _is_b64(inputs):
            columns = inputs
        else:
            assert len(specs) == 1, "a bare 'inputs' value needs a single-input signature"
            columns = {next(iter(specs)): inputs}
    assert set(columns) == set(specs), (sorted(columns), sorted(specs))
    feeds = {}
    for name, value in columns.items():
        spec = specs[name]
        tensor = tf.constant(_leaves(value, spec.dtype == tf.string), spec.dtype)
        assert spec.shape.is_compatible_with(tensor.shape), (name, tensor.shape, spec.shape)
        feeds[name] = tensor
    return signature, feeds


def _reply_value(name: str, value: np.ndarray):
    """One output as TF Serving writes it: DT_STRING as text, or {"b64"} for "*_bytes"."""
    if value.dtype != object:
        return value.tolist()
    encode = _b64 if name.endswith("_bytes") else _text
    return np.vectorize(encode, otypes=[object])(value).tolist()


def _b64(item: bytes) -> dict:
    return {"b64": base64.b64encode(item).decode()}


def _text(item: bytes) -> str:
    return item.decode("utf-8")


def serving_reply(outputs: dict, row: bool) -> dict:
    """Signature outputs -> TF Serving's reply: {"predictions": [per-example objects, or bare
    values for a single output]} for a row request, {"outputs": ...} for a columnar one."""
    arrays = {name: np.asarray(value) for name, value in outputs.items()}
    if not row:
        if len(arrays) == 1:
            return {"outputs": _reply_value(*next(iter(arrays.items())))}
        return {"outputs": {name: _reply_value(name, value) for name, value in arrays.items()}}
    if len(arrays) == 1:
        return {"predictions": _reply_value(*next(iter(arrays.items())))}
    columns = {name: _reply_value(name, value) for name, value in arrays.items()}
    return {"predictions": [dict(zip(columns, example)) for example in zip(*columns.values())]}


def _run(body: dict, loaded) -> dict[str, np.ndarray]:
    signature, feeds = serving_decode(json.loads(json.dumps(body)), loaded)  # over the wire
    return {name: value.numpy() for name, value in signature(**feeds).items()}


# ------------------------------------------------------------------------------- tests


def test_module_imports_without_tensorflow():
    code = ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('serving', {serving.__file__!r})\n"
            "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
            "assert 'tensorflow' not in sys.modules and 'grpc' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_bodies_have_tf_serving_shape(tmp_path):
    png = tmp_path / "x.png"
    png.write_bytes(b"\x89PNG\x00")
    assert serving.image_bytes_body([png, b"ab\x00"]) == {
        "signature_name": "predict_image_bytes",
        "instances": [{"b64": "iVBORwA="}, {"b64": "YWIA"}]}
    assert serving.texts_body("a cat", format="columnar") == {
        "signature_name": "encode_text", "inputs": {"texts": ["a cat"]}}
    assert serving.rest_body({"a": np.eye(2, dtype="int32"), "b": ["x", "y"]}) == {
        "instances": [{"a": [1, 0], "b": "x"}, {"a": [0, 1], "b": "y"}]}
    with pytest.raises(ValueError, match="one batch size"):
        serving.rest_body({"a": np.zeros((2, 1)), "b": np.zeros((3, 1))})
    assert serving.rest_url("localhost:8501/", "m a", 3) == \
        "http://localhost:8501/v1/models/m%20a/versions/3:predict"


@pytest.mark.parametrize("format", ["row", "columnar"])
def test_rest_body_decoded_by_tf_serving_rules_matches_keras(exported, images, format):
    expected = _expect(exported.model, images)
    floats = _run(serving.rest_body(images, signature_name="predict", format=format),
                  exported.loaded)
    _check(floats, expected)
    default = _run(serving.rest_body({"images": images}, format=format), exported.loaded)
    _check(default, expected)
    encoded = _run(serving.image_bytes_body([_png(image) for image in images], format=format),
                   exported.loaded)
    _check(encoded, expected)
    # The bytes signature decodes to the same pixels, so it answers like the float one.
    np.testing.assert_array_equal(encoded["logits"], floats["logits"])


@pytest.mark.parametrize("row", [True, False])
def test_parse_rest_reply_round_trips_tf_serving_replies(exported, images, row):
    outputs = {name: value.numpy() for name, value in
               exported.loaded.signatures["predict"](images=tf.constant(images)).items()}
    parsed = serving.parse_rest_reply(json.dumps(serving_reply(outputs, row)))
    assert sorted(parsed) == sorted(outputs)
    for name, value in outputs.items():
        np.testing.assert_array_equal(parsed[name], value, err_msg=name)
    assert parsed["top_k_labels"].dtype == object and parsed["top_k_labels"][0, 0] in b"abcdefghij"


def test_parse_rest_reply_single_outputs_binary_strings_and_errors():
    binary = serving_reply({"thumb_bytes": np.array([b"\x00\xff", b"z"], dtype=object)}, True)
    assert binary == {"predictions": [{"b64": "AP8="}, {"b64": "eg=="}]}
    parsed = serving.parse_rest_reply(binary, output_name="thumb_bytes")
    assert parsed["thumb_bytes"].tolist() == [b"\x00\xff", b"z"]
    features = serving.parse_rest_reply('{"outputs": [[0.5, NaN], [1, -Infinity]]}',
                                        output_name="features")
    np.testing.assert_array_equal(features["features"], [[0.5, np.nan], [1, -np.inf]])
    with pytest.raises(serving.ServingError, match=r"Servable not found for request: Latest\(x\)"):
        serving.parse_rest_reply('{ "error": "Servable not found for request: Latest(x)" }')


class _PredictHandler(BaseHTTPRequestHandler):
    """TF Serving's REST predict endpoint for one model, version 1, run by the loaded model."""

    def do_POST(self):  # noqa: N802 (http.server's name)
        match = re.fullmatch(r"/v1/models/([^/:]+)(?:/versions/(\d+))?:predict", self.path)
        if not match or match[1] != MODEL_NAME or match[2] not in (None, "1"):
            name = match[1] if match else self.path
            return self._send(404, {"error": f"Servable not found for request: Latest({name})"})
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        try:
            signature, feeds = serving_decode(body, self.server.loaded)
            outputs = {name: value.numpy() for name, value in signature(**feeds).items()}
        except (AssertionError, KeyError, ValueError, TypeError, tf.errors.OpError) as error:
            return self._send(400, {"error": str(error) or type(error).__name__})
        self._send(200, serving_reply(outputs, "instances" in body))

    def _send(self, status: int, reply: dict) -> None:
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def rest_server(exported):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PredictHandler)
    server.loaded = exported.loaded
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_predict_rest_against_an_http_server(exported, images, rest_server):
    expected = _expect(exported.model, images)
    _check(serving.predict_rest(rest_server, MODEL_NAME, images, version=1), expected)
    _check(serving.predict_rest(rest_server, MODEL_NAME, {"image_bytes": [_png(i) for i in images]},
                                signature_name="predict_image_bytes", format="columnar"),
           expected)
    with pytest.raises(serving.ServingError, match=r"HTTP 404 .*Latest\(other\)") as missing:
        serving.predict_rest(rest_server, "other", images)
    assert missing.value.status == 404
    with pytest.raises(serving.ServingError, match="HTTP 404") as no_version:
        serving.predict_rest(rest_server, MODEL_NAME, images, version=2)
    assert no_version.value.status == 404
    with pytest.raises(serving.ServingError, match=r"(?s)HTTP 400 .*images must be float32") as bad:
        serving.predict_rest(rest_server, MODEL_NAME, images[:, :16])  # wrong image size
    assert bad.value.status == 400


def test_predict_request_and_response_protos(exported, images):
    from tensorflow_serving.apis import predict_pb2

    pngs = [_png(image) for image in images]
    request = serving.predict_request(MODEL_NAME, pngs, signature_name="predict_image_bytes",
                                      version=1)
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert (request.model_spec.name, request.model_spec.signature_name,
            request.model_spec.version.value) == (MODEL_NAME, "predict_image_bytes", 1)
    assert list(tf.make_ndarray(request.inputs["image_bytes"])) == pngs
    floats = serving.predict_request(MODEL_NAME, images.astype("float64"))
    np.testing.assert_array_equal(tf.make_ndarray(floats.inputs["images"]), images)
    assert floats.model_spec.signature_name == "" and not floats.model_spec.HasField("version")

    signature = exported.loaded.signatures[request.model_spec.signature_name]
    outputs = signature(**{name: tf.constant(tf.make_ndarray(proto))
                           for name, proto in request.inputs.items()})
    response = predict_pb2.PredictResponse()
    for name, value in outputs.items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    parsed = serving.parse_predict_response(
        predict_pb2.PredictResponse.FromString(response.SerializeToString()))
    assert parsed["logits"].dtype == np.float32 and parsed["top_k_indices"].dtype == np.int32
    _check(parsed, _expect(exported.model, images))


def test_predict_grpc_against_a_grpc_server(exported, images):
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    class Servicer(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):  # noqa: N802 (the service's name)
            if request.model_spec.name != MODEL_NAME:
                context.abort(grpc.StatusCode.NOT_FOUND, "Servable not found for request: "
                              f"Latest({request.model_spec.name})")
            signature = exported.loaded.signatures[request.model_spec.signature_name
                                                   or "serving_default"]
            outputs = signature(**{name: tf.constant(tf.make_ndarray(proto))
                                   for name, proto in request.inputs.items()})
            response = predict_pb2.PredictResponse(model_spec=request.model_spec)
            for name, value in outputs.items():
                response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
            return response

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        target = f"127.0.0.1:{port}"
        _check(serving.predict_grpc(target, MODEL_NAME, images), _expect(exported.model, images))
        with pytest.raises(serving.ServingError, match=r"NOT_FOUND.*Latest\(other\)") as missing:
            serving.predict_grpc(target, "other", images)
        assert missing.value.status == "NOT_FOUND"
    finally:
        server.stop(0)


def test_grpc_needs_the_serving_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "grpc", None)
    with pytest.raises(ImportError, match=r"pip install 'vit_zoo\[serving\]'"):
        serving.predict_grpc("127.0.0.1:1", MODEL_NAME, np.zeros((1, 32, 32, 3)))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_tensorflow_model_server(exported, images, tmp_path):
    binary = shutil.which("tensorflow_model_server")
    if binary is None:
        pytest.skip("tensorflow_model_server is not on PATH (install TF Serving or use its "
                    "Docker image to run this test)")
    rest_port, grpc_port = _free_port(), _free_port()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [binary, f"--port={grpc_port}", f"--rest_api_port={rest_port}",
         f"--model_name={MODEL_NAME}", f"--model_base_path={exported.base.resolve()}"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{rest_port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            try:
                with urllib.request.urlopen(f"{url}/v1/models/{MODEL_NAME}", timeout=5) as reply:
                    states = [v["state"] for v in json.load(reply)["model_version_status"]]
                if "AVAILABLE" in states:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.5)
        expected = _expect(exported.model, images)
        pngs = [_png(image) for image in images]
        _check(serving.predict_rest(url, MODEL_NAME, images), expected)
        _check(serving.post_predict(url, MODEL_NAME, serving.image_bytes_body(pngs)), expected)
        _check(serving.predict_grpc(f"127.0.0.1:{grpc_port}", MODEL_NAME, images), expected)
        _check(serving.predict_grpc(f"127.0.0.1:{grpc_port}", MODEL_NAME, pngs,
                                    signature_name="predict_image_bytes", version=1), expected)
        with pytest.raises(serving.ServingError, match="HTTP 404") as missing:
            serving.predict_rest(url, "other", images)
        assert missing.value.status == 404
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
