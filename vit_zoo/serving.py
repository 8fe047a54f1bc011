"""A client for models exported with `vit_zoo.export.saved_model` and served by TF Serving.

    from vit_zoo import serving
    outputs = serving.predict_rest("http://localhost:8501", "vit_b16", images)  # (N, H, W, 3)
    outputs = serving.predict_rest("http://localhost:8501", "vit_b16",
                                   {"image_bytes": [open("cat.jpg", "rb").read()]},
                                   signature_name="predict_image_bytes")
    outputs = serving.predict_grpc("localhost:8500", "vit_b16", images)
    outputs["top_k_labels"]  # -> array of bytes, (N, k)

REST follows TF Serving's JSON rules: tensors as nested lists, binary strings as
`{"b64": "..."}` objects, requests in row (`instances`) or columnar (`inputs`) format. The REST
half needs only numpy and the standard library, and this module imports no TensorFlow: a client
that only posts JSON does not pay for it. The gRPC half needs tensorflow-serving-api and grpcio
(`pip install 'vit_zoo[serving]'`), imported when first used.

Both transports return a dict of numpy arrays: name -> value, strings as `bytes`. JSON carries
no dtype, so REST gives float64 / int64 where gRPC gives the signature's float32 / int32.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import grpc
    from tensorflow_serving.apis import predict_pb2

__all__ = [
    "ServingError",
    "image_bytes_body",
    "parse_predict_response",
    "parse_rest_reply",
    "post_predict",
    "predict_grpc",
    "predict_request",
    "predict_rest",
    "rest_body",
    "rest_url",
    "texts_body",
]

Format = Literal["row", "columnar"]
Inputs = Any  # an array (a single-input signature) or a mapping input name -> array
_INSTALL_HINT = "pip install 'vit_zoo[serving]'"
# Unlimited on both sides: a batch of 384 px images or a ViT's token sequences passes gRPC's
# default 4 MiB receive limit.
_CHANNEL_OPTIONS = [("grpc.max_send_message_length", -1),
                    ("grpc.max_receive_message_length", -1)]


class ServingError(RuntimeError):
    """The server refused a request or could not run it; the message is the server's own.

    `status` is the HTTP status (REST) or the gRPC status code name (e.g. "NOT_FOUND"), or None
    when the server could not be reached or its reply was not one TF Serving sends.
    """

    def __init__(self, message: str, status: int | str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status


# ----------------------------------------------------------------------------- REST requests


def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _to_json(value: Any) -> Any:
    """A tensor value -> its JSON form: nested lists; bytes as {"b64": ...}, the only way TF
    Serving takes binary strings; str as JSON strings (UTF-8 DT_STRING)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "biuf":
            return value.tolist()  # the fast path for images
        if value.dtype.kind not in "SUO":
            raise TypeError(f"TF Serving's JSON has no encoding for {value.dtype} tensors.")
        return _to_json(value.tolist())
    if isinstance(value, (list, tuple)):
        return [_to_json(item) for item in value]
    if isinstance(value, np.generic):
        return _to_json(value.item())
    if isinstance(value, (str, bool, int, float)):
        return value
    raise TypeError(f"TF Serving's JSON has no encoding for {type(value).__name__} values.")


def _rows(columns: dict[str, Any]) -> list[Any]:
    """Columns (name -> batch as JSON) -> TF Serving's `instances`: one object per example for
    several inputs, bare values for one (the server then feeds its only input)."""
    for name, column in columns.items():
        if not isinstance(column, list):
            raise ValueError(f"Input {name!r} is a scalar; the row format needs a batch "
                             "dimension (use format='columnar').")
    sizes = {name: len(column) for name, column in columns.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"The row format needs one batch size for all inputs, got {sizes}; "
                         "use format='columnar'.")
    if len(columns) == 1:
        return next(iter(columns.values()))
    names = list(columns)
    return [dict(zip(names, example)) for example in zip(*columns.values())]


