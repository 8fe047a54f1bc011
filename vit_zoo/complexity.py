"""Compute cost of a Keras model, counted from its TensorFlow graph.

`macs(model)` traces one forward pass on one example (batch 1) at the model's input size and
adds up the multiply-accumulates (MACs) of every matrix product and convolution in the graph:
Dense layers, the attention products (Q K^T and attention x V, Swin's windows included),
convolutions (patch embeddings, the hybrids' ResNet stem), einsums. Elementwise ops,
normalizations, softmax and pooling count zero. That is the convention behind the "FLOPs" or
"GMACs" columns that fvcore and timm publish (one multiply-accumulate counted once: ViT-B/16 at
224 px is 17.56 G); PyTorch's `torch.utils.flop_counter.FlopCounterMode` counts 2 per MAC.

Nothing is known about the families here: any Keras model is counted by what its graph
computes. The weights enter the trace as symbolic inputs (`Model.stateless_call`), so no weight
value is read, and `cost` counts a model whose weights are never allocated (ViT-H/14 without
its 2.5 GB of float32).

Products of the data with an operand that is constant for the graph are not counted: they are
reductions written as matrix products (the hybrids' GroupNorm averages a feature map with a
(1 x HW) matmul against a constant row, PVT v2's linear attention pools with constant averaging
matrices), which the published counts, like PyTorch's counter, leave out. A product of a
constant with weights alone is counted: it is part of every forward pass (XCiT projects its
Fourier position features with a learned 1x1 convolution).

TensorFlow only (the trace is a tf.function); under another Keras backend `macs` raises.
"""

from __future__ import annotations

import concurrent.futures
import math
from collections.abc import Callable
from dataclasses import dataclass

import keras

from vit_zoo import structure

# Ops whose output depends on their inputs' shapes only: a tensor computed from them is
# constant for a trace with fixed shapes.
_SHAPE_OPS = {"Shape", "ShapeN", "Size", "Rank"}
# Ops that call other graphs; their insides are not visible to a walk of the outer graph.
_CALL_OPS = {"PartitionedCall", "StatefulPartitionedCall", "If", "StatelessIf", "While",
             "StatelessWhile", "Case", "StatelessCase"}


@dataclass(frozen=True)
class Cost:
    """Parameter count and multiply-accumulates per example of a model. Parameters are what
    timm and the papers count: every variable but BatchNorm's moving statistics (PyTorch keeps
    those as buffers)."""

    params: int
    macs: int


def macs(model: keras.Model, inputs=None) -> int:
    """Multiply-accumulates of one forward pass (inference) on one example.

    Args:
        model: a built Keras model. Functional models are traced at their input shapes,
            batch size 1; every other dimension must be known (build the model with a fixed
            `input_shape`).
        inputs: for models without symbolic inputs (subclassed models such as
            `vit_zoo.CLIPModel`), the structure `model(...)` takes, with `keras.Input`s or
            arrays as leaves, e.g. `{"images": keras.Input((224, 224, 3)),
            "token_ids": keras.Input((77,), dtype="int32")}`; the batch size is set to 1.
    """
    if keras.backend.backend() != "tensorflow":
        raise RuntimeError(
            "vit_zoo.complexity traces the model as a TensorFlow graph; run it with "
            f"KERAS_BACKEND=tensorflow (the backend is {keras.backend.backend()!r})."
        )
    import tensorflow as tf

    specs = keras.tree.map_structure(_one_example_spec, _model_inputs(model, inputs))

    def forward(trainable, non_trainable, example):
        return model.stateless_call(trainable, non_trainable, example, training=False)

    def variable_specs(variables):
        return [tf.TensorSpec(v.shape, v.dtype) for v in variables]

    # Functions the model calls (Keras compiles grouped convolutions as one) run as plain
    # Python while tracing, so their ops land in the traced graph where the walk sees them.
    # The outer scope keeps Keras from initializing, on leaving stateless_call's own scope,
    # variables that were deliberately left unallocated (see `cost`).
    eager = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(True)
    try:
        with keras.StatelessScope(initialize_variables=False):
            graph = tf.function(forward).get_concrete_function(
                variable_specs(model.trainable_variables),
                variable_specs(model.non_trainable_variables),
                specs,
            ).graph
    finally:
        tf.config.run_functions_eagerly(eager)
    weights = len(model.trainable_variables) + len(model.non_trainable_variables)
    return count_graph_macs(graph, data_inputs=graph.inputs[weights:])


