"""Activations, their derivatives and losses: one small function each, in tables that hold
everything the rest of fastbp branches on.

Every formula here is written with NumPy ufuncs, so the same function serves whole
arrays in the NumPy reference and single numbers inside the Numba kernels (which
compile these very functions). The tables' order gives the kernels' integer codes.

Adding an activation: its two functions and one ACTIVATIONS entry here; the kernels'
dispatch is generated from the table (CONTRIBUTING.md has the checklist). Adding a loss:
its function and one LOSSES entry here, and one branch in ``kernels._sample_loss``.
"""
import math
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np

# ---------------------------------------------------------------- activations
# Each derivative is g'(z) written as derivative(z, a), with a = g(z). Most read only a, as
# the seeds do (sigmoid: a(1 - a)); SiLU's and GELU's need z, so the kernels keep z for such
# layers. An activation with a parameter (leaky ReLU's slope, ELU's alpha) takes it last:
# g(z, p) and derivative(z, a, p). Each matches torch.nn.functional's definition, and its
# derivative at a kink is PyTorch's too (tests/test_gradients.py holds both to numbers
# written down from PyTorch).


def exponential(z):
    """e^z: np.exp here and in the reference. The kernels compile their own, which
    vectorises (kernels.py, "the exponential"); the formulas below call this one name."""
    return np.exp(z)


def hyperbolic_tangent(z):
    """tanh z: np.tanh here and in the reference. The kernels compile their own, from
    their exponential, which vectorises (kernels.py, "the hyperbolic tangent")."""
    return np.tanh(z)


def sigmoid(z):
    return 1.0 / (1.0 + exponential(-z))


def tanh(z):
    return hyperbolic_tangent(z)


def relu(z):
    return np.maximum(z, 0.0)


def identity(z):
    return z


def silu(z):                     # z sigmoid(z), a.k.a. swish (Ramachandran et al., 2017)
    return z / (1.0 + exponential(-z))


def exp(z):                      # the Poisson loss's output (the log link's inverse)
    return exponential(z)


def leaky_relu(z, negative_slope):
    return np.maximum(z, 0.0) + negative_slope * np.minimum(z, 0.0)


def elu(z, alpha):
    return np.maximum(z, 0.0) + alpha * np.expm1(np.minimum(z, 0.0))


def softplus(z):                 # log(1 + e^z), written so that neither side overflows
    return np.maximum(z, 0.0) + np.log1p(exponential(-np.abs(z)))


GELU_K, GELU_C = math.sqrt(2.0 / math.pi), 0.044715     # PyTorch's approximate="tanh"


def gelu(z):
    return 0.5 * z * (1.0 + hyperbolic_tangent(GELU_K * (z + GELU_C * z * z * z)))


def hard_sigmoid(z):             # relu6(z + 3) / 6, PyTorch's form: exactly 0 and 1 at the kinks
    return np.minimum(np.maximum(z + 3.0, 0.0), 6.0) / 6.0


def sigmoid_derivative(z, a):
    return a * (1.0 - a)


def tanh_derivative(z, a):
    return 1.0 - a * a


def relu_derivative(z, a):
    # a = relu(z) >= 0, so sign(a) is the step 1[z > 0] (0 at z = 0, as PyTorch), in a's dtype.
    return np.sign(a)


def identity_derivative(z, a):
    return a * 0.0 + 1.0


def silu_derivative(z, a):
    s = 1.0 / (1.0 + exponential(-z))     # d/dz z s(z) = s + z s (1 - s) = s + a (1 - s)
    return s + a * (1.0 - s)


def exp_derivative(z, a):
    return a


def leaky_relu_derivative(z, a, negative_slope):
    # the slope >= 0, so a > 0 exactly when z > 0; at z = 0 the negative slope, as PyTorch
    low = a * 0.0 + negative_slope
    return low + (1.0 - low) * (a > 0.0)


def elu_derivative(z, a, alpha):
    # alpha > 0, so a > 0 exactly when z > 0; below, alpha e^z = a + alpha (alpha at z = 0)
    return (a > 0.0) + (a <= 0.0) * (a + alpha)


def softplus_derivative(z, a):
    return -np.expm1(-a)         # sigmoid(z) = 1 - e^-a, since e^-a = 1 / (1 + e^z)


