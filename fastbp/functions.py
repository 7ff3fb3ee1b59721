"""Activations, their derivatives and losses: one small function each, in tables that hold
everything the rest of fastbp branches on.

Every formula here is written with NumPy ufuncs, so the same function serves whole
arrays in the NumPy reference and single numbers inside the Numba kernels (which
compile these very functions). The tables' order gives the kernels' integer codes.

Adding an activation: its two functions and one ACTIVATIONS entry here, and one branch in
``kernels._activate`` and ``kernels._derivative`` (CONTRIBUTING.md has the checklist).
Adding a loss: its function and one LOSSES entry here, and one branch in
``kernels._sample_loss``.
"""
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np

# ---------------------------------------------------------------- activations
# Each derivative is g'(z) written as derivative(z, a), with a = g(z). Most read only a, as
# the seeds do (sigmoid: a(1 - a)); SiLU's needs z, so the kernels keep z for such layers.


def exponential(z):
    """e^z: np.exp here and in the reference. The kernels compile their own, which
    vectorises (kernels.py, "the exponential"); the formulas below call this one name."""
    return np.exp(z)


def sigmoid(z):
    return 1.0 / (1.0 + exponential(-z))


def tanh(z):
    return np.tanh(z)


def relu(z):
    return np.maximum(z, 0.0)


def identity(z):
    return z


def silu(z):                     # z sigmoid(z), a.k.a. swish (Ramachandran et al., 2017)
    return z / (1.0 + exponential(-z))


def exp(z):                      # the Poisson loss's output (the log link's inverse)
    return exponential(z)


def sigmoid_derivative(z, a):
    return a * (1.0 - a)


def tanh_derivative(z, a):
    return 1.0 - a * a


def relu_derivative(z, a):
    # a = relu(z) >= 0, so sign(a) is the step 1[z > 0] (0 at z = 0), in a's dtype.
    return np.sign(a)


def identity_derivative(z, a):
    return a * 0.0 + 1.0


def silu_derivative(z, a):
    s = 1.0 / (1.0 + exponential(-z))     # d/dz z s(z) = s + z s (1 - s) = s + a (1 - s)
    return s + a * (1.0 - s)


def exp_derivative(z, a):
    return a