def parameter_count(model: keras.Model) -> int:
    """`model.count_params()` less BatchNorm's moving mean and variance (buffers in PyTorch,
    not parameters)."""
    statistics = sum(
        math.prod(variable.shape)
        for layer in structure.all_layers(model)
        if isinstance(layer, keras.layers.BatchNormalization)
        for variable in (layer.moving_mean, layer.moving_variance)
    )
    return model.count_params() - statistics


def cost(build: Callable[[], keras.Model], inputs=None) -> Cost:
    """Parameters and MACs of the model `build()` returns, without allocating its weights.

    `build` runs with Keras's variable initialization deferred, in a thread of its own: Keras
    keeps its global state (the list of variables waiting for initialization among it) per
    thread, so nothing of the unallocated model outlives the call, and the caller's session
    (names, dtype policy) is untouched. `inputs` as for `macs`.
    """

    def measure() -> Cost:
        with keras.StatelessScope(initialize_variables=False):
            model = build()
        return Cost(params=parameter_count(model), macs=macs(model, inputs))

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(measure).result()


def count_graph_macs(graph, data_inputs=None) -> int:
    """MACs of the matrix products and convolutions of a TensorFlow graph with static shapes.

    `data_inputs`: the graph's inputs that carry the data (the others are weights); products of
    the data with a constant are reductions and not counted. None: every input is data."""
    constant = _constant_ops(graph)
    data = _dependent_ops(graph, graph.inputs if data_inputs is None else data_inputs)
    total = 0
    for op in graph.get_operations():
        if op.type in _CALL_OPS:
            raise ValueError(
                f"Cannot count inside {op.type} op {op.name!r}: control flow or a function "
                "call in the graph, whose products this walk does not see."
            )
        # (A transposed convolution's first input is the output size, a constant.)
        operands = op.inputs[1:3] if "BackpropInput" in op.type else op.inputs[:2]
        counter = _COUNTERS.get(op.type)
        reduction = (any(t.op.name in constant for t in operands)
                     and any(t.op.name in data for t in operands))
        if counter is None or reduction:
            continue
        shapes = [t.shape for t in op.inputs] + [op.outputs[0].shape]
        if not all(shape.is_fully_defined() for shape in shapes):
            raise ValueError(
                f"{op.type} op {op.name!r} has shapes that are not static "
                f"({[tuple(s) for s in shapes]}); build the model with a fixed input size."
            )
        total += counter(op)
    return total


def _model_inputs(model: keras.Model, inputs):
    if inputs is not None:
        return inputs
    try:
        symbolic = model.inputs
    except AttributeError:
        symbolic = None
    if not symbolic:
        raise ValueError(
            f"{model.name} has no symbolic inputs (a subclassed model): pass `inputs`, the "
            "structure it is called with, e.g. {'images': keras.Input((224, 224, 3)), "
            "'token_ids': keras.Input((77,), dtype='int32')}."
        )
    return symbolic[0] if len(symbolic) == 1 else list(symbolic)


def _one_example_spec(value):
    import tensorflow as tf

    shape = tuple(value.shape)
    if any(size is None for size in shape[1:]):
        raise ValueError(
            f"Input shape {shape} has unknown sizes besides the batch: MACs depend on them. "
            "Build the model with a fixed input_shape."
        )
    return tf.TensorSpec((1, *shape[1:]), keras.backend.standardize_dtype(value.dtype))


