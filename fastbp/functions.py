"""Activations, their derivatives and losses: one small function each, in lookup tables.

Every formula here is written with NumPy ufuncs, so the same function serves whole
arrays in the NumPy reference and single numbers inside the Numba kernels (which
compile these very functions). Adding an activation is one function, one table line
here and one ``elif`` in ``kernels._activate``/``kernels._derivative``.

Derivatives are written in terms of the activation's *output* a = g(z), as the seeds do
(sigmoid: a(1 - a)); all four hidden activations allow it.
"""
import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def tanh(z):
    return np.tanh(z)


def relu(z):
    return np.maximum(z, 0.0)


def identity(z):
    return z


def sigmoid_derivative(a):
    return a * (1.0 - a)


def tanh_derivative(a):
    return 1.0 - a * a


def relu_derivative(a):
    # a = relu(z) >= 0, so sign(a) is the step 1[z > 0] (0 at z = 0), in a's dtype.
    return np.sign(a)


def identity_derivative(a):
    return a * 0.0 + 1.0


def softmax(Z):
    """Row-wise softmax of a (m, n) array, shifted by the row maximum for stability."""
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


# name -> (g, g' as a function of a = g(z)). The order gives the kernels' integer codes.
ACTIVATIONS = {
    "sigmoid": (sigmoid, sigmoid_derivative),
    "tanh": (tanh, tanh_derivative),
    "relu": (relu, relu_derivative),
    "identity": (identity, identity_derivative),
}
HIDDEN_ACTIVATIONS = tuple(ACTIVATIONS)
OUTPUT_ACTIVATIONS = HIDDEN_ACTIVATIONS + ("softmax",)
ACTIVATION_CODES = {name: code for code, name in enumerate(OUTPUT_ACTIVATIONS)}


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


# name -> (per-sample loss, the output activations it pairs with; None: any).
# With binary_cross_entropy + sigmoid and cross_entropy + softmax the output error term
# dE/dz is simply o - t; with mse it is (o - t) * g'(o) (softmax: its full Jacobian).
LOSSES = {
    "mse": (mse, None),
    "binary_cross_entropy": (binary_cross_entropy, ("sigmoid",)),
    "cross_entropy": (cross_entropy, ("softmax",)),
}
LOSS_CODES = {name: code for code, name in enumerate(LOSSES)}