def rest_body(inputs: Inputs, *, signature_name: str | None = None,
              format: Format = "row") -> dict[str, Any]:
    """The JSON body (a dict, for json.dumps) of a TF Serving REST predict request.

    Args:
        inputs: an array for a single-input signature, or a mapping input name -> array (e.g.
            {"images": ...}, {"image_bytes": [...]}, {"texts": [...]}). Numbers become nested
            lists; bytes become {"b64": ...} objects (encoded images); str stays a string.
        signature_name: omitted: the server's `serving_default`.
        format: "row" -> {"instances": [...]} (per-example objects when several inputs, bare
            values for one); "columnar" -> {"inputs": ...} (the mapping, or the bare array).
    """
    if format not in ("row", "columnar"):
        raise ValueError(f"format must be 'row' or 'columnar', got {format!r}.")
    body: dict[str, Any] = {}
    if signature_name:
        body["signature_name"] = signature_name
    if isinstance(inputs, Mapping):
        if not inputs:
            raise ValueError("No inputs given.")
        columns = {str(name): _to_json(value) for name, value in inputs.items()}
        body.update({"instances": _rows(columns)} if format == "row" else {"inputs": columns})
    else:
        value = _to_json(inputs)
        body.update({"instances": _rows({"input": value})} if format == "row"
                    else {"inputs": value})
    return body


def _read_image(item: bytes | str | os.PathLike) -> bytes:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    with open(item, "rb") as file:
        return file.read()


def image_bytes_body(images: Iterable[bytes | str | os.PathLike] | bytes | str | os.PathLike, *,
                     signature_name: str = "predict_image_bytes",
                     format: Format = "row") -> dict[str, Any]:
    """A REST body for an `*_image_bytes` signature: encoded images (bytes, or paths of JPEG /
    PNG / GIF / BMP files, sent as they are) that the server decodes and resizes itself, so the
    client needs no image library and sends far less than float pixels."""
    if isinstance(images, (bytes, bytearray, memoryview, str, os.PathLike)):
        images = [images]
    encoded = [_read_image(item) for item in images]
    return rest_body({"image_bytes": encoded}, signature_name=signature_name, format=format)


def texts_body(texts: Iterable[str] | str, *, signature_name: str = "encode_text",
               format: Format = "row") -> dict[str, Any]:
    """A REST body for CLIP's `encode_text` signature: raw strings, tokenized in the server's
    graph. A single str is one text (not its characters)."""
    texts = [texts] if isinstance(texts, str) else [str(text) for text in texts]
    return rest_body({"texts": texts}, signature_name=signature_name, format=format)


# ------------------------------------------------------------------------------ REST replies


def _from_json(value: Any) -> Any:
    """JSON leaves -> tensor values: {"b64": ...} -> bytes, strings -> UTF-8 bytes (what the
    gRPC reply and the SavedModel give for DT_STRING)."""
    if _is_b64(value):
        return base64.b64decode(value["b64"])
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, list):
        return [_from_json(item) for item in value]
    if isinstance(value, dict):
        raise ServingError(f"Unexpected object in a tensor value: {value!r}")
    return value


def _array(value: Any) -> np.ndarray:
    """A JSON tensor -> numpy: numbers as int64 / float64 / bool, strings as an object array of
    bytes (numpy's fixed-width "S" would drop trailing NUL bytes)."""
    try:
        array = np.asarray(value)
    except ValueError:  # ragged, or mixed dicts and lists
        array = None
    if array is not None and array.dtype.kind in "biuf":
        return array
    decoded = _from_json(value)
    if not isinstance(decoded, list):
        result = np.empty((), dtype=object)
        result[()] = decoded
        return result
    return np.array(decoded, dtype=object)


def _named(value: Any, output_name: str) -> dict[str, np.ndarray]:
    if isinstance(value, dict) and not _is_b64(value):
        return {str(name): _array(item) for name, item in value.items()}
    return {output_name: _array(value)}