def _constant_ops(graph) -> set[str]:
    """Names of ops whose outputs do not depend on the model's inputs or weights (captured
    tensors count as constants, captured variables as weights)."""
    arguments = {t.op.name for t in graph.inputs}
    captured = {t.op.name for t in graph.internal_captures}
    varying: set[str] = set()
    constant: set[str] = set()
    for op in graph.get_operations():  # creation order is a topological order
        if op.type == "Placeholder":
            is_variable = op.outputs[0].dtype.name == "resource"
            is_varying = op.name in arguments and (op.name not in captured or is_variable)
        elif op.type in _SHAPE_OPS:
            is_varying = False
        else:
            is_varying = any(t.op.name in varying for t in op.inputs)
        (varying if is_varying else constant).add(op.name)
    return constant


def _dependent_ops(graph, sources) -> set[str]:
    """Names of the ops whose outputs depend on any of the tensors `sources`."""
    dependent = {t.op.name for t in sources}
    for op in graph.get_operations():  # creation order is a topological order
        if op.type not in _SHAPE_OPS and any(t.op.name in dependent for t in op.inputs):
            dependent.add(op.name)
    return dependent


def _elements(tensor) -> int:
    return math.prod(tensor.shape.as_list())


def _matmul(op) -> int:
    rows_by_depth = op.inputs[0].shape.as_list()
    depth = rows_by_depth[0] if op.get_attr("transpose_a") else rows_by_depth[1]
    return _elements(op.outputs[0]) * depth


def _batch_matmul(op) -> int:
    left = op.inputs[0].shape.as_list()
    depth = left[-2] if op.get_attr("adj_x") else left[-1]
    return _elements(op.outputs[0]) * depth


def _convolution(op) -> int:
    # Kernel (*window, input channels per group, output channels): each output element is a
    # dot product over the window and the group's input channels.
    return _elements(op.outputs[0]) * math.prod(op.inputs[1].shape.as_list()[:-1])


def _depthwise_convolution(op) -> int:
    # Kernel (*window, channels, multiplier): each output element sees one input channel.
    return _elements(op.outputs[0]) * math.prod(op.inputs[1].shape.as_list()[:-2])


def _transposed_convolution(op) -> int:
    # The gradient of a convolution with respect to its input (Keras's ConvTranspose):
    # kernel (*window, output channels, input channels); every input element is multiplied
    # by a (window x output channels) slice of it.
    return _elements(op.inputs[2]) * math.prod(op.inputs[1].shape.as_list()[:-1])


def _einsum(op) -> int:
    """A two-operand einsum multiplies once per combination of all its index values."""
    if len(op.inputs) < 2:
        return 0  # a transpose, trace or reduction: no products
    equation = op.get_attr("equation").decode()
    sizes: dict = {}
    for term, tensor in zip(equation.split("->")[0].split(","), op.inputs):
        shape = tensor.shape.as_list()
        head, ellipsis, tail = term.partition("...")
        # Ellipsis dimensions broadcast from the right: name them by their distance from it.
        middle = len(shape) - len(head) - len(tail) if ellipsis else 0
        labels = [*head, *(("...", middle - i) for i in range(middle)), *tail]
        for label, size in zip(labels, shape):
            sizes[label] = max(sizes.get(label, 1), size)
    return math.prod(sizes.values())


_COUNTERS = {
    "MatMul": _matmul,
    "BatchMatMul": _batch_matmul,
    "BatchMatMulV2": _batch_matmul,
    "BatchMatMulV3": _batch_matmul,
    "Einsum": _einsum,
    "Conv2D": _convolution,
    "Conv3D": _convolution,
    "DepthwiseConv2dNative": _depthwise_convolution,
    "Conv2DBackpropInput": _transposed_convolution,
    "Conv3DBackpropInputV2": _transposed_convolution,
}