def softmax(Z):
    """Row-wise softmax of a (m, n) array, shifted by the row maximum for stability."""
    E = exponential(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Activation:
    """g and g'; ``needs_z``: whether g' reads z (the kernels then keep each such layer's
    pre-activations); ``hidden``: whether hidden layers may use it. softmax is row-wise
    and has no elementwise derivative: the losses' deltas handle it (see LOSSES).
    ``onnx``: g as ONNX operators, for fastbp.export: steps (op_type, inputs[, attributes]),
    each input "z" (the layer's pre-activations) or "last" (the previous step's output)."""
    g: Callable
    derivative: Optional[Callable]
    onnx: tuple
    needs_z: bool = False
    hidden: bool = True


ACTIVATIONS = {
    "sigmoid": Activation(sigmoid, sigmoid_derivative, (("Sigmoid", ("z",)),)),
    "tanh": Activation(tanh, tanh_derivative, (("Tanh", ("z",)),)),
    "relu": Activation(relu, relu_derivative, (("Relu", ("z",)),)),
    "identity": Activation(identity, identity_derivative, (("Identity", ("z",)),)),
    "softmax": Activation(softmax, None, (("Softmax", ("z",), {"axis": 1}),), hidden=False),
    "silu": Activation(silu, silu_derivative, (("Sigmoid", ("z",)), ("Mul", ("z", "last"))), needs_z=True),
    "exp": Activation(exp, exp_derivative, (("Exp", ("z",)),), hidden=False),
}
HIDDEN_ACTIVATIONS = tuple(name for name, a in ACTIVATIONS.items() if a.hidden)
OUTPUT_ACTIVATIONS = tuple(ACTIVATIONS)
ACTIVATION_CODES = {name: code for code, name in enumerate(ACTIVATIONS)}
NEEDS_Z = np.array([a.needs_z for a in ACTIVATIONS.values()])   # by code, for the kernels


# ---------------------------------------------------------------- losses

def clip_probability(O):
    """Keep log() finite: clip outputs into [eps, 1 - eps] of their dtype (as scikit-learn)."""
    eps = np.finfo(O.dtype).eps
    return np.clip(O, eps, 1.0 - eps)


# Per-sample losses of outputs O and targets T, both (m, n_out); each returns (m,).
def mse(O, T):
    return 0.5 * np.sum((T - O) ** 2, axis=1)


def binary_cross_entropy(O, T):
    O = clip_probability(O)
    return -np.sum(T * np.log(O) + (1.0 - T) * np.log(1.0 - O), axis=1)


def cross_entropy(O, T):
    return -np.sum(T * np.log(clip_probability(O)), axis=1)


def poisson(O, T):
    """Half the Poisson deviance, scikit-learn's (sum over outputs; 0 for a perfect fit):
    t log(t / o) - t + o, with t log t = 0 at t = 0."""
    safe_T = np.where(T > 0, T, 1.0)
    return np.sum(np.where(T > 0, T * np.log(safe_T / O), 0.0) - T + O, axis=1)


# How a loss's output error term dE/dz is formed:
#   "matching": o - t, for the output its canonical link pairs it with (log-loss with sigmoid,
#               cross-entropy with softmax, Poisson with exp);
#   "chain":    dE/do times g'(z): (o - t) g'(z) for mse (softmax: its full Jacobian).
DELTA_KINDS = ("chain", "matching")
# What targets a loss takes: "any" real, "unit" (in [0, 1]), "distribution" (in [0, 1],
# each row summing to 1), "nonnegative".
TARGET_KINDS = ("any", "unit", "distribution", "nonnegative")


@dataclass(frozen=True)
class Loss:
    """A per-sample loss, the form of its output delta, the outputs it pairs with (None:
    any) and the targets it takes."""
    per_sample: Callable
    delta: str
    outputs: Optional[Tuple[str, ...]]
    targets: str


LOSSES = {
    "mse": Loss(mse, "chain", None, "any"),
    "binary_cross_entropy": Loss(binary_cross_entropy, "matching", ("sigmoid",), "unit"),
    "cross_entropy": Loss(cross_entropy, "matching", ("softmax",), "distribution"),
    "poisson": Loss(poisson, "matching", ("exp",), "nonnegative"),
}
LOSS_CODES = {name: code for code, name in enumerate(LOSSES)}
DELTA_OF = np.array([DELTA_KINDS.index(loss.delta) for loss in LOSSES.values()])   # by code



def mean_loss(name, O, T, weights=None):
    """The mean over the samples of the loss `name`'s per-sample values (weighted by the
    sample weights, if given: sum_i s_i E_i / sum_i s_i)."""
    return float(np.average(LOSSES[name].per_sample(O, T), weights=weights))


def accuracy(O, labels, weights=None):
    """The fraction of samples classified right (of their total weight, if weights are
    given): the largest of several outputs is the label's, or one output's is above 0.5
    exactly when the label is 1."""
    predicted = O[:, 0] > 0.5 if O.shape[1] == 1 else O.argmax(axis=1)
    return float(np.average(predicted == np.asarray(labels), weights=weights))


def labels_of(T):
    """The class labels of target rows (a one-column target above 0.5 is class 1)."""
    return T[:, 0] > 0.5 if T.shape[1] == 1 else T.argmax(axis=1)


for _name, _loss in LOSSES.items():      # the tables' own consistency, checked at import
    assert _loss.delta in DELTA_KINDS and _loss.targets in TARGET_KINDS, _name
    assert _loss.outputs is None or set(_loss.outputs) <= set(ACTIVATIONS), _name
    assert _loss.delta == "chain" or _loss.outputs, _name + ": a matching delta names its outputs"