def gelu_derivative(z, a):
    t = hyperbolic_tangent(GELU_K * (z + GELU_C * z * z * z))
    return 0.5 * (1.0 + t) + 0.5 * z * (1.0 - t * t) * GELU_K * (1.0 + 3.0 * GELU_C * z * z)


def hard_sigmoid_derivative(z, a):
    # 1/6 strictly between the kinks at z = -3 and 3 (0 < a < 1), 0 at and beyond them
    return (a * 0.0 + 1.0 / 6.0) * ((a > 0.0) & (a < 1.0))


def softmax(Z):
    """Row-wise softmax of a (m, n) array, shifted by the row maximum for stability."""
    E = exponential(Z - Z.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Parameter:
    """An activation's parameter: its name (a Network's ``activation_parameters`` key),
    its default, and what a value must satisfy (checked, and named in the error)."""
    name: str
    default: float
    valid: Callable
    requirement: str


@dataclass(frozen=True)
class Activation:
    """g and g'; ``needs_z``: whether g' reads z (the kernels then keep each such layer's
    pre-activations); ``hidden``: whether hidden layers may use it. softmax is row-wise
    and has no elementwise derivative: the losses' deltas handle it (see LOSSES).
    ``parameter``: a Parameter that g and g' take as their last argument, or None.
    ``own_loop``: the kernels give it loops of their own, so that they vectorise (see
    kernels.py, "the dispatch"); for activations that are a few cheap operations.
    ``kinks``: where g' jumps; there g' takes PyTorch's value (written at each derivative),
    and a finite difference across one measures nothing (tests/test_gradients.py).
    ``onnx``: g as ONNX operators, for fastbp.export: steps (op_type, inputs[, attributes]),
    each input "z" (the layer's pre-activations), "last" (the previous step's output),
    "step k" (step k's output, from 0), "parameter" (the activation's) or a number."""
    g: Callable
    derivative: Optional[Callable]
    onnx: tuple
    needs_z: bool = False
    hidden: bool = True
    parameter: Optional[Parameter] = None
    own_loop: bool = False
    kinks: Tuple[float, ...] = ()


# (onnxruntime has no float64 LeakyRelu, Elu, Softplus, Gelu or HardSigmoid, so those are
# written out in operators it has for both dtypes.)
ACTIVATIONS = {
    "sigmoid": Activation(sigmoid, sigmoid_derivative, (("Sigmoid", ("z",)),), own_loop=True),
    "tanh": Activation(tanh, tanh_derivative, (("Tanh", ("z",)),), own_loop=True),
    "relu": Activation(relu, relu_derivative, (("Relu", ("z",)),), own_loop=True, kinks=(0.0,)),
    "identity": Activation(identity, identity_derivative, (("Identity", ("z",)),), own_loop=True),
    "softmax": Activation(softmax, None, (("Softmax", ("z",), {"axis": 1}),), hidden=False),
    "silu": Activation(silu, silu_derivative, (("Sigmoid", ("z",)), ("Mul", ("z", "last"))), needs_z=True),
    "exp": Activation(exp, exp_derivative, (("Exp", ("z",)),), hidden=False),
    "leaky_relu": Activation(
        leaky_relu, leaky_relu_derivative,
        (("Relu", ("z",)), ("Min", ("z", 0.0)), ("Mul", ("last", "parameter")), ("Add", ("last", "step 0"))),
        parameter=Parameter("negative_slope", 0.01, lambda v: v >= 0.0, ">= 0"), own_loop=True, kinks=(0.0,)),
    "elu": Activation(
        elu, elu_derivative,
        (("Min", ("z", 0.0)), ("Exp", ("last",)), ("Sub", ("last", 1.0)), ("Mul", ("last", "parameter")),
         ("Relu", ("z",)), ("Add", ("last", "step 3"))),
        parameter=Parameter("alpha", 1.0, lambda v: v > 0.0, "> 0"), kinks=(0.0,)),    # (none at alpha = 1)
    "softplus": Activation(
        softplus, softplus_derivative,
        (("Relu", ("z",)), ("Abs", ("z",)), ("Neg", ("last",)), ("Exp", ("last",)), ("Add", ("last", 1.0)),
         ("Log", ("last",)), ("Add", ("last", "step 0")))),
    "gelu": Activation(
        gelu, gelu_derivative,
        (("Mul", ("z", "z")), ("Mul", ("last", "z")), ("Mul", ("last", GELU_C)), ("Add", ("last", "z")),
         ("Mul", ("last", GELU_K)), ("Tanh", ("last",)), ("Add", ("last", 1.0)), ("Mul", ("last", "z")),
         ("Mul", ("last", 0.5))), needs_z=True),
    "hard_sigmoid": Activation(
        hard_sigmoid, hard_sigmoid_derivative,
        (("Add", ("z", 3.0)), ("Max", ("last", 0.0)), ("Min", ("last", 6.0)), ("Div", ("last", 6.0))),
        kinks=(-3.0, 3.0)),
}
HIDDEN_ACTIVATIONS = tuple(name for name, a in ACTIVATIONS.items() if a.hidden)
OUTPUT_ACTIVATIONS = tuple(ACTIVATIONS)
ACTIVATION_CODES = {name: code for code, name in enumerate(ACTIVATIONS)}
NEEDS_Z = np.array([a.needs_z for a in ACTIVATIONS.values()])   # by code, for the kernels
PARAMETERS = {a.parameter.name: (name, a.parameter) for name, a in ACTIVATIONS.items() if a.parameter}


def activation_parameters(activations, given=None):
    """The parameter of each of these activation names: {parameter name: value}, the
    table's defaults updated by given (checked: a known name, of an activation that is
    among these, a finite value meeting its requirement). Values are Python floats."""
    given = {} if given is None else given
    if not isinstance(given, dict):
        raise ValueError("activation_parameters must be a dict {name: value}, got %r" % (given,))
    values = {}
    for name in dict.fromkeys(activations):
        p = ACTIVATIONS[name].parameter
        if p is not None:
            values[p.name] = p.default
    for key, value in given.items():
        if key not in PARAMETERS:
            raise ValueError("activation_parameters: unknown parameter %r; the activations' parameters are %s"
                             % (key, ", ".join("%r (%s)" % (k, n) for k, (n, _) in PARAMETERS.items())))
        owner, p = PARAMETERS[key]
        if key not in values:
            raise ValueError("activation_parameters: %r is %s's parameter, and no layer uses %s" % (key, owner, owner))
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError("activation_parameters: %r must be a number, got %r" % (key, value)) from None
        if not (math.isfinite(value) and p.valid(value)):
            raise ValueError("activation_parameters: %r must be finite and %s, got %r" % (key, p.requirement, value))
        values[key] = value
    return values


def parameter_of(name, parameters):
    """The value that activation `name` takes from these parameters, or None."""
    p = ACTIVATIONS[name].parameter
    return None if p is None else parameters.get(p.name, p.default)


def _parameter_argument(act, parameter):
    """What g and g' take after their arrays: nothing, or the parameter (its default if None)."""
    if act.parameter is None:
        return ()
    return (act.parameter.default if parameter is None else parameter,)


def activate(name, z, parameter=None):
    """g(z) of the activation `name` (with its parameter, if it has one)."""
    act = ACTIVATIONS[name]
    return act.g(z, *_parameter_argument(act, parameter))


def derivative(name, z, a, parameter=None):
    """g'(z) of the activation `name`, from z and a = g(z) (most read only a)."""
    act = ACTIVATIONS[name]
    return act.derivative(z, a, *_parameter_argument(act, parameter))


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



# ---------------------------------------------------------------- weight penalties

@dataclass(frozen=True)
class Penalty:
    """A weight penalty, strength * sum_w f(w) added to the loss: the (sub)gradient f'(w)
    of one weight, written with ufuncs (the kernels compile it), which every rule adds to
    each weight's gradient times the penalty's strength (a run's setting of that name)."""
    gradient: Callable


def l2_gradient(w):              # f(w) = w^2 / 2
    return w


def l1_gradient(w):              # f(w) = |w|; a subgradient, 0 at w = 0
    return np.sign(w)


PENALTIES = {"l2": Penalty(l2_gradient), "l1": Penalty(l1_gradient)}    # (biases are never penalised)


def penalty_gradient(W, strengths):
    """sum over PENALTIES of strength * f'(W), for {name: strength} (zeros skipped)."""
    total = 0.0
    for name, penalty in PENALTIES.items():
        if strengths.get(name):
            total = total + strengths[name] * penalty.gradient(W)
    return total


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
