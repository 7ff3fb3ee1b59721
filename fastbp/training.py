"""The training loop: epochs of gradient descent over a Network, with the optimizer and
its schedule, validation, early stopping, a target loss, checkpoints and resume, a
divergence guard and per-epoch diagnostics. ``Network.train`` is this module's ``train``.

A run's settings are a run.RunConfig and what it carries between epochs a run.RunState;
the network is used through its public interface (check_inputs, check_targets, rng,
snapshot, restore, train_epoch, backprop, forward). ``Loop`` is the one epoch loop, here
and on Dask: it takes the step as a part (``LocalEpochs`` here, ``distributed.Rounds``
there) and writes the divergence guard, the history, validation and stopping, Ctrl-C and
the checkpoints once. A local epoch is one compiled call (``Network.train_epoch``), or a
few; everything else runs between epochs, in Python, and is not counted in an epoch's
seconds.


Long runs: validation, early stopping, checkpoints, diagnostics
===============================================================

- **Validation.** `validation=(X_val, Y_val)`, or `validation_fraction=0.1` held out of
  (X, Y) (stratified by class for sigmoid/softmax outputs; the rows are drawn from the
  seed), is evaluated after every epoch (`val_loss`, and `val_accuracy` or `val_r2`).
  With validation, the run ends with the weights of the epoch with the lowest
  validation loss.
- **Stopping.** `n_iter_no_change=k` stops once the monitored loss (the validation loss, or
  the training loss without validation) has not fallen below its best minus `tol` for k
  epochs. `target_loss=x` stops once an epoch's training loss is below x (seed 001 trains
  "until the loss is below 0.01"). `history["stopped"]` says why: `epochs`,
  `no improvement` or `target loss`; `history["best_epoch"]` counts from 1.
- **Checkpoints.** `checkpoint="run.npz"` writes the whole state of the run every
  `checkpoint_every` epochs and at the end, atomically (temporary file, fsync, rename): the
  network, the optimizer's state and step count, the schedule's state, the random
  generator (the next epochs' sample order), the validation rows, the best weights so far,
  the stopping counters, the history and a SHA-256 of the training data.
  `net, history = fastbp.resume("run.npz", X, Y)` continues it (`epochs=` to change the
  total) and ends with exactly the weights of a run that was never interrupted
  (`tests/test_training.py` kills a training process with SIGKILL and resumes it). Resuming
  on different data is a `fastbp.ResumeError`, and so is resuming a run that had an explicit
  `validation=` set with another one (its SHA-256 is in the checkpoint too); `fastbp.load`
  reads a checkpoint's network. Every field of a checkpoint is checked as `train` checks
  its arguments (an `lr` of -0.5, `batch_size=0`, a negative step count or a missing key is
  a `ModelFileError`), so a crafted checkpoint cannot resume into gradient ascent.
- **Diagnostics.** `history` holds per epoch: `loss` (the running training loss), `seconds`
  (training only), `lr`, and with `diagnostics=True` (the default), measured after the
  epoch on up to 2048 training samples, `mean_abs_delta` and `grad_norm` (one value per
  layer, input side first: vanishing gradients show as the first layers' values falling
  behind, as in seed 001) and, for sigmoid/softmax outputs, `accuracy`; with validation,
  `val_loss` and `val_accuracy`/`val_r2`. `fastbp.plot_history(history, "history.png")`
  draws them (needs matplotlib: `pip install 'fastbp[plot]'`).
- During a run with the kernels, from the input check on, fastbp holds BLAS to one thread
  (threadpoolctl, a run-time dependency; `training.blas_for`): BLAS's threads spin for a while
  after a call, which slowed the start of the next epoch, and the batched kernels call BLAS
  from threads of their own. The NumPy reference keeps BLAS's threads.
"""
import contextlib
import hashlib
import os
import time
from typing import Optional, Tuple

import numpy as np

from . import backends, kernels, methods
from .checks import is_sparse
from .functions import accuracy, labels_of, mean_loss
from .io import ModelFileError, check_writable, hash_array
from .optimizers import RULES, Optimizer, make_optimizer, make_schedule
from .run import BACKENDS, RunConfig, RunState, save_checkpoint
from .threads import batch_chooser, blas_on_one_thread, chooser_for

__all__ = ["BACKENDS", "RunConfig", "RunState", "TrainingDiverged", "ResumeError", "train", "resume_run"]
DIAGNOSTIC_SAMPLES = 2048     # diagnostics use at most this many training samples, evenly spaced
MIN_SLICE = 512               # samples: per-sample SGD's slices without a progress bar
BATCH_SLICES = 8              # batched epochs' slices without a progress bar (the LoadChooser's looks),
BATCH_SLICE_WORK = 2 ** 26    # each of at least this many sample-weight products (a few ms: a look is 0.15)


