"""fastbp.Network: the network definition, its parameters and its public API, a thin layer
that validates its input and hands every computation to a backend (backends.py: the NumPy
reference or the Numba kernels).

Using a Network
===============

- `net.weights`, `net.biases`: lists of per-layer arrays, shapes `(n_out, n_in)` and
  `(n_out,)` (`biases` is `None` with `bias=False`). They are views into the buffers the
  kernels train: write them in place, or assign `net.weights[l] = array` (shape-checked,
  copied in).
- `net.predict(X)`: `(m, n_out)`, or `(n_out,)` for one sample `(n_in,)`.
- `net.loss(X, Y)`: mean over samples of the per-sample loss (no L2 term).
- `net.gradients(X, Y)`: `(dW list, db list or None)`, the gradient of `net.loss(X, Y)`;
  always the true gradient, whatever `propagate` says.
- `net.deltas(X, Y)`: each layer's error terms, by the network's `propagate` rule.
- `net.train(X, Y, epochs=1, lr=None, batch_size=1, shuffle=True, l2=0.0, l1=0.0, max_norm=None,
  optimizer="sgd",
  schedule=None, clip=None, validation=None, validation_fraction=None, n_iter_no_change=None,
  tol=1e-4, target_loss=None, diagnostics=True, checkpoint=None, checkpoint_every=1,
  backend=None, progress=None, callback=None)` returns the per-epoch history (see
  help(fastbp.training)). `batch_size=1` is per-sample SGD (seeds 000, 002, 004),
  `1 < batch_size < m` mini-batch SGD (seed 001), `batch_size=None` (or >= m) full-batch
  gradient descent (seed 003); a step uses the mean gradient of its batch.
  `backend="numpy"` runs the reference.
- The backend is chosen once, with the network: `Network(..., backend="numpy")` runs
  everything on the reference (`net.backend` says which, and can be set); a call's own
  `backend=` (predict, loss, gradients, deltas, jacobian, train) overrides it for that call.
- The settings of `train` (all but `validation`, `progress` and `callback`) are the fields
  of one `fastbp.RunConfig`, checked when it is made; the estimators, the command line and
  `resume` build the same object, and a checkpoint records it. What a run carries from epoch
  to epoch (optimizer, schedule, counters, best weights, history) is one `run.RunState`.
  CONTRIBUTING.md says where each concept lives and how to add an activation, a loss or an
  update rule (one table entry and one compiled function each).
- `net.train_steps(X, Y, steps, lr, batch_size)`: steps on batches drawn at random without
  replacement (seed 001's `random.sample`), drawn inside the compiled loop (a partial
  Fisher-Yates shuffle, `kernels.draw_batches`) in calls of about a million samples' steps,
  so any number of steps costs little memory and Ctrl-C works between calls.
- `progress`: `True` shows a tqdm bar, `False` or `None` nothing, and a function is called
  as `progress(n_samples, running_mean_loss)` after each slice of about 1% of an epoch.
- Every argument of `train` is checked before anything changes: a call that raises
  `ValueError` or `TypeError` leaves the network, its random generator and a given
  `Optimizer` (its `lr`, its state) as they were. So does assigning `net.weights = [...]`
  with one bad layer.
- `net.save(path)`, `fastbp.load(path)`: see `help(fastbp.io)`.

Choices worth knowing
=====================

- **Targets.** `Y` is `(m, n_out)`; a 1-D integer `Y` is taken as class labels and one-hot
  encoded (labels outside `0..n_out-1` are an error). `cross_entropy` needs target rows that
  sum to 1, `binary_cross_entropy` targets in [0, 1].
- **L2.** `l2` penalises weights, not biases: each step minimises
  `mean(E over the batch) + l2/2 * sum(W**2)`, whatever the batch size: the step's gradient
  gains `l2 * W` (before the optimizer's rule; with plain SGD every weight shrinks by
  `(1 - lr*l2)` per step). The estimators' `alpha` is scikit-learn's: `l2 = alpha / batch_size`.
- **L1 and max-norm.** `l1` adds `l1 * sum(|W|)` (weights only): the gradient gains
  `l1 * sign(W)`, a subgradient that is 0 at 0 (a weight is not clamped at zero; it can
  cross it). `max_norm=c`, after every step, scales each hidden unit's incoming weights (a
  row of W, without the bias; the output layer is left alone) down to norm `c` where they
  are longer (Srivastava et al., 2014). Both work in every mode, rule, dtype and backend,
  on Dask, and in checkpoints; with either, per-sample SGD runs on the mini-batch kernel
  at batch size 1 (the per-sample kernel's blocked steps hold only for L2's linear
  shrink), the same steps, slower. The penalties are one table (`functions.PENALTIES`):
  a new one is its gradient function and a table entry. The estimators take neither
  (scikit-learn has no such parameter).
- **Dropout and input noise.** `dropout=p` (or one rate per hidden layer) drops each
  hidden unit's output with probability p while training and divides the kept ones by
  1 - p (inverted dropout: `predict` is unchanged); `input_noise=s` adds N(0, s^2) noise to
  every input of every training row. Masks and noise are drawn inside the compiled
  mini-batch kernel from the network's own generator (numpy's PCG64, which Numba runs), a
  batch at a time in a fixed order, and the NumPy reference draws the same numbers, so the
  two agree at 1e-10 (tested), a seed reproduces a run bit for bit whatever the thread
  count (tested), and a checkpoint, which saves the generator, resumes the same masks
  (tested). Dropout needs `propagate="delta"`; input noise needs dense X; neither runs on
  Dask yet (clear errors). The estimators take `dropout=` (stochastic solvers). The draws
  cost what the generator costs: two 32-bit uniforms from each 64-bit step of PCG64 for a
  dropout mask, one normal an input for input noise, so on a narrow network input noise is
  dear (asv_benchmarks/README.md, "Figures behind the documented choices").
- **The reported loss.** `history["loss"]` is each epoch's mean per-sample loss, each
  sample's taken before its own step (the running loss, as scikit-learn's `loss_curve_`):
  it costs no extra pass. Call `net.loss(X, Y)` for the loss at the end.
- **Bad input** is a `ValueError`/`TypeError` naming the problem (wrong shape, NaN or inf
  and where, unknown names, labels out of range), raised before anything changes. NaN and
  inf are found by one product of X with a vector of ones (a NaN or an inf in a row makes
  its sum NaN or inf; only then, or when finite values overflow, is each element looked
  at), faster than `np.isfinite(X).all()` (`fastbp.checks.check_finite`). It goes
  through the BLAS of the backend that will use X: a product through the other copy of
  OpenBLAS left its threads spinning on the cores the next product needed.
- **Reproducibility.** The same seed gives the same run, bit for bit, from the same
  compiled kernels. A kernel compiled in the running process and the same kernel loaded
  from Numba's on-disk cache can differ in the last bit of some sums (measured: 5e-16 in
  the weights after 600 samples), and per-sample SGD amplifies such differences over an
  epoch: seed 000's network scores 0.8295 or 0.8318 on the Fashion-MNIST test set after
  one epoch. Both are the same algorithm to rounding; the tests compare to 1e-10. It is the
  per-sample kernel (`sgd_epoch`, compiled with `parallel`) that does this: the same 6
  epochs of per-sample SGD on 600 samples, run once compiling into an empty
  `NUMBA_CACHE_DIR` and once loading from it, end 9.4e-10 apart; the same with Adam at
  batches of 16 ends bit for bit equal. So the distributed tests compare runs made in one
  worker process, from the same compiled code. `net.warm_up()`, which `fastbp demo` and
  `fastbp train` call before training, therefore never runs code compiled in the running
  process: kernels missing from the cache are compiled by a child Python process, which
  writes them there, and then loaded (where the cache cannot be written, they compile in
  the process). The demo's and `train`'s first run, with an empty cache, train exactly
  what every later run does (tested). A first compile costs the child's start more this
  way.
- **Ctrl-C.** A KeyboardInterrupt during an epoch undoes that epoch and is raised on: the
  network, its random generator and the optimizer are as after the last finished epoch,
  and the exception carries `.history` (the finished epochs) and `.state`, so the run can
  be checkpointed and resumed to the uninterrupted run's end (tested). The estimators do
  as scikit-learn's: `fit` warns "Training interrupted by user." and keeps the model
  trained so far (with `early_stopping`, the best validation epoch's weights).
- **Divergence.** If an epoch's loss or the weights stop being finite, the epoch is undone
  and `fastbp.TrainingDiverged` is raised ("training diverged in epoch 3 (mean loss nan);
  the network keeps the weights from before it. Try a smaller lr, or clip."): the network
  keeps the weights of the last finished epoch, the optimizer its state, and the exception
  carries the history so far. The last checkpoint, if any, is untouched.
"""
from __future__ import annotations  # (help() shows the hints as written)

