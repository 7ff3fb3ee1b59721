"""The backends a Network computes on, behind one interface.

- ``NumpyBackend`` runs ``reference.py``, the readable specification.
- ``NumbaBackend`` runs ``kernels.py``. It chooses, inside, between the dense and the CSR
  kernels, and between the per-sample and the mini-batch epoch.

A ``Network`` keeps the definition, the parameters and the public API. Every computation
on the parameters goes through ``get(name)``, one of ``BACKENDS``. Each backend has the
same operations, every array given to them already checked (``Network.check_inputs``,
``check_targets``, ``check_sample_weight``):

- ``forward(net, X)``: every layer's outputs ``[A1, ..., AL]``, each ``(m, n_l)``;
- ``outputs(net, X, name=None)``: the last layer's outputs only (inference); with a
  ``name``, X's values have not been tested for NaN and inf yet (``check_inputs(...,
  finite=False)``), and the backend tests them, with ``checks.check_finite``'s error;
- ``backprop(net, X, T, propagate, S)``: the forward pass and every layer's error terms,
  ``(A, D)``; ``propagate`` is 'delta' (the true gradient's) or 'error' (seed 000's); with
  sample weights ``S``, each row's error terms are times its weight;
- ``gradients(net, X, A, D, total)``: ``(dW list, db list or None)`` from such a pass, the
  mean over the rows (the sum over ``total``, if given);
- ``jacobian_blocks(net, X, block)``: ``(J rows, outputs)`` for blocks of ``block`` rows of
  ``X``; J's row ``s * n_out + k`` is ``d o_k / d theta`` for the block's sample ``s``;
- ``train_epoch(net, X, T, order, batch_size, lr, l2, optimizer, clip, threads, S, l1,
  max_norm, rates, input_noise)``: one pass of a gradient rule over ``X[order]`` (the
  methods with a step of their own, ``methods.py``, are built on the operations above);
  returns the summed loss, each taken before its step;
- ``per_sample(batch_size, optimizer, clip, l1, max_norm, rates, input_noise)``: whether
  ``train_epoch`` takes a per-sample kernel with these settings (``training.py`` cuts its
  epochs to suit it).

Three attributes say what the code around a backend must know of it:

- ``blas``: whose BLAS its products run on, "numpy" (NumPy's copy of OpenBLAS) or "scipy"
  (SciPy's, which Numba's ``np.dot`` calls); the input check (``checks.check_finite``)
  runs its product through the same one;
- ``own_threads``: whether it runs threads of its own beside BLAS; a run then holds BLAS
  to one thread (``training.blas_for``) and lets the batched epochs choose their threads
  from the load (``training.EpochPlan``);
- ``compiles``: whether it compiles code at a first call, which ``Network.warm_up`` then
  does ahead.

A new backend (a GPU one) is a class with these operations and attributes and an entry in
``BACKENDS``.
A backend holds no state: it reads and writes the network's flat parameter buffers
(``net._w``, ``net._b``, laid out as ``kernels.py`` describes) and its generator.
"""
import functools
import os
import subprocess
import sys

import numba
import numpy as np
from numba.typed import List

from . import info, kernels, reference
from .checks import check_finite, choice, is_sparse
from .functions import LOSS_CODES
from .optimizers import RULE_CODES, Optimizer
from .threads import available_cpus, batch_chunks, blas_for_products, blas_on_one_thread

DRAW_BUDGET = 1 << 22         # numbers in one part's dropout and noise draws, about
OPERATIONS = ("forward", "outputs", "backprop", "gradients", "jacobian_blocks", "train_epoch", "per_sample")
ATTRIBUTES = ("blas", "own_threads", "compiles")