class TrainingDiverged(FloatingPointError):
    """Training produced NaN or inf; the network keeps its last good weights, and the
    optimizer its last good state. ``history`` holds the epochs finished before, ``best``
    the weights of the best validation epoch (a Network.snapshot), if there was one."""

    def __init__(self, message, history, best=None):
        super().__init__(message)
        self.history, self.best = history, best


class ResumeError(ValueError):
    """A checkpoint that cannot continue with the data given."""


def fingerprint(*arrays):
    """A SHA-256 of arrays' shapes, dtypes and bytes (a sparse one's by its CSR arrays and
    shape): a checkpoint names its data by it."""
    h = hashlib.sha256()
    for a in arrays:
        if is_sparse(a):
            h.update(b"csr" + str(a.shape).encode())
            for part in (a.data, a.indices, a.indptr):
                hash_array(h, part)
        else:
            hash_array(h, a)
    return h.hexdigest()


def validation_size(m, fraction, labels=None):
    """How many of m samples split_validation holds out: round(fraction * m), or with
    labels the sum of each class's round(fraction * its count) (if that leaves at least
    one sample on each side). scikit-learn's messages, where its checks are the same."""
    if labels is not None:
        classes, counts = np.unique(labels, return_counts=True)
        if counts.min() < 2:
            raise ValueError("The least populated classes in y have only %d member, which is too few to hold "
                             "out a validation set stratified by class (validation_fraction, as scikit-learn's "
                             "early stopping): each class needs at least 2. Classes with too few members are: "
                             "%s" % (counts.min(), [str(c) for c in classes[counts < 2].tolist()]))
    n_val = int(round(fraction * m))
    if n_val < 1 or n_val >= m:
        raise ValueError("The validation set is too small: validation_fraction %g of %d samples leaves %d for "
                         "validation and %d for training; each needs at least one" % (fraction, m, n_val, m - n_val))
    if labels is None:
        return n_val
    stratified = int(sum(int(round(fraction * c)) for c in counts))
    return stratified if 1 <= stratified < m else n_val


def split_validation(m, fraction, rng, labels=None):
    """(train rows, validation rows): a random `fraction` of 0..m-1 for validation, at
    least one sample each side; per class (stratified) when labels are given."""
    n_val = validation_size(m, fraction, labels)
    if labels is None:
        val = rng.permutation(m)[:n_val]
    else:
        val = []
        for c in np.unique(labels):
            rows = rng.permutation(np.flatnonzero(labels == c))
            val.extend(rows[:int(round(fraction * rows.size))])
        val = np.array(val, dtype=np.int64)
        if val.size != n_val:
            val = rng.permutation(m)[:n_val]
    val = np.sort(val)
    train = np.setdiff1d(np.arange(m), val)
    return train, val


# ---------------------------------------------------------------- guard and diagnostics

class Rollback:
    """The parameters and the optimizer's state now, to come back to (and, given a run's
    state, its random generator, history, counters and schedule too)."""

    def __init__(self, net, optimizer, state=None):
        self.net, self.optimizer, self.state = net, optimizer, state
        self.parameters, self.t, self.scalars = net.snapshot(), optimizer.t, dict(optimizer.scalars)
        self.arrays = {p: a.copy() for p, a in optimizer.state.items()}
        if state is not None:
            self.rng = net.rng.bit_generator.state
            self.lengths = {k: len(v) for k, v in state.history.items() if isinstance(v, list)}
            self.counters, self.best = state.counters(), state.best
            self.schedule = state.schedule.get_state()

    def restore(self):
        self.net.restore(self.parameters)
        self.optimizer.t, self.optimizer.scalars = self.t, dict(self.scalars)
        for p, a in self.arrays.items():
            self.optimizer.state[p][...] = a
        if self.state is not None:
            self.net.rng.bit_generator.state = self.rng
            history = self.state.history
            for key in [k for k, v in history.items() if isinstance(v, list)]:
                if key in self.lengths:
                    del history[key][self.lengths[key]:]
                else:
                    del history[key]
            for key, value in self.counters.items():
                setattr(self.state, key, value)
            self.state.best = self.best
            self.state.schedule.set_state(self.schedule)


def guarded(net, optimizer, what, history, step, saved=None):
    """Run step() (which trains and returns a mean loss); if the loss or the parameters
    stop being finite, restore the parameters and the optimizer's state from before (or
    saved, a Rollback taken before) and raise TrainingDiverged."""
    saved = saved or Rollback(net, optimizer)
    mean_loss = step()
    if not (np.isfinite(mean_loss) and net.is_finite()):
        saved.restore()
        raise TrainingDiverged(
            "training diverged in %s (mean loss %r); the network keeps the weights from before "
            "it. Try a smaller lr, or clip." % (what, mean_loss), history)
    return mean_loss