import numbers
import os
from typing import Callable, Optional, Sequence, Union

import numpy as np
from numpy.typing import ArrayLike

from . import backends, functions, info, io, kernels, run, training
from .checks import check_array, check_sample_weight, check_targets, choice, is_sparse, keywords, number, positive_int
from .functions import ACTIVATION_CODES, HIDDEN_ACTIVATIONS, LOSSES, OUTPUT_ACTIVATIONS, mean_loss
from .optimizers import RULES, Optimizer
from .run import BACKENDS, RUN_SETTINGS, RunConfig
from .training import TrainingDiverged  # noqa: F401  (TrainingDiverged: raised by train)
from .version import __version__

PROPAGATE = ("delta", "error")
STEP_CHUNK = 1 << 20          # train_steps: samples per compiled call
DTYPES = ("float64", "float32")


# One layer's initial weights (n_out, n_in) and, if it has biases, their values (None:
# zeros), drawn from rng.

def _normal(rng, n_in, n_out, bias):            # seed 000: N(0, n_in^-1/2)
    return rng.normal(0.0, n_in ** -0.5, (n_out, n_in)), None


def _glorot(rng, n_in, n_out, bias):            # Glorot & Bengio (2010), uniform
    limit = np.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-limit, limit, (n_out, n_in)), None


def _he(rng, n_in, n_out, bias):                # He et al. (2015), normal, for ReLU layers
    return rng.normal(0.0, np.sqrt(2.0 / n_in), (n_out, n_in)), None


def _standard_normal(rng, n_in, n_out, bias):   # seed 001: N(0, 1), its biases too
    W = rng.normal(0.0, 1.0, (n_out, n_in))
    return W, rng.normal(0.0, 1.0, n_out) if bias else None


def _nguyen_widrow(rng, n_in, n_out, bias):     # Nguyen & Widrow (1990), MATLAB's initnw: inputs in [-1, 1]
    beta = 0.7 * n_out ** (1.0 / n_in)
    W = rng.uniform(-1.0, 1.0, (n_out, n_in))
    W *= beta / np.sqrt(np.sum(W * W, axis=1, keepdims=True))   # each unit's weights: norm beta
    b = beta * np.linspace(-1.0, 1.0, n_out) * np.sign(W[:, 0]) if n_out > 1 else np.zeros(1)
    return W, b if bias else None                               # biases spread evenly over [-beta, beta]


def _uniform(rng, n_in, n_out, bias):           # initnw's layers without a bounded active range: U(-1, 1)
    W = rng.uniform(-1.0, 1.0, (n_out, n_in))
    return W, rng.uniform(-1.0, 1.0, n_out) if bias else None


# name -> (a hidden layer's draw, the output layer's)
INITIALISERS = {
    "normal": (_normal, _normal),
    "glorot": (_glorot, _glorot),
    "xavier": (_glorot, _glorot),
    "he": (_he, _he),
    "standard_normal": (_standard_normal, _standard_normal),
    "nguyen_widrow": (_nguyen_widrow, _uniform),
}


def check_definition(sizes, activation, output, loss, bias, init, propagate, dtype, activation_parameters=None):
    """A network's definition, every argument checked as Network checks it: a dict of
    sizes (ints), hidden (one activation per hidden layer), bias (bool) and dtype
    (np.dtype); io checks a file's description with it before allocating anything."""
    if isinstance(sizes, (str, bytes, dict)) or not hasattr(sizes, "__len__") or len(sizes) < 2:
        raise ValueError("sizes must be a list [n_in, ..., n_out] of at least two layer "
                         "sizes, got %r" % (sizes,))
    sizes = [positive_int("every layer size", n) for n in sizes]
    n_hidden = len(sizes) - 2
    hidden = [activation] * n_hidden if isinstance(activation, str) else activation
    if not isinstance(hidden, (list, tuple)):
        raise ValueError("activation must be a name or a list of names, got %r" % (activation,))
    if len(hidden) != n_hidden:
        raise ValueError("activation lists %d names but sizes %s has %d hidden layers"
                         % (len(hidden), sizes, n_hidden))
    for name in hidden:
        choice("activation", name, HIDDEN_ACTIVATIONS)
    choice("output", output, OUTPUT_ACTIVATIONS)
    choice("loss", loss, tuple(LOSSES))
    pairs = LOSSES[loss].outputs
    if pairs is not None and output not in pairs:
        raise ValueError("loss %r needs a %s output, not %r" % (loss, " or ".join(pairs), output))
    choice("init", init, tuple(INITIALISERS))
    if not isinstance(bias, (bool, np.bool_)) and bias not in (0, 1):
        raise ValueError("bias must be True or False, got %r" % (bias,))
    return {"sizes": sizes, "hidden": list(hidden), "bias": bool(bias),
            "activation_parameters": functions.activation_parameters(list(hidden) + [output], activation_parameters),
            "propagate": choice("propagate", propagate, PROPAGATE),
            "dtype": np.dtype(choice("dtype", _dtype_name(dtype), DTYPES))}


