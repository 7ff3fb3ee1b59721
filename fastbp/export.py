"""ONNX export: a trained Network or estimator as an ONNX model (``pip install fastbp[onnx]``).

The graph is the forward pass of reference.layers, one layer to a Gemm (z = a W^T + b)
and the activation's operators from its table entry (functions.ACTIVATIONS[...].onnx).
The opset and IR version are pinned (OPSET, IR_VERSION) so that a file means the same
to every runtime that reads it; the tensors are in the network's dtype (float32 or
float64) and the batch dimension is free.

Outputs:
  - a Network: "outputs", what Network.predict gives;
  - MLPClassifier: "label" (predict's labels: classes_ for one label per sample, 0/1 int64
    indicators for multi-label) and "probabilities" (predict_proba's);
  - MLPRegressor: "predictions" (predict's: (n,) for a 1-D y, else (n, n_outputs)).
onnx is needed only here, and imported only when export_onnx is called.
"""
import os

import numpy as np

from .functions import ACTIVATIONS, parameter_of

OPSET = 17          # ONNX's default domain; every operator used here is unchanged since 13-14
IR_VERSION = 8      # the IR version of opset 17 (onnx 1.12)


def _need_onnx():
    try:
        import onnx
    except ImportError as error:
        raise ImportError("fastbp.export_onnx needs the onnx package: pip install 'fastbp[onnx]'") from error
    return onnx


class _Graph:
    """The nodes and initializers of a graph being built, with fresh names."""

    def __init__(self, onnx, dtype):
        self.onnx, self.dtype, self.nodes, self.initializers, self.count = onnx, dtype, [], [], 0

    def name(self, stem):
        self.count += 1
        return "%s_%d" % (stem, self.count)

    def constant(self, stem, value, dtype=None):
        name = self.name(stem)
        array = np.asarray(value, dtype=self.dtype if dtype is None else dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op, inputs, output=None, **attributes):
        output = output or self.name(op.lower())
        self.nodes.append(self.onnx.helper.make_node(op, list(inputs), [output], **attributes))
        return output


def _layers(graph, net, x):
    """The network's forward pass on the tensor named x; returns its outputs' name."""
    a = x
    for l, (W, name) in enumerate(zip(net.weights, net.activations)):
        inputs = [a, graph.constant("W%d" % (l + 1), W)]
        if net.bias:
            inputs.append(graph.constant("b%d" % (l + 1), net.biases[l]))
        z = graph.node("Gemm", inputs, transB=1)                     # z = a W^T + b
        a = _activation(graph, name, parameter_of(name, net.activation_parameters), z)
    return a


def _activation(graph, name, parameter, z):
    """The activation's ONNX steps (functions.ACTIVATIONS) on the tensor named z."""
    outputs = []
    for step in ACTIVATIONS[name].onnx:
        op, names, attributes = step if len(step) == 3 else step + ({},)
        inputs = []
        for n in names:
            if n == "z":
                inputs.append(z)
            elif n == "last":
                inputs.append(outputs[-1])
            elif n == "parameter":
                inputs.append(graph.constant(name, parameter))
            elif isinstance(n, str) and n.startswith("step "):
                inputs.append(outputs[int(n[5:])])
            else:
                inputs.append(graph.constant("c", n))                 # a number
        outputs.append(graph.node(op, inputs, **attributes))
    return outputs[-1]


def export_onnx(model, path):
    """Write a model to path as an ONNX model (opset OPSET, IR version IR_VERSION),
    atomically, checked with onnx.checker before it is written. Needs fastbp[onnx].

    Parameters
    ----------
    model : Network, or a fitted MLPClassifier or MLPRegressor
    path : str or os.PathLike

    Returns
    -------
    the path given

    Raises
    ------
    TypeError
        For anything but a fastbp network or estimator."""
    from .io import atomic_write, check_writable
    check_writable(path)
    onnx = _need_onnx()
    from .estimators import MLPClassifier, MLPRegressor
    from .network import Network
    if isinstance(model, (MLPClassifier, MLPRegressor)):
        model._check_is_fitted()
        net = model.net_
    elif isinstance(model, Network):
        net = model
    else:
        raise TypeError("export_onnx takes a fastbp.Network, MLPClassifier or MLPRegressor, got %s"
                        % type(model).__name__)
    element = onnx.helper.np_dtype_to_tensor_dtype(net.dtype)
    graph = _Graph(onnx, net.dtype)
    outputs = _layers(graph, net, "X")
    if isinstance(model, MLPClassifier):
        results = _classifier_outputs(graph, model, outputs, element)
    elif isinstance(model, MLPRegressor):
        shape = ["N"] if model._y_ndim == 1 else ["N", net.sizes[-1]]
        if model._y_ndim == 1:
            outputs = graph.node("Reshape", [outputs, graph.constant("shape", [-1], np.int64)])
        graph.node("Identity", [outputs], "predictions")
        results = [onnx.helper.make_tensor_value_info("predictions", element, shape)]
    else:
        graph.node("Identity", [outputs], "outputs")
        results = [onnx.helper.make_tensor_value_info("outputs", element, ["N", net.sizes[-1]])]
    inputs = [onnx.helper.make_tensor_value_info("X", element, ["N", net.sizes[0]])]
    proto = onnx.helper.make_model(
        onnx.helper.make_graph(graph.nodes, "fastbp", inputs, results, graph.initializers),
        opset_imports=[onnx.helper.make_opsetid("", OPSET)], producer_name="fastbp",
        ir_version=IR_VERSION)
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    atomic_write(os.fspath(path), lambda f: f.write(data))
    return path


def _classifier_outputs(graph, clf, outputs, element):
    """label and probabilities, as MLPClassifier's predict and predict_proba."""
    onnx = graph.onnx
    n = len(clf.classes_)
    if clf._kind == "binary":                                     # one sigmoid: [1 - p, p]
        complement = graph.node("Sub", [graph.constant("one", 1.0), outputs])
        probabilities = graph.node("Concat", [complement, outputs], axis=1)
    else:
        probabilities = outputs
    graph.node("Identity", [probabilities], "probabilities")
    if clf._kind == "multilabel":                                 # 0/1 per label
        above = graph.node("Greater", [outputs, graph.constant("half", 0.5)])
        graph.node("Cast", [above], "label", to=onnx.TensorProto.INT64)
        label = onnx.helper.make_tensor_value_info("label", onnx.TensorProto.INT64, ["N", n])
    else:
        # argmax; the binary case's ties (p = 0.5) go to class 0, as predict's p > 0.5
        index = graph.node("ArgMax", [probabilities], axis=1, keepdims=0)
        classes = np.asarray(clf.classes_)
        if classes.dtype.kind in "iub":
            table, kind = classes.astype(np.int64), onnx.TensorProto.INT64
        elif classes.dtype.kind == "f":
            table, kind = classes.astype(np.float64), onnx.TensorProto.DOUBLE
        elif all(isinstance(c, str) for c in classes.tolist()):
            table, kind = np.array(classes.tolist(), dtype=object), onnx.TensorProto.STRING
        else:
            raise TypeError("export_onnx: class labels must be numbers or strings for ONNX, got %s"
                            % sorted({type(c).__name__ for c in classes.tolist()}))
        graph.node("Gather", [graph.constant("classes", table, table.dtype), index], "label", axis=0)
        label = onnx.helper.make_tensor_value_info("label", kind, ["N"])
    return [label, onnx.helper.make_tensor_value_info("probabilities", element, ["N", n])]