def is_classifier(net):
    return net.output in ("softmax", "sigmoid")


def diagnose(net, X, T, backend):
    """Loss, accuracy, each layer's mean |error term| (by the network's propagate rule) and
    the norm of its true gradient, on (X, T): one forward and backward pass (two with
    propagate='error')."""
    A, D = net.backprop(X, T, net.propagate, backend)
    true_D = D if net.propagate == "delta" else net.backprop(X, T, "delta", backend)[1]
    dW, db = net.pass_gradients(X, A, true_D, backend)
    norms = [float(np.sqrt(np.sum(w * w) + (np.sum(b * b) if db is not None else 0.0)))
             for w, b in zip(dW, db if db is not None else [0.0] * len(dW))]
    out = {"loss": mean_loss(net.loss_name, A[-1], T),
           "mean_abs_delta": [float(np.mean(np.abs(d))) for d in D], "grad_norm": norms}
    if is_classifier(net):
        out["accuracy"] = accuracy(A[-1], labels_of(T))
    return out


def r2(T, O, sample_weight=None):
    """The coefficient of determination R^2 of outputs O for targets T, averaged over the
    output columns (a constant column counts 1 if predicted exactly, else 0); weighted
    sums of squares with sample_weight, as scikit-learn's r2_score."""
    s = np.ones(T.shape[0]) if sample_weight is None else sample_weight
    residual = (s[:, None] * (T - O) ** 2).sum(axis=0)
    total = (s[:, None] * (T - np.average(T, axis=0, weights=s)) ** 2).sum(axis=0)
    per_output = np.where(total > 0, 1.0 - residual / np.where(total > 0, total, 1.0),
                          (residual == 0).astype(float))
    return float(np.mean(per_output))


def evaluate(net, X, T, backend, sample_weight=None):
    """Loss and accuracy (sigmoid or softmax outputs) or R^2 (others) on (X, T), weighted
    by sample_weight if given."""
    O = net.outputs(X, backend)
    out = {"loss": mean_loss(net.loss_name, O, T, sample_weight)}
    if is_classifier(net):
        out["accuracy"] = accuracy(O, labels_of(T), sample_weight)
    else:
        out["r2"] = r2(T, O, sample_weight)
    return out


# ---------------------------------------------------------------- starting and resuming

def blas_for(backend):
    """Around a run: with the kernels, BLAS on one thread from the first check on. The
    batched kernels call it from threads of their own, and the per-sample kernel's
    threads share the cores with it; a BLAS pool's threads keep spinning for a while
    after a call (the input check's, an evaluation's), long enough to slow down the start of
    the next epoch. The NumPy reference keeps BLAS's threads. (backends.py: own_threads.)"""
    return blas_on_one_thread() if backends.get(backend).own_threads else contextlib.nullcontext()


def train(net, X, Y, config: RunConfig, validation=None, progress=None, callback=None,
          sample_weight=None, inputs_checked=False) -> dict:
    """Train net by backpropagation and gradient descent with the settings config (a
    RunConfig); returns the history (a dict of per-epoch lists). See Network.train.
    Everything is checked before anything changes: the network, its generator and a
    given Optimizer are untouched by a call that raises ValueError or TypeError.
    inputs_checked: X already went through checks.check_array in the network's dtype
    (the estimators check it before they build the network), so it is not read again."""
    if config.backend is None:
        config = config.replace(backend=net.backend)          # (the network's: chosen once, there)
    with blas_for(config.backend):
        return _train(net, X, Y, config, validation, progress, callback, sample_weight, inputs_checked)