def parse_rest_reply(reply: str | bytes | Mapping[str, Any], *,
                     output_name: str = "output") -> dict[str, np.ndarray]:
    """TF Serving's REST predict reply -> output name -> numpy array (batch first).

    Row replies ({"predictions": [...]}) are stacked per output; columnar ones ({"outputs":
    ...}) are taken as they are. TF Serving drops the name of a signature's only output (e.g.
    `features`); it is then returned as `output_name`. An {"error": ...} reply raises
    ServingError with the server's message.
    """
    if isinstance(reply, (str, bytes, bytearray)):
        try:
            reply = json.loads(reply)  # Python's json reads TF Serving's NaN / Infinity tokens
        except ValueError as error:
            raise ServingError(f"The reply is not JSON: {reply[:200]!r}") from error
    if not isinstance(reply, Mapping):
        raise ServingError(f"The reply is not a JSON object: {str(reply)[:200]}")
    if "error" in reply:
        raise ServingError(str(reply["error"]))
    if "outputs" in reply:
        return _named(reply["outputs"], output_name)
    if "predictions" not in reply:
        raise ServingError(f"The reply has neither 'predictions' nor 'outputs': "
                           f"{sorted(reply)}")
    predictions = reply["predictions"]
    if not isinstance(predictions, list):
        raise ServingError(f"'predictions' is not a list: {str(predictions)[:200]}")
    if predictions and all(isinstance(p, dict) and not _is_b64(p) for p in predictions):
        names = list(predictions[0])
        return {name: _array([p[name] for p in predictions]) for name in names}
    return {output_name: _array(predictions)}


def rest_url(url: str, model_name: str, version: int | None = None) -> str:
    """<url>/v1/models/<model_name>[/versions/<version>]:predict; `url` is the server's REST
    address, e.g. http://localhost:8501 (http:// is added when no scheme is given)."""
    if "://" not in url:
        url = "http://" + url
    path = f"/v1/models/{urllib.parse.quote(model_name, safe='')}"
    if version is not None:
        path += f"/versions/{int(version)}"
    return url.rstrip("/") + path + ":predict"


def _error_text(body: bytes) -> str:
    """The "error" field of a TF Serving error body, else the body itself (a proxy's page)."""
    text = body.decode("utf-8", errors="replace")
    try:
        return str(json.loads(text)["error"])
    except (ValueError, KeyError, TypeError):
        return text.strip() or "(empty reply)"