class _Layers(list):
    """Per-layer views into the network's flat parameter buffer. Assigning an item
    copies into its view (shape and values checked), so the kernels see the change."""

    def __setitem__(self, index, value):
        if not isinstance(index, numbers.Integral):
            raise TypeError("assign one layer at a time: net.weights[l] = array")
        list.__getitem__(self, index)[...] = self.checked(index, value)

    def checked(self, index, value):
        """value as layer index's new values, checked (shape, finite); nothing assigned."""
        view = list.__getitem__(self, index)
        value = np.asarray(value)
        if value.shape != view.shape:
            raise ValueError("layer %d expects shape %s, got %s" % (index, view.shape, value.shape))
        if value.dtype.kind not in "biuf" or not np.all(np.isfinite(value)):
            raise ValueError("layer %d: the new values contain NaN or inf, or are not numbers" % index)
        return value


class Network:
    """A fully-connected network trained by error backpropagation.

    Parameters
    ----------
    sizes : list of int
        [n_in, h1, ..., n_out]; any depth (at least one layer).
    activation : str or list of str
        Hidden activation, one name for every hidden layer or one per hidden layer:
        'sigmoid', 'tanh', 'relu', 'identity', 'silu' (functions.ACTIVATIONS).
    output : str
        Output activation: any of those, 'softmax' or 'exp'.
    loss : str
        'mse' (per sample E = 1/2 sum_k (t_k - o_k)^2), 'binary_cross_entropy' (with a
        sigmoid output), 'cross_entropy' (with a softmax output) or 'poisson' (half the
        Poisson deviance, with an exp output; targets >= 0) (functions.LOSSES).
    bias : bool
        Whether layers have biases (seed 000 has none).
    init : str
        'normal' (N(0, n_in^-1/2), seed 000), 'glorot'/'xavier' (uniform),
        'he' (normal, sqrt(2/n_in)), 'standard_normal' (N(0, 1), biases too: seed 001),
        'nguyen_widrow' (MATLAB's initnw, FANN's init_weights, for inputs scaled to
        [-1, 1]: each hidden unit's incoming weights uniform, scaled to the norm
        beta = 0.7 H^(1/n) for H units of n inputs, and its biases spread evenly over
        [-beta, beta]; the output layer's weights and biases U(-1, 1)). Other
        initialisers start biases at zero.
    propagate : str
        'delta' sends each layer's error term back (W^T delta: the true gradient);
        'error' sends the raw error back (W^T e), as seed 000's book network does.
    seed : int, numpy.random.Generator or None
        Drives the initial weights and the sample order of training.
    dtype : str
        'float64' or 'float32'; the kernels compute in it.
    activation_parameters : dict or None
        {parameter name: value} for the activations that take one (leaky ReLU's
        'negative_slope', ELU's 'alpha'); the table's defaults otherwise.
    backend : str
        'numba' (the compiled kernels) or 'numpy' (the NumPy reference): where every
        computation of the network runs, chosen once here (``net.backend`` changes it);
        a method's or ``train``'s ``backend=`` overrides it for that call. Not saved with
        the network: a loaded one uses 'numba'.
    """

    def __init__(self, sizes: Sequence[int], activation: Union[str, Sequence[str]] = "sigmoid",
                 output: str = "sigmoid", loss: str = "mse", bias: bool = True, init: str = "normal",
                 propagate: str = "delta", seed: Union[int, np.random.Generator, None] = None,
                 dtype: Union[str, np.dtype, type] = "float64",
                 activation_parameters: Optional[dict] = None, backend: str = "numba") -> None:
        d = check_definition(sizes, activation, output, loss, bias, init, propagate, dtype, activation_parameters)
        self.backend = backend
        self.sizes, self.propagate, self.dtype = d["sizes"], d["propagate"], d["dtype"]
        self.activations = d["hidden"] + [output]
        self.activation_parameters = d["activation_parameters"]
        # each layer's activation as the reference takes it: a name, or (name, parameter)
        self._reference_activations = [
            name if functions.ACTIVATIONS[name].parameter is None
            else (name, functions.parameter_of(name, self.activation_parameters)) for name in self.activations]
        self.output, self.loss_name, self.bias, self.init = output, loss, d["bias"], init
        self._rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

        # one flat buffer per kind of parameter (the kernels' layout, see kernels.py)
        fan = [n_in * n_out for n_in, n_out in zip(self.sizes, self.sizes[1:])]
        n_params = sum(fan) + sum(self.sizes[1:])
        if n_params >= 2 ** 62 // self.dtype.itemsize:
            raise ValueError("sizes %s: %d parameters; more than any machine's memory holds"
                             % (self.sizes, n_params))
        self._sizes = np.array(self.sizes, dtype=np.int64)
        self._w_off = np.concatenate([[0], np.cumsum(fan)]).astype(np.int64)
        self._u_off = np.concatenate([[0], np.cumsum(self.sizes[1:])]).astype(np.int64)
        # the kernels' (kernels.py, "the dispatch"): codes, parameters, and no dropout or noise
        self._acts = (np.array([ACTIVATION_CODES[a] for a in self.activations], dtype=np.int64),
                      np.array([functions.parameter_of(a, self.activation_parameters) or 0.0
                                for a in self.activations], dtype=self.dtype),
                      np.zeros(len(self.activations), self.dtype), np.empty((0, 0), self.dtype),
                      np.empty((0, 0), self.dtype))
        try:
            self._w = np.empty(self._w_off[-1], self.dtype)
            self._b = np.zeros(self._u_off[-1], self.dtype)
        except MemoryError:
            raise ValueError("sizes %s: its %d parameters (%.3g GiB in %s) do not fit in memory"
                             % (self.sizes, n_params, n_params * self.dtype.itemsize / 2 ** 30,
                                self.dtype)) from None
        hidden_layer, output_layer = INITIALISERS[init]
        for l, (n_in, n_out) in enumerate(zip(self.sizes, self.sizes[1:])):
            W, b = (output_layer if l == self.n_layers - 1 else hidden_layer)(self._rng, n_in, n_out, self.bias)
            self._layer_view(self._w, "w", l)[...] = W
            if b is not None:
                self._layer_view(self._b, "b", l)[...] = b

    # ------------------------------------------------------------ the backend
    _backend_choice = "numba"       # (what a network pickled before Network(backend=) runs on)

    @property
    def backend(self):
        """The backend every computation of this network runs on, unless a call names
        another: 'numba' (the kernels) or 'numpy' (the reference) (backends.BACKENDS)."""
        return self._backend_choice

    @backend.setter
    def backend(self, name):
        self._backend_choice = choice("backend", name, BACKENDS)

    def _backend_name(self, backend):
        """The backend a call names, or the network's (None), checked."""
        return self._backend_choice if backend is None else choice("backend", backend, BACKENDS)

    def _backend(self, backend):
        return backends.get(self._backend_name(backend))

    # ------------------------------------------------------------ parameters
    def _layer_view(self, flat, kind, l):
        """Layer l's part of an array laid out like the weights (kind 'w') or biases ('b')."""
        if kind == "w":
            return flat[self._w_off[l]:self._w_off[l + 1]].reshape(self.sizes[l + 1], self.sizes[l])
        return flat[self._u_off[l]:self._u_off[l + 1]]

    @property
    def n_layers(self):
        return len(self.sizes) - 1

    @property
    def weights(self):
        """Per-layer weight matrices, shape (n_out, n_in): views, writable in place."""
        return _Layers(self._layer_view(self._w, "w", l) for l in range(self.n_layers))

    @weights.setter
    def weights(self, values):
        self._set_all(self.weights, values, "weights")

    @property
    def biases(self):
        """Per-layer bias vectors, shape (n_out,), writable in place; None without biases."""
        return _Layers(self._layer_view(self._b, "b", l) for l in range(self.n_layers)) if self.bias else None

    @biases.setter
    def biases(self, values):
        if not self.bias:
            raise ValueError("this network was built with bias=False")
        self._set_all(self.biases, values, "biases")

    def _set_all(self, layers, values, what):
        values = list(values)
        if len(values) != len(layers):
            raise ValueError("%s needs %d layers, got %d" % (what, len(layers), len(values)))
        values = [layers.checked(l, value) for l, value in enumerate(values)]   # all, first
        for l, value in enumerate(values):
            layers[l] = value

    def _params(self):
        """(weights, biases) as the reference takes them."""
        return list(self.weights), (list(self.biases) if self.bias else None)

    def _layout(self):
        return self._w, self._b, self._sizes, self._w_off, self._u_off, self._acts

    # ------------------------------------------------------------ what training uses
    @property
    def rng(self):
        """The network's random generator: initial weights, sample orders, validation splits."""
        return self._rng

    @property
    def n_parameters(self):
        """(weights, biases): how many of each (the flat buffers' sizes; biases counted
        even with bias=False, where they stay 0)."""
        return self._w.size, self._b.size

    @property
    def n_trainable(self):
        """How many parameters train: the weights, and the biases if the network has them
        (parameter_vector()'s length, P)."""
        return self._w.size + (self._b.size if self.bias else 0)

    def snapshot(self):
        """A copy of every parameter, for restore."""
        return self._w.copy(), self._b.copy()

    def parameter_vector(self):
        """Every trainable parameter as one float64 vector: each W[l] by rows, then each
        b[l] (if the network has biases): the order of jacobian's columns."""
        return np.concatenate([self._w] + ([self._b] if self.bias else [])).astype(np.float64)

    def set_parameter_vector(self, theta):
        """Set every trainable parameter from a parameter_vector()-shaped vector."""
        n_w = self._w.size
        self._w[...] = theta[:n_w]
        if self.bias:
            self._b[...] = theta[n_w:]

    def restore(self, snapshot):
        """Set every parameter from a snapshot (or a checkpoint's best weights)."""
        w, b = snapshot
        self._w[...], self._b[...] = w, b

    def is_finite(self):
        """Whether every parameter is finite."""
        return bool(np.isfinite(self._w).all() and np.isfinite(self._b).all())

    def uses_per_sample_kernel(self, batch_size, optimizer, clip, backend, l1=0.0, max_norm=None, dropout=None,
                               input_noise=0.0):
        """Whether the backend trains these settings with a per-sample kernel (only
        Numba's has one: backends.NumbaBackend.per_sample)."""
        return self._backend(backend).per_sample(batch_size, optimizer, clip, l1, max_norm, dropout, input_noise)

    def dropout_rates(self, dropout):
        """dropout (None, a rate, or one rate per hidden layer) as one rate per hidden
        layer, each in [0, 1) and rounded to the network's dtype (as the kernels hold it),
        or a clear error."""
        n_hidden = self.n_layers - 1
        if dropout is None:
            return [0.0] * n_hidden
        rates = [dropout] * n_hidden if isinstance(dropout, numbers.Real) else list(dropout)
        if len(rates) != n_hidden:
            raise ValueError("dropout gives %d rates, but the network %s has %d hidden layers"
                             % (len(rates), self.sizes, n_hidden))
        rates = [number("dropout", r, 0.0, 1.0) for r in rates]
        if any(rates) and self.propagate == "error":
            raise ValueError("dropout needs propagate='delta' (the error rule sends back no derivative to mask)")
        return [float(self.dtype.type(r)) for r in rates]

    def train_epoch(self, X, T, order, batch_size, lr, l2, optimizer, clip=None, backend=None, threads=1,
                    sample_weight=None, l1=0.0, max_norm=None, dropout=None, input_noise=0.0):
        """Train on the samples X[order] (X, T checked), in batches of batch_size, with the
        optimizer (bound to this network) at learning rate lr; returns their summed loss,
        each taken before its step (times its weight: sample_weight, checked, over X's
        rows, as reference.train_epoch weighs). A method with a step of its own
        (methods.py) takes the whole epoch; every other rule runs the backend's
        train_epoch (backends.py). threads is the kernels' thread count (threads.py: it
        never changes the result). dropout: a rate per hidden layer (dropout_rates),
        input_noise a standard deviation; both drawn from the network's generator."""
        if optimizer.entry.step is not None:                  # a method with its own step (methods.py)
            with np.errstate(over="ignore", invalid="ignore"):   # (divergence is checked after)
                return optimizer.entry.step(self, X, T, sample_weight, optimizer, l2, backend)
        rates = self.dropout_rates(dropout)
        if input_noise and is_sparse(X):
            raise ValueError("input_noise needs dense X (noise would fill a sparse matrix)")
        if sample_weight is not None and batch_size == 1:
            order = order[sample_weight[order] != 0]          # weight 0: no step at all
        return self._backend(backend).train_epoch(self, X, T, order, batch_size, lr, l2, optimizer, clip, threads,
                                                  sample_weight, l1, max_norm, rates, input_noise)

    def __repr__(self):
        parameters = ", activation_parameters=%r" % self.activation_parameters if self.activation_parameters else ""
        parameters += ", backend=%r" % self.backend if self.backend != "numba" else ""
        return ("Network(%s, activation=%r, output=%r, loss=%r, bias=%r, propagate=%r, dtype=%r%s)"
                % (self.sizes, self.activations[:-1], self.output, self.loss_name, self.bias,
                   self.propagate, str(self.dtype), parameters))

    # ------------------------------------------------------------ input checks
    def check_inputs(self, X, name="X", backend=None, finite=True):
        """X as a C-contiguous (m, n_in) array in the network's dtype, or a clear error
        (shape, dtype, NaN or inf). A scipy sparse matrix or array stays sparse: CSR in
        the network's dtype, its structure checked (the kernels index by it). backend:
        the one that will use X (None: the network's), whose BLAS tests it for NaN and inf
        (checks.check_array); finite=False leaves that test of a dense X to
        ``outputs(X, name=name)``."""
        return check_array(X, name, self.sizes[0], self.dtype, self._backend(backend).blas, finite)

    def check_targets(self, Y, m, name="Y"):
        """Targets as (m, n_out) in the network's dtype, checked against its loss
        (checks.check_targets); 1-D integer labels are one-hot encoded."""
        return check_targets(Y, m, self.sizes[-1], self.dtype, self.loss_name, name)

    def check_sample_weight(self, sample_weight, m, name="sample_weight"):
        """Sample weights as a (m,) array in the network's dtype, or None (check_sample_weight)."""
        return check_sample_weight(sample_weight, m, self.dtype, name)

    # ------------------------------------------------------------ inference
    def forward(self, X, backend=None):
        """Every layer's outputs [A1, ..., AL], each (m, n_l), for X already checked
        (check_inputs)."""
        return self._backend(backend).forward(self, X)

    def outputs(self, X, backend=None, name=None):
        """The last layer's outputs, (m, n_out), for X already checked (check_inputs). With
        a name, X was checked with finite=False: its values are tested for NaN and inf
        here, and an error calls it by that name (the compiled forward pass tests them at
        no cost)."""
        return self._backend(backend).outputs(self, X, name)

    def predict(self, X: ArrayLike, backend: Optional[str] = None) -> np.ndarray:
        """The network's outputs.

        Parameters
        ----------
        X : array-like or scipy sparse matrix, shape (m, n_in) or (n_in,)
            The inputs, or one sample's.
        backend : str or None
            'numba' or 'numpy' for this call; None: the network's (``net.backend``).

        Returns
        -------
        ndarray, shape (m, n_out) or (n_out,)
            In the network's dtype.

        Raises
        ------
        ValueError, TypeError
            For a wrong shape, NaN or inf, or values that are not numbers."""
        one = np.ndim(X) == 1
        chosen = self._backend(backend)
        O = chosen.outputs(self, self.check_inputs(np.atleast_2d(X) if one else X, backend=backend, finite=False),
                           "X")
        return O[0] if one else O

    def loss(self, X: ArrayLike, Y: ArrayLike, backend: Optional[str] = None,
             sample_weight: Optional[ArrayLike] = None) -> float:
        """The mean loss over the samples (no L2 term).

        Parameters
        ----------
        X : array-like or scipy sparse matrix, shape (m, n_in)
        Y : array-like, shape (m, n_out), or (m,) integer labels (one-hot encoded)
        backend : str or None
            'numba' or 'numpy' for this call; None: the network's (``net.backend``).
        sample_weight : array-like of shape (m,) or None
            The weighted mean sum_i s_i E_i / sum_i s_i instead.

        Returns
        -------
        float

        Raises
        ------
        ValueError, TypeError
            For a wrong shape, NaN or inf, labels out of range, or targets the loss does
            not take."""
        X = self.check_inputs(X, backend=backend)
        T = self.check_targets(Y, X.shape[0])
        S = self.check_sample_weight(sample_weight, X.shape[0])
        return mean_loss(self.loss_name, self.outputs(X, backend), T, S)

    def gradients(self, X: ArrayLike, Y: ArrayLike, backend: Optional[str] = None,
                  sample_weight: Optional[ArrayLike] = None):
        """The gradient of ``net.loss(X, Y, sample_weight=...)``: always the true
        gradient (delta propagation), whatever ``propagate``.

        Parameters
        ----------
        X, Y, backend, sample_weight
            As loss's.

        Returns
        -------
        (list of ndarray, list of ndarray or None)
            dW and db, shaped like the weights and biases (db None without biases).

        Raises
        ------
        ValueError, TypeError
            As loss's."""
        X = self.check_inputs(X, backend=backend)
        T = self.check_targets(Y, X.shape[0])
        S = self.check_sample_weight(sample_weight, X.shape[0])
        return self.pass_gradients(X, *self.backprop(X, T, "delta", backend, S), backend,
                                   None if S is None else float(S.sum()))

    def jacobian(self, X: ArrayLike, Y: Optional[ArrayLike] = None, backend: Optional[str] = None) -> np.ndarray:
        """The Jacobian of the outputs for the samples X (or, given targets Y, of the
        errors e = t - o: its negative, as Levenberg-Marquardt takes it). It holds m n_out
        P numbers: for large sets, methods.jacobian_products accumulates J^T J without
        holding J.

        Parameters
        ----------
        X : array-like or scipy sparse matrix, shape (m, n_in)
        Y : array-like or None
            Targets, as loss takes them.
        backend : str or None
            'numba' or 'numpy' for this call; None: the network's (``net.backend``).

        Returns
        -------
        ndarray, shape (m, n_out, P)
            J[s, k, p] = d o_k(x_s) / d theta_p, theta = parameter_vector() (each W[l] by
            rows, then each b[l]), in the network's dtype.

        Raises
        ------
        ValueError, TypeError
            As loss's."""
        X = self.check_inputs(X, backend=backend)
        if Y is not None:
            self.check_targets(Y, X.shape[0])
        if is_sparse(X):
            X = X.toarray()
        J = np.concatenate([block.copy() for block, _ in self.jacobian_blocks(X, backend)]).reshape(
            X.shape[0], self.sizes[-1], -1)
        return -J if Y is not None else J

    def jacobian_blocks(self, X, backend=None, block=None):
        """Yield (J rows, outputs) for blocks of X's rows: J's row s * n_out + k is
        d o_k / d theta for the block's sample s, in the network's dtype."""
        block = block or max(1, min(X.shape[0], (1 << 22) // (self.sizes[-1] * self.n_trainable)))  # 4M numbers
        return self._backend(backend).jacobian_blocks(self, X, block)

    def loss_gradient(self, X, T, S, backend=None):
        """The gradient of the (weighted) mean loss at the checked (X, T), as one float64
        vector in parameter_vector()'s order."""
        dW, db = self.pass_gradients(X, *self.backprop(X, T, "delta", backend, S), backend,
                                     None if S is None else float(S.sum()))
        return np.concatenate([g.ravel() for g in dW] + ([g.ravel() for g in db] if db is not None else [])).astype(
            np.float64)

    def deltas(self, X: ArrayLike, Y: ArrayLike, backend: Optional[str] = None) -> list:
        """Each layer's error terms dE/dz for the samples X, by this network's
        ``propagate`` rule. Their mean absolute size per layer shows vanishing gradients
        (seed 001).

        Parameters
        ----------
        X, Y, backend
            As loss's.

        Returns
        -------
        list of ndarray
            One (m, n_l) array per layer, input side first.

        Raises
        ------
        ValueError, TypeError
            As loss's."""
        X = self.check_inputs(X, backend=backend)
        T = self.check_targets(Y, X.shape[0])
        return self.backprop(X, T, self.propagate, backend)[1]

    def backprop(self, X, T, propagate, backend=None, sample_weight=None):
        """The forward pass and the error terms for (X, T) already checked (check_inputs,
        check_targets): (A, D), lists of per-layer (m, n_l) arrays, A without the input;
        propagate: 'delta' (the true gradient's) or 'error' (seed 000's). With
        sample_weight (checked), each row's error terms are times its weight."""
        return self._backend(backend).backprop(self, X, T, propagate, sample_weight)

    def pass_gradients(self, X, A, D, backend=None, total=None):
        """(dW list, db list or None): the mean gradient from a pass (A, D) of backprop with
        delta propagation (the sum over total, if given: a weighted pass's total weight)."""
        return self._backend(backend).gradients(self, X, A, D, total)

    def warm_up(self, batch_size: Optional[int] = 1, backend: Optional[str] = None, optimizer: str = "sgd",
                sparse: bool = False, **settings) -> bool:
        """Compile (or load from Numba's on-disk cache) the kernels this network's training
        and its inference use, on a throwaway copy: this network, its weights and its
        random state are unchanged. Call it before timing anything. `fastbp warm-up` does
        this for every mode (fastbp.warmup).

        Parameters
        ----------
        batch_size : int or None
            The training's batch size (None: the full batch).
        backend : str or None
            The backend whose kernels to warm; None: the network's.
        optimizer : str
            A RULES name; it matters for the full-batch rules (batch_size is then theirs):
            'lm' and 'br' call the Jacobian kernel.
        sparse : bool
            For training on scipy sparse (CSR) rows, which have kernels of their own.
        **settings
            The training's settings of KERNEL_SETTINGS (clip, l1, max_norm, dropout,
            input_noise), as train() takes them: they choose its kernels (any of them set
            but l1 takes the full build, and at batch size 1 each takes the mini-batch
            kernel instead of per-sample SGD's). The others change no kernel.

        Returns
        -------
        bool
            Whether anything had to be compiled (False: it all came from the cache, or the
            backend compiles nothing).

        Kernels that are not in the cache yet are compiled in a child process, which
        writes them to the cache, and then loaded from there: a kernel compiled in the
        running process can round differently in the last bit from the same kernel loaded
        from the cache, and so every run, the first included, trains with the same code.
        Where the cache cannot be written, or the child fails, they compile here."""
        if not self._backend(backend).compiles:       # (the reference compiles nothing)
            return False
        definition = {"sizes": self.sizes, "activation": self.activations[:-1], "output": self.output,
                      "loss": self.loss_name, "bias": self.bias, "propagate": self.propagate,
                      "dtype": str(self.dtype), "activation_parameters": self.activation_parameters}
        choice("optimizer", optimizer, tuple(RULES))
        keywords("warm_up()", settings, KERNEL_SETTINGS, ("batch_size", "backend", "optimizer", "sparse"))
        try:
            with kernels.refusing_compiles():
                warm_up_twin(definition, batch_size, optimizer, sparse, settings)
            return False                               # all of it came from the cache
        except kernels.WouldCompile:
            pass
        if info.cache_writable():
            compile_in_child(definition, batch_size, optimizer, sparse, settings)
        warm_up_twin(definition, batch_size, optimizer, sparse, settings)
        return True

    def save(self, path: Union[str, os.PathLike]):
        """Write this network to path: plain arrays and checked JSON metadata in an .npz,
        no pickle, written atomically (fastbp.load reads it).

        Parameters
        ----------
        path : str or os.PathLike

        Returns
        -------
        pathlib.Path
            The path written.

        Raises
        ------
        OSError
            Where the file cannot be written (an existing file is left as it was)."""
        return io.write_file(path, io.FORMAT, *self.record())

    def record(self):
        """(arrays, meta): the network's parameters and its JSON description, as a saved
        model and a checkpoint hold them (network_members is the schema they are read by)."""
        arrays = {"w%d" % l: W for l, W in enumerate(self.weights)}
        if self.bias:
            arrays.update({"b%d" % l: b for l, b in enumerate(self.biases)})
        meta = {
            "fastbp_version": __version__,
            "sizes": self.sizes, "activation": self.activations[:-1], "output": self.output,
            "loss": self.loss_name, "bias": self.bias, "propagate": self.propagate, "init": self.init,
            "dtype": str(self.dtype), "rng_state": self.rng.bit_generator.state,
            "activation_parameters": self.activation_parameters,
        }
        return arrays, meta

    def _eps(self):
        return np.finfo(self.dtype).eps

    # ------------------------------------------------------------ training
    def train(self, X: ArrayLike, Y: ArrayLike, *, sample_weight: Optional[ArrayLike] = None,
              validation: Optional[tuple] = None, progress: Union[bool, Callable, None] = None,
              callback: Optional[Callable] = None, **settings) -> dict:
        """Train by backpropagation and gradient descent (fastbp.training).

        Every setting (all but X, Y, sample_weight, validation, progress and callback) is
        a field of a fastbp.RunConfig, checked before anything changes.

        Parameters
        ----------
        X : array-like or scipy sparse matrix, shape (m, n_in)
        Y : array-like, shape (m, n_out), or (m,) integer labels (one-hot encoded)
        sample_weight : array-like of shape (m,) or None
            One weight >= 0 per sample: the objective is the weighted mean
            sum_i s_i E_i / sum_i s_i. A batch's step takes the weighted mean of its
            gradients (scikit-learn's rule; a batch whose weights sum to 0 takes no step), a
            per-sample step takes s_i times its sample's gradient, and a sample of weight 0
            takes no step. The losses reported are weighted means; rows held out by
            validation_fraction keep their weights.
        validation : (X_val, Y_val) or (X_val, Y_val, sample_weight_val), or None
            Evaluated after every epoch; the run then ends with the weights of the epoch
            with the lowest validation loss.
        progress : bool, callable or None
            True shows a tqdm bar; a function is called as progress(n_samples,
            running_mean_loss) after each slice of about 1% of an epoch.
        callback : callable or None
            Called as callback(net, history) after each epoch. Neither it nor progress
            changes the training.
        epochs : int, default 1
        lr : float or None, default None
            Sets the optimizer's learning rate (default 0.1, Adam's 0.001, RMSprop's and
            RPROP's 0.01: RPROP's initial step size; lm, br and scg have none).
        batch_size : int, None or 'auto', default 'auto'
            1 is per-sample SGD (seeds 000, 002, 004), 1 < batch_size < m mini-batch SGD
            (seed 001), None or >= m full-batch gradient descent (seed 003); 'auto' is 1,
            or None for the full-batch rules, which refuse any other. A step uses the mean
            gradient over its batch.
        shuffle : bool, default True
            Visit the samples in a new order each epoch, drawn from the network's seed.
        l2, l1 : float, default 0.0
            Penalties on the weights (not the biases): each step minimises mean(E over the
            batch) + (l2 / 2) * sum of squared weights + l1 * sum of their absolute values
            (a subgradient: 0 at 0), whatever the batch size.
        max_norm : float or None, default None
            After each step, every hidden unit's incoming weights (a row of W) are scaled
            down to this norm where they are longer (Srivastava et al., 2014).
        dropout : float, sequence of float or None, default None
            A rate in [0, 1), or one per hidden layer: each hidden unit's output is dropped
            with that probability while training, the kept ones scaled by 1 / (1 - rate)
            (inverted dropout: predict is unchanged).
        input_noise : float, default 0.0
            The standard deviation of Gaussian noise added to every input of every training
            row. Masks and noise come from the network's generator, so a seed reproduces the
            run and a checkpoint resumes it. l1, max_norm, dropout and input_noise train
            per-sample SGD with the mini-batch kernel at batch size 1: the same steps,
            slower.
        optimizer : str or fastbp.Optimizer, default 'sgd'
            'sgd', 'momentum', 'nesterov', 'adam', 'rmsprop', 'rprop' (iRPROP-), 'irprop+',
            'lm' (Levenberg-Marquardt), 'br' (Bayesian regularisation), 'scg' (scaled
            conjugate gradient) (optimizers.RULES; the last five full batch, lm and br on
            the squared error only), or an Optimizer, which keeps its state from call to
            call.
        schedule : None, str, (str, dict) or fastbp.optimizers.Schedule, default None
            Scales lr from epoch to epoch: 'inverse_scaling', 'step', 'exponential',
            'reduce_on_plateau', or a (name, {settings}) pair; None: constant.
        clip : float or None, default None
            Caps the norm of each step's gradient (all layers together).
        validation_fraction : float or None, default None
            Hold out this share of (X, Y) as the validation set (stratified for
            classifiers, drawn from the seed).
        n_iter_no_change : int or None, default None
            Stop once the monitored loss (the validation loss if any, else the training
            loss) has not fallen below its best minus tol for this many epochs.
        tol : float, default 1e-4
        target_loss : float or None, default None
            Stop once an epoch's training loss is below it (seed 001).
        diagnostics : bool, default True
            Record, on up to 2048 training samples after each epoch, each layer's mean
            abs error term and gradient norm, and the accuracy for sigmoid or softmax
            outputs.
        checkpoint : path or None, default None
            Every checkpoint_every epochs, and at the end, the run's whole state (network,
            optimizer, schedule, random generator, history) is written there atomically;
            fastbp.resume(path, X, Y) continues it to the same final weights.
        checkpoint_every : int, default 1
        backend : str or None, default None
            'numba' or 'numpy' for this run; None: the network's (``net.backend``).

        Returns
        -------
        dict
            Per-epoch lists: 'loss' (the mean per-sample loss, each sample's taken before
            its own step, as scikit-learn's loss_curve_), 'seconds' (training only), 'lr';
            with diagnostics, 'mean_abs_delta' and 'grad_norm' (one value per layer, input
            side first) and 'accuracy'; with validation, 'val_loss' and 'val_accuracy' (or
            'val_r2'); for lm, br and scg, their scalars (mu; gamma, alpha, beta; lambda and
            the gradient evaluations so far). Also 'stopped' ('epochs', 'no improvement',
            'target loss', lm's and br's 'mu at mu_max', scg's 'zero gradient'),
            'best_epoch' (counted from 1) and 'train_samples' (per epoch).

        Raises
        ------
        ValueError, TypeError
            For a bad setting or input, before anything changes: the network, its
            generator and a given Optimizer are untouched.
        TrainingDiverged
            The loss or the weights stopped being finite: that epoch is undone.
        KeyboardInterrupt
            Ctrl-C during an epoch undoes that epoch: the network, its generator and the
            optimizer are as after the last finished one (the best validation epoch's
            weights are not restored); the exception carries the finished epochs' history
            as .history and the run's state as .state.
        """
        keywords("train()", settings, RUN_SETTINGS, ("sample_weight", "validation", "progress", "callback"))
        return training.train(self, X, Y, RunConfig(**settings), validation, progress, callback, sample_weight)

    def train_steps(self, X: ArrayLike, Y: ArrayLike, steps: int, lr: float = 0.1, batch_size: int = 128,
                    l2: float = 0.0, backend: Optional[str] = None) -> float:
        """Plain SGD steps, each on batch_size samples drawn at random without replacement
        (as seed 001's random.sample), in compiled calls of up to STEP_CHUNK samples' steps:
        memory stays small and Ctrl-C works however many steps.

        Parameters
        ----------
        X, Y
            As loss's.
        steps : int
            How many steps.
        lr, l2 : float
            The learning rate and the L2 penalty.
        batch_size : int
            Samples a step (at most m).
        backend : str or None
            'numba' or 'numpy' for this call; None: the network's.

        Returns
        -------
        float
            The mean of the steps' batch losses, each taken before its step.

        Raises
        ------
        ValueError, TypeError
            For a bad setting or input, before anything changes.
        TrainingDiverged
            The weights stopped being finite; they are as before the call."""
        X = self.check_inputs(X, backend=backend)
        T = self.check_targets(Y, X.shape[0])
        steps = positive_int("steps", steps)
        lr = number("lr", lr, low_open=True)
        l2 = number("l2", l2)
        batch_size = min(positive_int("batch_size", batch_size), X.shape[0])
        backend = self._backend_name(backend)
        optimizer = Optimizer("sgd", lr=lr).bind(self)
        per_call = max(1, STEP_CHUNK // batch_size)

        def run():
            total, done = 0.0, 0
            while done < steps:
                n = min(per_call, steps - done)
                rows = np.empty((n, batch_size), np.int64)
                kernels.draw_batches(self._rng.random((n, batch_size)), X.shape[0], rows)
                total += self.train_epoch(X, T, rows.reshape(-1), batch_size, lr, l2, optimizer, None, backend)
                done += n
                if not (np.isfinite(total) and np.isfinite(self._w).all()):
                    break                   # diverged: guarded restores the weights
            return total / (done * batch_size)
        return training.guarded(self, optimizer, "these %d steps" % steps, None, run)


# ---------------------------------------------------------------- files: the network's record

def network_members(meta, kind):
    """The schema of a saved model or a checkpoint (io.read_file's members): {name: (shape,
    dtype)} of the arrays its metadata calls for, after checking the declared network
    (check_definition) and its size (io.check_parameters). A checkpoint adds run.py's arrays."""
    definition = check_definition(meta["sizes"], meta["activation"], meta["output"], meta["loss"],
                                  meta["bias"], meta["init"], meta["propagate"], meta["dtype"],
                                  meta.get("activation_parameters"))   # (files before 0.2.0 have none)
    sizes, dtype, bias = definition["sizes"], definition["dtype"], definition["bias"]
    n_w = sum(a * b for a, b in zip(sizes, sizes[1:]))
    n_b = sum(sizes[1:])
    io.check_parameters(sizes, n_w + n_b)
    members = {"w%d" % l: ((sizes[l + 1], sizes[l]), dtype) for l in range(len(sizes) - 1)}
    if bias:
        members.update({"b%d" % l: ((sizes[l + 1],), dtype) for l in range(len(sizes) - 1)})
    if kind == io.CHECKPOINT:
        members.update(run.checkpoint_arrays(meta["training"], n_w, n_b, dtype))
    return members


def read_record(path, kinds=(io.FORMAT, io.CHECKPOINT)):
    """(arrays, meta) of a saved model or a checkpoint at path, every check made."""
    return io.read_file(path, kinds, network_members)


def from_record(path, arrays, meta, what):
    """The Network a file's arrays and JSON describe (what: 'model' or 'checkpoint')."""
    try:
        rng = _generator(meta["rng_state"])
        net = Network(meta["sizes"], activation=meta["activation"], output=meta["output"],
                      loss=meta["loss"], bias=meta["bias"], init=meta["init"],
                      propagate=meta["propagate"], dtype=meta["dtype"], seed=0,
                      activation_parameters=meta.get("activation_parameters"))
        net.rng.bit_generator.state = rng.bit_generator.state
        net.weights = [arrays["w%d" % l] for l in range(net.n_layers)]
        if net.bias:
            net.biases = [arrays["b%d" % l] for l in range(net.n_layers)]
    except (KeyError, ValueError, TypeError) as error:
        raise io.ModelFileError("%s: inconsistent %s file: %s" % (path, what, io.reason(error))) from error
    return net


def _generator(state):
    """A Generator in the saved state (a PCG64, as numpy.random.default_rng makes)."""
    if not isinstance(state, dict) or state.get("bit_generator") != "PCG64":
        raise ValueError("rng_state is not a PCG64 generator's state")
    bits = np.random.PCG64()
    try:
        bits.state = state
    except (KeyError, TypeError, ValueError, OverflowError) as error:
        raise ValueError("rng_state is not a valid PCG64 state (%s)" % io.reason(error)) from None
    return np.random.Generator(bits)


def load(path: Union[str, os.PathLike]) -> "Network":
    """Read a network written by Network.save, or the network of a training checkpoint
    (fastbp.resume continues its training).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    Network
        On the 'numba' backend.

    Raises
    ------
    ModelFileError
        For any bad, truncated or hostile file, checked before it costs memory."""
    return from_record(path, *read_record(path), "model")


def load_checkpoint(path):
    """(network, RunConfig, RunState) of the checkpoint at path (run.read_checkpoint, with
    this module's network record)."""
    return run.read_checkpoint(path, read_record(path, (io.CHECKPOINT,)), from_record)


def resume(path, X, Y, validation=None, epochs: Optional[int] = None, progress=None, callback=None,
           checkpoint=None, sample_weight=None):
    """Continue the run saved in the checkpoint at path: it ends with the weights an
    uninterrupted run would have. A checkpoint is never changed by a call that raises
    before training.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint (Network.train's checkpoint=).
    X, Y, sample_weight
        The same training data and sample weights as the run's (checked by a hash).
    validation : tuple or None
        The run's validation set, if it had one given explicitly.
    epochs : int or None
        A new total number of epochs; None: the run's.
    progress, callback
        As Network.train's.
    checkpoint : str, os.PathLike or None
        Where checkpoints go on being written; None: path.

    Returns
    -------
    (Network, dict)
        The network and the whole run's history.

    Raises
    ------
    ModelFileError
        For a bad checkpoint.
    ResumeError
        For data that is not the run's."""
    net, config, state = load_checkpoint(path)
    return training.resume_run(path, net, config, state, X, Y, validation, epochs, progress, callback,
                               checkpoint, sample_weight)


def _dtype_name(value):
    """'float32' for np.float32, 'float32', np.dtype('f4')...; anything else unchanged."""
    try:
        return str(np.dtype(value))
    except TypeError:
        return value


# The settings of train() that choose which kernels train it (Network.warm_up takes them);
# the others are values the kernels read
KERNEL_SETTINGS = ("clip", "l1", "max_norm", "dropout", "input_noise")


def warm_up_twin(definition, batch_size, optimizer="sgd", sparse=False, settings=None):
    """Train a throwaway network of this definition (Network's keyword arguments) for one
    epoch at batch_size (None: the full batch) on two samples (as CSR rows if sparse) with
    the optimizer (a RULES name) and the settings (of KERNEL_SETTINGS, as train() takes
    them), and take its error terms and predictions: every kernel the definition's
    training and inference call is then compiled or loaded, the batched epoch both for one
    thread and (where Numba has 2 threads) for several."""
    import numba
    twin = Network(seed=0, **definition)
    X = np.zeros((2, twin.sizes[0]), twin.dtype)
    if sparse:
        from scipy.sparse import csr_matrix
        X = csr_matrix(X)
    T = np.zeros((2, twin.sizes[-1]), twin.dtype)
    T[:, 0] = 1.0                                  # a valid target for every loss
    settings = dict(settings or {})
    rule, size = RULES[optimizer], 1 if batch_size == 1 else 2
    per_sample = twin.uses_per_sample_kernel(size, Optimizer(optimizer), settings.get("clip"), None,
                                             settings.get("l1", 0.0), settings.get("max_norm"),
                                             twin.dropout_rates(settings.get("dropout")),
                                             settings.get("input_noise", 0.0))
    if not sparse and rule.step is None and not per_sample:
        # both builds of the batched kernel on dense rows: the run below takes one of them,
        # as many threads as the load gives it (threads.py), and a later run may take the
        # other (the one-thread build's signature for dense rows is not the sparse rows')
        for threads in (1, 2) if numba.config.NUMBA_NUM_THREADS > 1 else (1,):
            twin.train_epoch(X, T, np.arange(2), size, 0.01, 0.0, Optimizer(optimizer).bind(twin), threads=threads,
                             **settings)
    if rule.full_batch:
        twin.train(X, T, epochs=1, optimizer=optimizer, **settings)
    else:
        twin.train(X, T, epochs=1, batch_size=min(batch_size or 2, 2), optimizer=optimizer, **settings)
    twin.deltas(X, T)
    twin.predict(X)


def compile_in_child(definition, batch_size, optimizer="sgd", sparse=False, settings=None):
    """warm_up_twin in a fresh Python process (which fills Numba's on-disk cache); its
    compile notice goes to this process's stderr. Returns whether it succeeded."""
    import json
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))      # (the fastbp imported here)
    code = ("import json, sys; sys.path.insert(0, sys.argv[3]); from fastbp.network import warm_up_twin; "
            "warm_up_twin(json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[4], sys.argv[5] == 'sparse', "
            "json.loads(sys.argv[6]))")
    try:
        done = subprocess.run([sys.executable, "-c", code, json.dumps(definition), json.dumps(batch_size), root,
                               optimizer, "sparse" if sparse else "dense",
                               json.dumps(settings or {}, default=float)],      # (NumPy scalars as floats)
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=False)
    except OSError:
        return False
    return done.returncode == 0