def _train(net, X, Y, config, validation, progress, callback, sample_weight, inputs_checked=False):
    if not inputs_checked:
        X = net.check_inputs(X, backend=config.backend)
    T = net.check_targets(Y, X.shape[0])
    m = X.shape[0]
    S = net.check_sample_weight(sample_weight, m)
    if isinstance(config.optimizer, Optimizer):
        config.optimizer.check_fits(net)
    net.dropout_rates(config.dropout)                      # (raises for rates that do not fit net)
    entry = RULES[config.optimizer.rule if isinstance(config.optimizer, Optimizer) else config.optimizer]
    if entry.loss is not None and net.loss_name != entry.loss:
        raise ValueError("optimizer %r minimises the sum of squared errors: it needs loss=%r, not %r"
                         % (config.optimizer if isinstance(config.optimizer, str) else config.optimizer.rule,
                            entry.loss, net.loss_name))
    if entry.jacobian:
        methods.fits_in_memory(net.n_trainable)
    if config.input_noise and is_sparse(X):
        raise ValueError("input_noise needs dense X (noise would fill a sparse matrix)")
    check_progress(progress, callback)
    X_val = T_val = S_val = val_rows = None
    if validation is not None and config.validation_fraction is not None:
        raise ValueError("give validation=(X_val, Y_val) or validation_fraction, not both")
    if validation is not None:
        X_val, T_val, S_val = validation_set(net, validation)
    elif config.validation_fraction is not None:
        labels = labels_of(T) if is_classifier(net) else None
        trial = np.random.Generator(type(net.rng.bit_generator)())
        trial.bit_generator.state = net.rng.bit_generator.state     # drawn for real below
        trial_rows = split_validation(m, config.validation_fraction, trial, labels)[1]   # raises if it cannot
        if S is not None:
            held_out(X, T, trial_rows, S)                                # so does this
    if config.checkpoint:
        check_writable(config.checkpoint, "checkpoint")
    optimizer = make_optimizer(config.optimizer, config.lr).bind(net)    # every check passed: act
    if config.validation_fraction is not None:
        val_rows = split_validation(m, config.validation_fraction, net.rng, labels)[1]
    state = RunState(optimizer, make_schedule(config.schedule), val_rows=val_rows,
                     explicit_validation=validation is not None)
    if config.checkpoint:
        state.data_sha256 = fingerprint(*data_of(X, T, S))
        state.validation_sha256 = fingerprint(*data_of(X_val, T_val, S_val)) if X_val is not None else None
    return local_loop(net, (X, T, S), (X_val, T_val, S_val), config, state).run(progress, callback)


def data_of(X, T, S):
    """The arrays that name a data set in a checkpoint: X, T, and the weights if any (so
    that an unweighted set's SHA-256 is what it was before weights existed)."""
    return (X, T) if S is None else (X, T, S)


def resume_run(path, net, config, state, X, Y, validation=None, epochs: Optional[int] = None, progress=None,
               callback=None, checkpoint=None, sample_weight=None) -> Tuple["Network", dict]:  # noqa: F821
    """Continue the run read from the checkpoint at path (net, config, state:
    network.load_checkpoint's; fastbp.resume reads and continues it)."""
    with blas_for(config.backend):
        return _resume(path, net, config, state, X, Y, epochs, validation, progress, callback, checkpoint,
                       sample_weight)


def _resume(path, net, config, state, X, Y, epochs, validation, progress, callback, checkpoint, sample_weight):
    X = net.check_inputs(X)
    T = net.check_targets(Y, X.shape[0])
    S = net.check_sample_weight(sample_weight, X.shape[0])
    check_progress(progress, callback)
    if fingerprint(*data_of(X, T, S)) != state.data_sha256:
        raise ResumeError("%s was trained on other data than the X, Y (and sample_weight) given "
                          "(their SHA-256 differs); resume needs the same training set and "
                          "weights, in the same order" % path)
    config = config.replace(epochs=config.epochs if epochs is None else epochs, checkpoint=checkpoint or path)
    check_writable(config.checkpoint, "checkpoint")
    if state.stopped == "epochs":
        state.stopped = None                # more epochs may follow
    X_val = T_val = S_val = None
    if state.explicit_validation:
        if validation is None:
            raise ResumeError("%s was trained with an explicit validation set; pass it again "
                              "as validation=(X_val, Y_val)" % path)
        X_val, T_val, S_val = validation_set(net, validation)
        if (state.validation_sha256 is not None
                and fingerprint(*data_of(X_val, T_val, S_val)) != state.validation_sha256):
            raise ResumeError("%s was trained with another validation set than the one given "
                              "(their SHA-256 differs); resume needs the same one" % path)
    elif validation is not None:
        raise ResumeError("%s was trained %s; resume takes no validation=" % (
            path, "with validation_fraction %g" % config.validation_fraction
            if config.validation_fraction is not None else "without a validation set"))
    if state.val_rows is not None:
        check_validation_rows(path, state.val_rows, X.shape[0])
    return net, local_loop(net, (X, T, S), (X_val, T_val, S_val), config, state).run(progress, callback)


def check_validation_rows(path, rows, m):
    """A checkpoint's validation rows must be distinct, sorted rows of its m samples."""
    if not (0 < rows.size < m and rows.min() >= 0 and rows.max() < m and np.all(np.diff(rows) > 0)):
        raise ModelFileError("%s: inconsistent checkpoint: its validation rows are not distinct, "
                             "sorted rows of the %d samples it was trained on" % (path, m))