def post_predict(url: str, model_name: str, body: Mapping[str, Any], *,
                 version: int | None = None, timeout: float = 60.0,
                 output_name: str = "output") -> dict[str, np.ndarray]:
    """POST a ready body (rest_body, image_bytes_body, texts_body) to TF Serving's REST predict
    endpoint; returns parse_rest_reply of the answer. Errors raise ServingError with the
    server's message and HTTP status."""
    endpoint = rest_url(url, model_name, version)
    request = urllib.request.Request(
        endpoint, data=json.dumps(body).encode("utf-8"), method="POST",
        headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            reply = response.read()
    except urllib.error.HTTPError as error:
        raise ServingError(f"HTTP {error.code} from {endpoint}: {_error_text(error.read())}",
                           status=error.code) from error
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ServingError(f"Cannot reach {endpoint}: {reason}") from error
    return parse_rest_reply(reply, output_name=output_name)


def predict_rest(url: str, model_name: str, inputs: Inputs, *,
                 signature_name: str | None = None, version: int | None = None,
                 format: Format = "row", timeout: float = 60.0,
                 output_name: str = "output") -> dict[str, np.ndarray]:
    """Run `inputs` (see rest_body) through a served model over REST; returns output name ->
    numpy array. `version` None: the latest version the server has loaded."""
    body = rest_body(inputs, signature_name=signature_name, format=format)
    return post_predict(url, model_name, body, version=version, timeout=timeout,
                        output_name=output_name)


# ---------------------------------------------------------------------------------- gRPC


def _serving_apis():
    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2_grpc
    except ImportError as error:
        raise ImportError("The gRPC client needs tensorflow-serving-api: "
                          f"{_INSTALL_HINT}") from error
    return model_pb2, predict_pb2, prediction_service_pb2_grpc


def _grpc():
    try:
        import grpc
    except ImportError as error:
        raise ImportError(f"The gRPC client needs grpcio: {_INSTALL_HINT}") from error
    return grpc


def _grpc_array(value: Any) -> np.ndarray:
    """An input -> the numpy array its TensorProto is made from. Floats go as float32, the
    dtype of every vit_zoo image input (Python floats would go as DT_DOUBLE, which the server
    rejects); strings and bytes as an object array (numpy's "S" drops trailing NUL bytes)."""
    if isinstance(value, np.ndarray):
        array = value
    else:
        array = np.asarray(value)
        if array.dtype.kind in "SUO":
            array = np.array(value, dtype=object)
    if array.dtype.kind == "f" and array.dtype != np.float32:
        array = array.astype(np.float32)
    return array


def _input_name(array: np.ndarray, signature_name: str | None) -> str:
    """The input a bare array feeds: gRPC names every input. vit_zoo signatures take `images`
    (floats), `image_bytes` (the *_image_bytes twins) or `texts` (encode_text)."""
    if array.dtype.kind in "biuf":
        return "images"
    return "image_bytes" if "image_bytes" in (signature_name or "") else "texts"


def predict_request(model_name: str, inputs: Inputs, *, signature_name: str | None = None,
                    version: int | None = None) -> predict_pb2.PredictRequest:
    """A gRPC PredictRequest for `inputs`: a mapping input name -> array, or one array, named
    after what vit_zoo's signatures take (see _input_name). `signature_name` None: the server's
    `serving_default`; `version` None: its latest."""
    import tensorflow as tf

    model_pb2, predict_pb2, _ = _serving_apis()
    spec = model_pb2.ModelSpec(name=model_name, signature_name=signature_name or "")
    if version is not None:
        spec.version.value = int(version)
    request = predict_pb2.PredictRequest(model_spec=spec)
    if isinstance(inputs, Mapping):
        arrays = {str(name): _grpc_array(value) for name, value in inputs.items()}
    else:
        array = _grpc_array(inputs)
        arrays = {_input_name(array, signature_name): array}
    for name, array in arrays.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
    return request


def parse_predict_response(response: Any) -> dict[str, np.ndarray]:
    """A gRPC PredictResponse -> output name -> numpy array, in the signature's dtypes (strings
    as object arrays of bytes)."""
    import tensorflow as tf

    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def predict_grpc(target: str | grpc.Channel, model_name: str, inputs: Inputs, *,
                 signature_name: str | None = None, version: int | None = None,
                 timeout: float = 60.0) -> dict[str, np.ndarray]:
    """Run `inputs` (see predict_request) through a served model over gRPC.

    `target`: "host:port" of the server's gRPC port (an insecure channel, opened and closed
    here, without message size limits), or a channel of your own (TLS, reuse across calls).
    Errors raise ServingError with the server's message and the gRPC status code name.
    """
    grpc = _grpc()
    _, _, service = _serving_apis()
    request = predict_request(model_name, inputs, signature_name=signature_name,
                              version=version)
    owned = isinstance(target, str)
    channel = grpc.insecure_channel(target, options=_CHANNEL_OPTIONS) if owned else target
    try:
        response = service.PredictionServiceStub(channel).Predict(request, timeout=timeout)
    except grpc.RpcError as error:
        code = error.code()
        raise ServingError(f"gRPC {code.name} from {target if owned else 'the channel'}: "
                           f"{error.details()}", status=code.name) from error
    finally:
        if owned:
            channel.close()
    return parse_predict_response(response)