class NumpyBackend:
    """The NumPy reference (reference.py): one seed formula to a line, for reading and for
    the tests to hold the kernels to."""

    blas, own_threads, compiles = "numpy", False, False

    def forward(self, net, X):
        return reference.forward(*net._params(), net._reference_activations, X)[1:]

    def outputs(self, net, X, name=None):
        if name is not None:
            check_finite(name, X, self.blas)
        return self.forward(net, X)[-1]

    def backprop(self, net, X, T, propagate, S=None):
        weights, biases = net._params()
        Z, A = reference.layers(weights, biases, net._reference_activations, X)
        return A[1:], reference.backward(weights, A, T, net._reference_activations, net.loss_name, propagate, Z, S)

    def gradients(self, net, X, A, D, total=None):
        dense = X.toarray() if is_sparse(X) else X                # (the reference reads dense rows)
        dW, db = (list(g) for g in zip(*reference.gradients([dense] + A, D, total)))
        return dW, (db if net.bias else None)

    def jacobian_blocks(self, net, X, block):
        weights, biases = net._params()
        for r0 in range(0, X.shape[0], block):
            Xb = X[r0:r0 + block]
            J = reference.jacobian(weights, biases, net._reference_activations, Xb)
            yield J.reshape(-1, net.n_trainable), reference.forward(weights, biases, net._reference_activations, Xb)[-1]

    def train_epoch(self, net, X, T, order, batch_size, lr, l2, optimizer, clip, threads, S, l1, max_norm, rates,
                    input_noise):
        weights, biases = net._params()
        state = self._state(net, optimizer) if optimizer.state["w"].shape[0] else None
        with np.errstate(over="ignore", invalid="ignore"):   # divergence is checked after
            return reference.train_epoch(weights, biases, net._reference_activations, net.loss_name, X, T, order,
                                         batch_size, lr, l2, net.propagate, optimizer, state, clip, S, l1, max_norm,
                                         rates, input_noise, net._rng)

    def per_sample(self, batch_size, optimizer, clip, l1=0.0, max_norm=None, rates=None, input_noise=0.0):
        return False

    @staticmethod
    def _state(net, optimizer):
        """The optimizer's state as the reference takes it: for each parameter (weights,
        then biases), the list of its state arrays, as views."""
        k = optimizer.state["w"].shape[0]
        per_w = [[net._layer_view(optimizer.state["w"][i], "w", l) for i in range(k)] for l in range(net.n_layers)]
        per_b = [[net._layer_view(optimizer.state["b"][i], "b", l) for i in range(k)]
                 for l in range(net.n_layers)] if net.bias else []
        return per_w + per_b


def _csr(X):
    """The CSR arrays the kernels read: data, indices, indptr."""
    return X.data, X.indices, X.indptr