def held_out(X, T, val_rows, S=None):
    """(X_train, T_train, X_val, T_val): the rows not in val_rows, and those (with S, the
    sample weights: (X_train, T_train, S_train, X_val, T_val, S_val))."""
    train_rows = np.setdiff1d(np.arange(X.shape[0]), val_rows)
    if S is None:
        return X[train_rows], T[train_rows], X[val_rows], T[val_rows]
    if not (S[train_rows].sum() > 0 and S[val_rows].sum() > 0):
        raise ValueError("sample_weight: the %s rows' weights sum to 0; validation_fraction "
                         "needs weight on both sides" % ("training" if not S[train_rows].sum() > 0
                                                         else "validation"))
    return X[train_rows], T[train_rows], S[train_rows], X[val_rows], T[val_rows], S[val_rows]


def validation_set(net, validation):
    """(X_val, T_val, S_val) from validation=(X_val, Y_val) or (X_val, Y_val,
    sample_weight_val), checked (S_val None without weights)."""
    if not isinstance(validation, (tuple, list)) or len(validation) not in (2, 3):
        raise ValueError("validation must be a pair (X_val, Y_val) or a triple (X_val, Y_val, "
                         "sample_weight_val), got %s" % type(validation).__name__)
    X_val = net.check_inputs(validation[0], "X_val")
    T_val = net.check_targets(validation[1], X_val.shape[0], "Y_val")
    S_val = net.check_sample_weight(validation[2], X_val.shape[0], "sample_weight_val") \
        if len(validation) == 3 else None
    return X_val, T_val, S_val


def check_progress(progress, callback):
    if not (progress is None or isinstance(progress, (bool, np.bool_)) or callable(progress)):
        raise TypeError("progress must be True (a tqdm bar), False or None (none), or a "
                        "function progress(n_samples, mean_loss), got %r" % (progress,))
    if callback is not None and not callable(callback):
        raise TypeError("callback must be a function callback(net, history), got %r" % (callback,))


def _progress_bar(progress, total):
    """(the progress function, the bar to close or None) for train's progress argument."""
    if progress is True:
        from tqdm import tqdm
        bar = tqdm(total=total, unit="sample", unit_scale=True, dynamic_ncols=True)

        def update(n, loss):
            bar.update(n)
            bar.set_postfix(loss="%.4f" % loss, refresh=False)
        return update, bar
    return (None if progress is False else progress), None


# ---------------------------------------------------------------- the loop

class EpochPlan:
    """How a run's epochs are cut into compiled calls. A progress bar is fed after each
    slice of about 1% of an epoch, in whole batches. Per-sample SGD always runs in slices
    (at least MIN_SLICE samples without a bar), so that the ThreadChooser can time them;
    slices of whole blocks of samples give bit for bit the result of one call
    (kernels.BLOCK). Dense batched epochs run in about BATCH_SLICES slices of whole
    batches (fewer when an epoch is small: BATCH_SLICE_WORK), each on the threads the
    LoadChooser gives (the result is that of one call).
    Other epochs (sparse rows, the NumPy backend) are one call without a bar."""

    def __init__(self, net, m, batch_size, optimizer, config, progress=None, sparse=False):
        self.net, self.batch_size, self.optimizer, self.config, self.progress = (
            net, batch_size, optimizer, config, progress)
        slice_len = max(batch_size, (m // 100) // batch_size * batch_size)
        self.chooser, self.load, self.parallel = None, None, None
        per_sample = net.uses_per_sample_kernel(batch_size, optimizer, config.clip, config.backend, config.l1,
                                                config.max_norm, net.dropout_rates(config.dropout),
                                                config.input_noise)
        if per_sample and not sparse:
            slice_len = max(kernels.BLOCK, slice_len // kernels.BLOCK * kernels.BLOCK)
            slice_len = max(slice_len, MIN_SLICE) if progress is None else slice_len
            self.chooser = chooser_for(net.sizes, net.dtype)
        elif not per_sample and not sparse and backends.get(config.backend).own_threads \
                and optimizer.entry.step is None:
            self.load = batch_chooser()     # batched: threads from the load, slice by slice
            if self.load.fixed is None:     # (and one, until the parallel build pays)
                build = backends.NumbaBackend.build(net, "batch_epoch", optimizer.rule, config.max_norm,
                                                    net.dropout_rates(config.dropout), config.input_noise,
                                                    config.clip)
                self.parallel = ParallelBuild(net.dtype, config.epochs * m, build)
            if progress is None:
                rows = max(-(-m // BATCH_SLICES), -(-BATCH_SLICE_WORK // net.n_parameters[0]))
                slice_len = -(-rows // batch_size) * batch_size
        elif progress is None:
            slice_len = m
        self.slice_len = slice_len
        self.step = min(batch_size, m) * net.n_parameters[0]       # (a step's products: the LoadChooser's)

    def run(self, X, T, S, order, lr):
        """Train on X[order] (weighted by S, if not None) at learning rate lr; returns the
        summed loss (of weighted losses, with S)."""
        total, weight, chooser, config = 0.0, 0.0, self.chooser, self.config
        for first in range(0, order.size, self.slice_len):
            part = order[first:first + self.slice_len]
            threads = chooser.threads() if chooser else self.load.threads(self.step) if self.load else 1
            if self.parallel is not None:
                threads = self.parallel.threads(threads)
            began = time.perf_counter()
            total += self.net.train_epoch(X, T, part, self.batch_size, lr, config.l2, self.optimizer,
                                          config.clip, config.backend, threads, S, config.l1, config.max_norm,
                                          config.dropout, config.input_noise)
            if chooser:
                chooser.took(len(part), time.perf_counter() - began)
            if self.parallel is not None:
                self.parallel.took(threads, len(part), time.perf_counter() - began)
            weight += len(part) if S is None else float(S[part].sum())
            if self.progress is not None:
                self.progress(len(part), total / weight if weight > 0 else 0.0)
        return total


PARALLEL_COMPILE_SECONDS = 10.0   # what kernels.batch_epoch adds to a cold compile, about (asv README)


class ParallelBuild:
    """Whether a run's batched epochs may take the threads the load gives them yet.

    kernels.batch_epoch, their parallel build, adds about PARALLEL_COMPILE_SECONDS to a
    cold compile; batch_epoch_serial, which one thread runs, computes the same, bit for
    bit. Where batch_epoch has no code for the network's dtype (in the process or in
    Numba's cache), the run stays on one thread, and counts its one-thread seconds: those
    spent waiting for the build (by every run that used this cache: a count kept beside
    it), and those the rest of the run is expected to take (at the last slice's pace, all
    `samples` trained). Once the larger reaches PARALLEL_COMPILE_SECONDS, a child process
    compiles the build (backends.start_parallel_build) on a core the run leaves idle,
    while the run goes on on one thread; when the child is done the run takes the threads
    the load gives, the build loaded from the cache. So a short first fit starts no
    child, a long run starts one after a slice or two and takes more threads about that
    many seconds later, and short runs repeated start one once they have lost about its
    compile time (a child still compiling when the process ends finishes on its own).
    Where there can be no child, this process compiles the build at a call, which stops
    the run: then only once those seconds times the share that more threads save reach
    PARALLEL_COMPILE_SECONDS. A thread count the user fixed (FASTBP_THREADS) is used at
    once."""

    waited = {}                # build and dtype: one-thread seconds spent waiting (the count kept, and this process's)

    def __init__(self, dtype, samples, kernel=None):
        self.dtype, self.left, self.ready = np.dtype(dtype), samples, None
        self.pace, self.slices, self.unsaved = None, 0, 0.0   # one thread's seconds per sample, ...
        self.child, self.alone = None, False                    # the child compiling the build; none can
        self.kernel = kernels.batch_epoch if kernel is None else kernel      # (the run's build: kernels.build)
        self.key = self.dtype.name if self.kernel is kernels.batch_epoch else "%s-%s" % (
            self.kernel.py_func.__qualname__, self.dtype.name)

    def _count_file(self):
        directory = kernels.cache_dir(self.kernel)
        return os.path.join(directory, "fastbp-one-thread-seconds-%s" % self.key) if directory else None

    def threads(self, wanted):
        if wanted == 1 or self.ready:
            return wanted
        if self.ready is None:                        # (one look at the cache, for the run)
            self.ready = kernels.built_for(self.kernel, self.dtype)
            if self.key not in self.waited:
                self.waited[self.key] = _read_seconds(self._count_file())
        if self.ready:
            return wanted
        if self.child is not None:                    # the build, compiling in the child
            if self.child.poll() is None:
                return 1
            self.ready = True                         # (loaded from the cache; had the child failed, compiled here)
            return wanted
        expected = self.pace * self.left if self.pace is not None else 0.0
        seconds = max(self.waited[self.key], expected)           # on one thread: lost, or left
        if seconds >= PARALLEL_COMPILE_SECONDS and not self.alone:
            self.child = backends.start_parallel_build(self.dtype, self.kernel is not kernels.batch_epoch)
            self.alone = self.child is None
            if self.child is not None:
                return 1
        self.ready = self.alone and seconds * (1 - 1 / wanted) >= PARALLEL_COMPILE_SECONDS
        return wanted if self.ready else 1

    def took(self, threads, samples, seconds):
        self.left -= samples
        self.slices += 1
        if threads == 1 and self.ready is False and self.slices > 1:   # (a run's first slice may compile)
            self.pace = seconds / samples
            self.waited[self.key] += seconds
            self.unsaved += seconds
            if self.unsaved >= 0.5:                   # (the count kept: about every half second)
                _write_seconds(self._count_file(), self.waited[self.key])
                self.unsaved = 0.0


def _read_seconds(path):
    """The number in the file at path; 0 where there is none or it is not one."""
    try:
        with open(path) as f:
            value = float(f.read(64))
        return value if 0 <= value < 1e9 else 0.0
    except (OSError, TypeError, ValueError):
        return 0.0


def _write_seconds(path, seconds):
    """Write the number to the file at path, atomically; nothing where it cannot."""
    if path is None:
        return
    part = "%s.%d" % (path, os.getpid())
    try:
        with open(part, "w") as f:
            f.write("%.3f" % seconds)
        os.replace(part, path)
    except OSError:
        pass


class LocalEpochs:
    """A run's step in this process: one epoch over (X, T), weighted by S, cut into calls
    of the backend as EpochPlan says (Loop's step; distributed.Rounds is the other)."""

    def __init__(self, net, X, T, S, config, optimizer):
        self.net, self.X, self.T, self.S, self.config, self.optimizer = net, X, T, S, config, optimizer
        self.m = X.shape[0]
        self.total_weight = self.m if S is None else float(S.sum())
        self.batch_size = self.m if config.batch_size is None else min(config.batch_size, self.m)
        self.plan = None

    def begin(self, progress):
        self.plan = EpochPlan(self.net, self.m, self.batch_size, self.optimizer, self.config, progress,
                              is_sparse(self.X))

    def epochs(self, left):
        return 1

    def what(self, first, n):
        return "epoch %d" % (first + 1)

    def train(self, lrs):
        (lr,) = lrs
        order = self.net.rng.permutation(self.m) if self.config.shuffle else np.arange(self.m)
        start = time.perf_counter()
        mean_loss = self.plan.run(self.X, self.T, self.S, order, lr) / self.total_weight
        return [mean_loss], [time.perf_counter() - start]

    def finish(self, history):
        pass


def local_loop(net, data, validation, config, state):
    """The Loop of a run in this process. data: (X, T, S), S the sample weights or None;
    validation: (X_val, T_val, S_val), all None without an explicit validation set (the
    rows of a validation_fraction, state.val_rows, are held out of data here)."""
    (X, T, S), (X_val, T_val, S_val) = data, validation
    if state.val_rows is not None and S is None:
        X, T, X_val, T_val = held_out(X, T, state.val_rows)
    elif state.val_rows is not None:
        X, T, S, X_val, T_val, S_val = held_out(X, T, state.val_rows, S)
    diagnostic = None
    if config.diagnostics:
        rows = np.unique(np.linspace(0, X.shape[0] - 1, min(X.shape[0], DIAGNOSTIC_SAMPLES)).astype(np.int64))
        diagnostic = X[rows], T[rows]
    return Loop(net, config, state, LocalEpochs(net, X, T, S, config, state.optimizer),
                (X_val, T_val, S_val) if X_val is not None else None, diagnostic)


def keyboard_interrupt(error):
    """The Ctrl-C that error is, or that is behind it, as a KeyboardInterrupt; None if
    there is none. Ctrl-C during a kernel's first call in a process (Numba compiling it
    or loading it from the cache: an evaluation's predict after the first epoch) comes
    out of Numba's dispatcher as a SystemError caused by the KeyboardInterrupt."""
    seen = error
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return error if seen is error else KeyboardInterrupt()
        seen = seen.__cause__ or seen.__context__
    return None


class Loop:
    """The epoch loop of every run, in this process or on Dask: around each step, the
    divergence guard, the history, validation and the stopping rules (record), Ctrl-C,
    the callback and the checkpoints. What a step trains is its step's, an object with

    - m: the number of training rows;
    - begin(progress): called once, with the progress function (or None);
    - epochs(left): how many epochs the next step trains, at most left;
    - what(first, n): the step's name in a divergence message ("epoch 3");
    - train(lrs): train len(lrs) epochs at those learning rates, counted from
      state.epoch; returns each epoch's mean loss and seconds;
    - finish(history): add its own entries to the history at the end of the run.

    validation: (X_val, T_val, S_val) or None; diagnostic: the (X, T) rows that
    diagnostics are computed on after each step, or None."""

    def __init__(self, net, config, state, step, validation=None, diagnostic=None):
        self.net, self.config, self.state, self.step = net, config, state, step
        self.validation, self.diagnostic = validation, diagnostic

    def run(self, progress, callback):
        progress, bar = _progress_bar(progress, (self.config.epochs - self.state.epoch) * self.step.m)
        try:
            self.step.begin(progress)
            return self._run(callback)
        finally:
            if bar is not None:
                bar.close()

    def _run(self, callback):
        net, config, state = self.net, self.config, self.state
        history, optimizer = state.history, state.optimizer
        while state.epoch < config.epochs and state.stopped is None:
            n = self.step.epochs(config.epochs - state.epoch)
            saved = Rollback(net, optimizer, state)     # the last finished step's
            try:
                self._step(n, saved)
            except TrainingDiverged as error:
                error.best = state.best
                error.history["train_samples"] = self.step.m
                raise
            except (KeyboardInterrupt, SystemError) as error:     # Ctrl-C: back to the last finished step
                stop = keyboard_interrupt(error)
                if stop is None:
                    raise
                saved.restore()
                self._interrupted(stop)
                raise stop from (None if stop is error else error)
            state.epoch += 1
            try:
                if callback is not None:
                    callback(net, history)
                every = config.checkpoint_every
                if config.checkpoint and (state.epoch // every > (state.epoch - n) // every
                                          or state.epoch == config.epochs or state.stopped):
                    save_checkpoint(config.checkpoint, net, config, state)
            except (KeyboardInterrupt, SystemError) as error:     # (the step is finished: kept)
                stop = keyboard_interrupt(error)
                if stop is None:
                    raise
                self._interrupted(stop)
                raise stop from (None if stop is error else error)
        if state.stopped is None:
            state.stopped = "epochs"
        if state.best is not None and state.best_epoch is not None:
            net.restore(state.best)                  # the best validation epoch's weights
        history["stopped"] = state.stopped
        history["best_epoch"] = state.best_epoch
        history["train_samples"] = self.step.m
        self.step.finish(history)
        return history

    def _interrupted(self, stop):
        """Attach the run's history (as of its last finished step), state, config and
        network to a KeyboardInterrupt, as stop.history, .state, .config and .net (what a
        checkpoint of it needs)."""
        self.state.history["train_samples"] = self.step.m
        stop.history, stop.state, stop.config, stop.net = self.state.history, self.state, self.config, self.net

    def _step(self, n, saved):
        """Train n epochs from state.epoch (counted from 0) and record them (saved: the
        Rollback to their start); state.epoch is left at the last of them."""
        net, state, history = self.net, self.state, self.state.history
        optimizer, first = state.optimizer, state.epoch
        lrs = [optimizer.lr * state.schedule.factor(first + i) for i in range(n)]
        trained = {}

        def step():
            trained["losses"], trained["seconds"] = self.step.train(lrs)
            bad = [loss for loss in trained["losses"] if not np.isfinite(loss)]
            return bad[0] if bad else trained["losses"][-1]

        mean_loss = guarded(net, optimizer, self.step.what(first, n), history, step, saved)
        history["seconds"] += trained["seconds"]
        history["loss"] += trained["losses"]
        history["lr"] += lrs
        for key in optimizer.entry.reports:             # (a method's scalars: mu, gamma, ...)
            history.setdefault(key, []).append(optimizer.scalars[key])
        state.epoch = first + n - 1
        record(net, self.config, state, mean_loss, self.validation, self.diagnostic)
        if optimizer.entry.stop is not None and state.stopped is None:
            state.stopped = optimizer.entry.stop(optimizer)


def record(net, config, state, mean_loss, validation=None, diagnostic=None):
    """After an epoch whose mean training loss was mean_loss: diagnostics on the rows
    diagnostic=(X, T), validation on validation=(X_val, T_val[, S_val]), the schedule, the best
    weights and the stopping rules, into state (its epoch counter is the caller's)."""
    history = state.history
    if diagnostic is not None:
        d = diagnose(net, *diagnostic, config.backend)
        for key in ("accuracy", "mean_abs_delta", "grad_norm"):
            if key in d:
                history.setdefault(key, []).append(d[key])
    monitored = mean_loss
    if validation is not None:
        v = evaluate(net, validation[0], validation[1], config.backend, *validation[2:])
        for key, value in v.items():
            history.setdefault("val_" + key, []).append(value)
        monitored = v["loss"]
    state.schedule.observe(monitored)
    if monitored < state.best_loss - config.tol:
        state.best_loss, state.best_epoch, state.bad_epochs = monitored, state.epoch + 1, 0
        if validation is not None:
            state.best = net.snapshot()
    else:
        state.bad_epochs += 1
        if config.n_iter_no_change is not None and state.bad_epochs >= config.n_iter_no_change:
            state.stopped = "no improvement"
    if config.target_loss is not None and mean_loss < config.target_loss:
        state.stopped = "target loss"