class NumbaBackend:
    """The compiled kernels (kernels.py), dense rows or CSR. Each call announces a first
    compile (kernels.first_call), with how long it takes on a 2-core machine."""

    blas, own_threads, compiles = "scipy", True, True
    NO_CSR = (None, None, None)                                    # batch_epoch's CSR arrays for dense X
    NO_DRAWS = (np.empty((0, 0), np.uint32), np.empty((0, 0)))     # (U, N) of draw_regularisers

    def forward(self, net, X):
        with kernels.first_call(kernels.forward_batch, "batched forward pass", 3):
            A = kernels.layer_buffers(net._sizes, X.shape[0], net._w)
            self._forward(net, X, A, A)                               # (no z kept: inference)
        return list(A)

    def outputs(self, net, X, name=None):
        if is_sparse(X):                                           # (check_array tests CSR's values)
            return self.forward(net, X)[-1]
        with kernels.first_call(kernels.predict_batch, "batched forward pass", 3), \
                blas_for_products(X.shape[0] * net.n_parameters[0]):
            O, first = kernels.predict_batch(*net._layout(), X)
        if name is not None and first >= 0:     # a NaN or an inf in X, or products that overflowed
            check_finite(name, X, self.blas)
        return O

    def backprop(self, net, X, T, propagate, S=None):
        A, Z, D, E = (kernels.layer_buffers(net._sizes, X.shape[0], net._w) for _ in range(4))
        self._forward(net, X, A, Z)
        with kernels.first_call(kernels.backward_batch, "batched delta propagation", 4):
            kernels.backward_batch(net._w, net._sizes, net._w_off, net._u_off, net._acts, LOSS_CODES[net.loss_name],
                                   propagate == "error", A, Z, T, self._weights(net, S), D, E, np.empty(X.shape[0]),
                                   net._eps(), 0)
        return list(A), list(D)

    def gradients(self, net, X, A, D, total=None):
        dw, db_flat = np.empty_like(net._w), np.empty_like(net._b)
        layout = net._sizes, net._w_off, net._u_off
        if is_sparse(X):
            GT = np.empty((net.sizes[0], net.sizes[1]), net.dtype)
            kernels.gradient_batch_sparse(*layout, *_csr(X), np.arange(X.shape[0]), List(A), List(D), GT, dw, db_flat)
            net._layer_view(dw, "w", 0)[...] = GT.T
        else:
            kernels.gradient_batch(*layout, X, List(A), List(D), dw, db_flat)
        dw /= X.shape[0] if total is None else total     # the kernel sums; the mean
        db_flat /= X.shape[0] if total is None else total
        dW = [net._layer_view(dw, "w", l) for l in range(net.n_layers)]
        db = [net._layer_view(db_flat, "b", l) for l in range(net.n_layers)]
        return dW, (db if net.bias else None)

    def jacobian_blocks(self, net, X, block):
        K = net.sizes[-1]
        J = np.empty((min(block, X.shape[0]) * K, net.n_trainable), net.dtype)
        for r0 in range(0, X.shape[0], block):
            Xb = np.ascontiguousarray(X[r0:r0 + block])
            B = Xb.shape[0]
            with kernels.first_call(kernels.jacobian_block, "Jacobian kernel", 9):
                O = kernels.jacobian_block(net._w, net._b, net._sizes, net._w_off, net._u_off, net._acts, net.bias, Xb,
                                           net._eps(), J[:B * K])
            yield J[:B * K], O

    def per_sample(self, batch_size, optimizer, clip, l1=0.0, max_norm=None, rates=None, input_noise=0.0):
        """The blocked per-sample kernel (kernels.sgd_epoch) takes plain SGD, one sample a
        step, no clipping, no penalty but L2, no max-norm (its blocks of pending steps hold
        only for a linear shrink), no dropout and no input noise; batch_epoch takes every
        other case."""
        return (batch_size == 1 and optimizer.rule == "sgd" and not clip and not l1 and not max_norm
                and not any(rates or ()) and not input_noise)

    def train_epoch(self, net, X, T, order, batch_size, lr, l2, optimizer, clip, threads, S, l1, max_norm, rates,
                    input_noise):
        """One compiled call: kernels.sgd_epoch(_sparse) for plain per-sample SGD, else
        kernels.batch_epoch (in parts, when dropout or input noise draw more than
        DRAW_BUDGET numbers). threads: the dense kernels' thread count (threads.py: it never
        changes the result)."""
        kind = net.dtype.type
        S = self._weights(net, S)
        layout = net._layout() + (LOSS_CODES[net.loss_name], net.propagate == "error", net.bias)
        sparse = is_sparse(X)
        threads = 1 if sparse else max(1, threads)         # (sparse rows: the serial kernels)
        if threads > 1:
            numba.set_num_threads(threads)
        if self.per_sample(batch_size, optimizer, clip, l1, max_norm, rates, input_noise):
            step = (kind(lr), kind(1.0 - lr * l2), net._eps(), np.finfo(net.dtype).tiny)
            if sparse:
                epoch = self.build(net, "sgd_epoch_sparse")
                with self._first_call(epoch, "sgd_epoch_sparse"):
                    total = epoch(*layout, *_csr(X), T, S, order, *step)
            else:
                epoch = self.build(net, "sgd_epoch")
                with self._first_call(epoch, "sgd_epoch"):
                    compile_side_by_side(net, "sgd_epoch", epoch is not kernels.sgd_epoch)     # (once: a cold kernel's)
                    total = epoch(*layout, X, T, S, order, *step, threads)
            optimizer.t += order.size
            return total
        hyper = optimizer.hyper(lr, l2, clip, net.dtype, l1, max_norm, input_noise)
        rows = (np.empty((0, net.sizes[0]), net.dtype),) + _csr(X) if sparse else (X,) + self.NO_CSR
        parts, draws = [order], [self.NO_DRAWS]
        if any(rates) or input_noise:
            bs = min(batch_size, order.size)
            layout = layout[:5] + (self._training_acts(net, bs, rates, input_noise),) + layout[6:]
            parts, draws = self.draw_regularisers(net, order, bs, rates, input_noise, S)
        total, last = 0.0, np.array([optimizer.last_loss])
        name = "batch_epoch" if threads > 1 else "batch_epoch_serial"
        epoch = self.build(net, name, optimizer.rule, max_norm, rates, input_noise, clip)
        with self._first_call(epoch, name), blas_on_one_thread():
            compile_side_by_side(net, "batch_epoch", epoch is not getattr(kernels, name))   # (once: a cold kernel's)
            for part, (U, N) in zip(parts, draws):
                loss, optimizer.t = epoch(*layout, *rows, T, S, part, batch_size,
                                                        RULE_CODES[optimizer.rule], hyper, optimizer.state["w"],
                                                        optimizer.state["b"], optimizer.t, net._eps(),
                                                        batch_chunks(), threads, U, N, last)
                total += loss
        optimizer.last_loss = float(last[0])
        return total

    # each training kernel's first-call notice: what it is, and its cold compile in seconds
    # on a 2-core machine, (common build, full build) (CONTRIBUTING.md, "Compile time")
    NOTICES = {"sgd_epoch": ("per-sample SGD kernel", (7, 13)),
               "sgd_epoch_sparse": ("per-sample SGD kernel for sparse rows", (7, 7)),
               "batch_epoch_serial": ("mini-batch kernel", (7, 9)),
               "batch_epoch": ("mini-batch kernel's parallel build", (9, 11))}

    def _first_call(self, epoch, name):
        what, seconds = self.NOTICES[name]
        common = epoch is not getattr(kernels, name)
        return kernels.first_call(epoch, "%s (%s build)" % (what, "common" if common else "full"),
                                  seconds[0 if common else 1])

    @staticmethod
    def build(net, name, rule="sgd", max_norm=None, rates=(), input_noise=0.0, clip=None):
        """The build of the training kernel `name` that a run of net with these settings
        takes (kernels.build): dropout, input noise, max-norm and clipping are the full
        build's."""
        extras = bool(max_norm) or any(rates) or bool(input_noise) or bool(clip)
        return kernels.build(name, net._acts[0], RULE_CODES[rule], extras)

    def draw_regularisers(self, net, order, bs, rates, input_noise, S):
        """The order cut into parts of whole batches, each with its draws (U, N) for
        kernels.batch_epoch: for every batch that takes a step (weight > 0), the normals of
        its input noise, then the uniforms of its dropout masks, drawn in that order from
        the network's generator as reference.train_epoch draws them; each part's draws
        hold about DRAW_BUDGET numbers at most."""
        drawn = sum(net.sizes[l + 1] for l, p in enumerate(rates) if p > 0)
        width = drawn + (net.sizes[0] if input_noise else 0)
        per_part = max(1, DRAW_BUDGET // (bs * max(1, width))) * bs
        parts, draws = [], []
        for first in range(0, order.size, per_part):
            part = order[first:first + per_part]
            batches = [part[i:i + bs] for i in range(0, part.size, bs)]
            if S.size > 0:
                batches = [rows for rows in batches if S[rows].sum() > 0]     # (no weight: no step)
            n = sum(rows.size for rows in batches)
            U = np.empty((n, 2 * (-(-drawn // 2))), np.uint32)
            N = np.empty((n, net.sizes[0]) if input_noise else (0, 0))
            at = 0
            for rows in batches:
                if input_noise:
                    N[at:at + rows.size] = net._rng.standard_normal((rows.size, net.sizes[0]))
                if drawn:
                    U[at:at + rows.size] = reference.dropout_draws(net._rng, rows.size, drawn)
                at += rows.size
            parts.append(part)
            draws.append((U, N))
        return parts, draws

    @staticmethod
    def _forward(net, X, A, Z):
        """The compiled batched forward pass of all of X (dense or CSR) into A (and Z)."""
        if is_sparse(X):
            WT = np.ascontiguousarray(net.weights[0].T)
            kernels.forward_batch_sparse(*net._layout(), WT, *_csr(X), np.arange(X.shape[0]), A, Z)
        else:
            kernels.forward_batch(*net._layout(), X, A, Z, 0)

    @staticmethod
    def _training_acts(net, rows, rates, input_noise):
        """The kernels' acts with buffers for dropout masks and input noise of `rows` rows."""
        codes, parameters = net._acts[:2]
        masks = np.ones((rows, net._u_off[-2]), net.dtype) if any(rates) else np.empty((0, 0), net.dtype)
        noise = np.empty((rows, net.sizes[0]), net.dtype) if input_noise else np.empty((0, 0), net.dtype)
        return codes, parameters, np.array(rates + [0.0], net.dtype), masks, noise

    @staticmethod
    def _weights(net, S):
        """What the kernels take for sample weights: the weights, or an empty array for none."""
        return np.empty(0, net.dtype) if S is None else S


# ---------------------------------------------------------------- a cold training kernel, compiled side by side
# Most of a training kernel's cold compile goes to the kernels it calls, each with the
# helpers it calls: for the batched kernel, the forward pass (kernels.forward_batch), the
# delta propagation (backward_batch) and the update (optimizer_step, and _units_pass: a
# block of units' gradients and update); for per-sample SGD, the first layer's block pass
# (_first_layer_block) and the steps of one sample (its activations, error terms and dot
# products). Numba compiles one function at a time in a process, and a kernel that calls
# another links in the callee's code, which it loads from the on-disk cache when the
# callee is there. So on a training kernel's first call, when the cache can be written
# and the process may use two CPUs, a child process compiles one part into the cache
# (CHILD_PARTS) while this one compiles the others; then the kernel compiles here, the
# child's part loaded. The parts are compiled for a network's dtype with the signatures
# that the kernel calls them with (tests/test_cache.py holds the two together: a part that
# differed would compile twice). CONTRIBUTING.md, "Compile time", has the figures.


def _batched(net, common):
    """What the batched kernel's parts are called on: net's layout (its weights copied)
    and buffers for two rows of zeros, with a valid target for every loss."""
    w, b = net._w.copy(), net._b.copy()
    _, _, sizes, w_off, u_off, acts = net._layout()
    A, Zs, D, E = (kernels.in_build(kernels.layer_buffers, common)(sizes, 2, w) for _ in range(4))
    X, T = np.zeros((2, net.sizes[0]), net.dtype), np.zeros((2, net.sizes[-1]), net.dtype)
    T[:, 0] = 1.0
    return w, b, sizes, w_off, u_off, acts, X, T, A, Zs, D, E


def _forward_part(net, common):
    w, b, sizes, w_off, u_off, acts, X, T, A, Zs, D, E = _batched(net, common)
    kernels.in_build(kernels.forward_batch, common)(w, b, sizes, w_off, u_off, acts, X, A, Zs, 0)


def _backward_part(net, common):
    w, b, sizes, w_off, u_off, acts, X, T, A, Zs, D, E = _batched(net, common)
    kernels.in_build(kernels.backward_batch, common)(w, sizes, w_off, u_off, acts, LOSS_CODES["mse"], False, A, Zs,
                                                     T, np.empty(0, net.dtype), D, E, np.empty(2), net._eps(), 0)


def _update_part(net, common):
    w, b, sizes, w_off, u_off, acts, X, T, A, Zs, D, E = _batched(net, common)
    optimizer = Optimizer("adam").bind(net)
    hyper, state = optimizer.hyper(0.001, 0.0, None, net.dtype), (optimizer.state["w"], optimizer.state["b"])
    dw, db = np.zeros_like(w), np.zeros_like(b)
    if not common:                      # (the common build calls it for sparse rows only)
        kernels.optimizer_step(RULE_CODES["adam"], w, b, dw, db, True, hyper, *state, 1, 2.0, False)
    step = (RULE_CODES["adam"], w, b, *state, hyper, 1, hyper[0], False, True, False)
    partials = np.zeros((1, w_off[1]), net.dtype)                    # (the ranges' first-layer gradients)
    kernels.in_build(kernels._units_pass, common).compile(_types(sizes, w_off, u_off, X, partials, A, D, 2, 0, 1, dw,
                                                                 db, step))


def _types(*values):
    return tuple(numba.typeof(value) for value in values)


def _first_layer_part(net, common):
    """sgd_epoch's first-layer block pass, for its argument types (it is internal: no call
    from Python)."""
    rows, H = np.zeros(kernels.BLOCK, np.int64), np.zeros((kernels.BLOCK, net.sizes[1]), net.dtype)
    kernels.in_build(kernels._first_layer_block, common).compile(_types(
        net._w, net._sizes[0], net._sizes[1], net.dtype.type(1), H, np.zeros((2, net.sizes[0]), net.dtype), rows,
        rows, H, 1))


def _sample_part(net, common):
    """sgd_epoch's steps of one sample: the kernels that its inlined helpers (_finish_layer,
    _top_backward, _layer_products) call, for their argument types: views of one vector
    stand for the kernel's views of its buffers (contiguous, as those are)."""
    v, one = np.zeros(3, net.dtype), net.dtype.type(1)
    code, p, loss = net._acts[0][0], net._acts[1][0], np.int64(LOSS_CODES["mse"])
    finish = kernels.in_build(kernels._finish_layer, common).py_func.__globals__     # (what a build's twin calls)
    top = kernels.in_build(kernels._top_backward, common).py_func.__globals__
    finish["_activate_inplace"].compile(_types(code, p, v[1:]))
    top["_output_delta"].compile(_types(loss, code, p, v[1:], v[1:], v, v[1:]))
    top["_send_back_output"].compile(_types(True, v[1:], v, v[1:], v[1:]))
    top["_weigh"].compile(_types(one, v[1:], v[1:]))
    top["_delta_into"].compile(_types(True, code, p, v[1:], v[1:], v[1:], v[1:]))
    kernels.in_build(kernels._dot, common).compile(_types(v[1:], v, one))


# training kernel -> its parts, in the order this process compiles them (name -> what
# compiles it); KERNELS: its entry points (whose being built leaves nothing to do);
# CHILD_PARTS: the child's (about as long as the others: the two processes end together)
PARTS = {"batch_epoch": {"forward": _forward_part, "backward": _backward_part, "update": _update_part},
         "sgd_epoch": {"first layer": _first_layer_part, "sample": _sample_part}}
KERNELS = {"batch_epoch": ("batch_epoch_serial", "batch_epoch"), "sgd_epoch": ("sgd_epoch",)}
CHILD_PARTS = {"batch_epoch": ("backward",), "sgd_epoch": ("first layer",)}
_CHILD_BUILDS = {"backward": "backward_batch", "first layer": "_first_layer_block"}    # (a child's part: built?)
CHILD_WAIT = 600                     # seconds: a child that takes longer is stopped, and this process compiles
_CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); from fastbp.network import Network; "
          "from fastbp.backends import compile_parts; "
          "compile_parts(Network([2, 2, 2], dtype=sys.argv[2], seed=0), sys.argv[3], sys.argv[4] == 'common', "
          "sys.argv[5:])")


def compile_parts(net, kernel, common, parts=None):
    """Compile (or load from the cache) `parts` (of PARTS[kernel]; default all) of the
    training kernel `kernel` ("batch_epoch" or "sgd_epoch") in its common build (common)
    or full one, for net's dtype, with the signatures that the kernel calls them with
    (on copies: net is unchanged)."""
    for name, compile_part in PARTS[kernel].items():
        if parts is None or name in parts:
            compile_part(net, common)


_seen = set()          # (kernel, common, dtype): the builds whose first call compile_side_by_side has seen


def compile_side_by_side(net, kernel, common):
    """Before each call of a build of the training kernel `kernel` (of PARTS) for net's
    dtype: at the first in this process, where the kernel is compiled neither here nor
    in the cache, its parts compiled in two processes at once (see above); not inside
    kernels.refusing_compiles(). Returns whether a child took part."""
    key = (kernel, common, net.dtype)
    if key in _seen or kernels.refusing():
        return False
    _seen.add(key)
    built = functools.partial(kernels.built_for, dtype=net.dtype)
    own = functools.partial(kernels.in_build, common=common)
    if (any(built(own(getattr(kernels, name))) for name in KERNELS[kernel]) or available_cpus() < 2
            or not info.cache_writable()):
        return False
    child, theirs = None, CHILD_PARTS[kernel]
    if not any(built(own(getattr(kernels, _CHILD_BUILDS[part]))) for part in theirs):
        child = _start_child(_CHILD, str(net.dtype), kernel, "common" if common else "full", *theirs)
    try:
        compile_parts(type(net)([2, 2, 2], dtype=net.dtype, seed=0), kernel, common,      # (the child's network)
                      [part for part in PARTS[kernel] if child is None or part not in theirs])
        if child is not None:
            child.wait(CHILD_WAIT)
    except subprocess.TimeoutExpired:       # (a child past CHILD_WAIT: the kernel compiles what it lacks)
        child.kill()
        child.wait()
    except BaseException:                   # (a compile that failed, an interrupt: no child left behind)
        if child is not None:
            child.kill()
            child.wait()
        raise
    return child is not None


# ---------------------------------------------------------------- the parallel build, compiled in the background
# A run on one thread takes the batched kernel's one-thread build; its parallel build
# (kernels.batch_epoch) compiles once more threads would pay for it (training.ParallelBuild).
# Rather than stop the run for that compile, a child process compiles it into the cache
# while the run goes on on one thread (the core the child takes would otherwise wait for
# the parallel build); the run takes more threads once the child is done, the build then
# loaded from the cache. The child loads the kernel's parts from the cache, where the
# one-thread build's compile left them, and the two builds compute the same, bit for bit
# (tests/test_threads.py). A child still compiling when the process ends finishes on its
# own, for the processes after it.
_PARALLEL_CHILD = ("import sys; sys.path.insert(0, sys.argv[1]); from fastbp.network import Network; "
                   "from fastbp.backends import compile_parallel_build; "
                   "compile_parallel_build(Network([2, 2, 2], dtype=sys.argv[2], seed=0), sys.argv[3] == 'common')")
_parallel_children = {}     # (common, dtype) -> the child compiling that parallel build, in this process


def compile_parallel_build(net, common):
    """Compile (or load from the cache) the batched kernel's parallel build (its common
    build, or its full one) for net's dtype: one call on two threads, on two rows of
    zeros, with a rule of that build (on copies: net is unchanged)."""
    twin = type(net)(net.sizes, dtype=net.dtype, seed=0)
    X, T = np.zeros((2, net.sizes[0]), net.dtype), np.zeros((2, net.sizes[-1]), net.dtype)
    T[:, 0] = 1.0
    optimizer = Optimizer("adam" if common else "rmsprop").bind(twin)        # (rmsprop: a rule of the full build only)
    BACKENDS["numba"].train_epoch(twin, X, T, np.arange(2), 2, 0.001, 0.0, optimizer, None, 2, None, 0.0, None,
                                  [0.0] * (len(net.sizes) - 1), 0.0)


def start_parallel_build(dtype, common):
    """A child process compiling the batched kernel's parallel build (common or full) for
    dtype into the cache (the one already running, if this process started it), or None
    where there can be none: no writable cache, no sys.executable, inside
    kernels.refusing_compiles(), or a child that could not start."""
    key = (common, np.dtype(dtype))
    if key in _parallel_children:
        return _parallel_children[key]
    if kernels.refusing() or not info.cache_writable():
        return None
    child = _start_child(_PARALLEL_CHILD, str(np.dtype(dtype)), "common" if common else "full")
    if child is not None:
        _parallel_children[key] = child
    return child


def _start_child(script, *args):
    """A Python process running `script` (which puts sys.argv[1], the directory of the
    fastbp imported here, first on its path) with args after it, its output discarded;
    None where none can start."""
    if not sys.executable:
        return None
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        return subprocess.Popen([sys.executable, "-c", script, root, *args], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None


BACKENDS = {"numba": NumbaBackend(), "numpy": NumpyBackend()}


def get(name):
    """The backend called name, or a clear error naming the choices."""
    return BACKENDS[choice("backend", name, tuple(BACKENDS))]
