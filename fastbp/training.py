"""The training loop: epochs of gradient descent over a Network, with the optimizer and
its schedule, validation, early stopping, a target loss, checkpoints and resume, a
divergence guard and per-epoch diagnostics. ``Network.train`` is this module's ``train``.

One epoch is one compiled call (``kernels.sgd_epoch`` for plain per-sample SGD, else
``kernels.batch_epoch``) or the NumPy reference's ``train_epoch``; everything here runs
between epochs, in Python, and is not counted in an epoch's seconds.
"""
import contextlib
import hashlib
import time

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from . import kernels, reference
from .checks import choice, flag, number, positive_int
from .functions import LOSS_CODES, LOSSES
from .optimizers import N_STATE, RULE_CODES, RULES, Optimizer, make_optimizer, make_schedule
from .threads import chooser_for

BACKENDS = ("numba", "numpy")
DIAGNOSTIC_SAMPLES = 2048     # diagnostics use at most this many training samples, evenly spaced
MIN_SLICE = 512               # samples: per-sample SGD's slices without a progress bar


class TrainingDiverged(FloatingPointError):
    """Training produced NaN or inf; the network keeps its last good weights, and the
    optimizer its last good state. ``history`` holds the epochs finished before."""

    def __init__(self, message, history):
        super().__init__(message)
        self.history = history


class ResumeError(ValueError):
    """A checkpoint that cannot continue with the data given."""


def fingerprint(*arrays):
    """A SHA-256 of arrays' shapes, dtypes and bytes: a checkpoint names its data by it."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def split_validation(m, fraction, rng, labels=None):
    """(train rows, validation rows): a random `fraction` of 0..m-1 for validation, at
    least one sample each side; per class (stratified) when labels are given."""
    n_val = int(round(fraction * m))
    if n_val < 1 or n_val >= m:
        raise ValueError("validation_fraction %g of %d samples leaves %d for validation and %d "
                         "for training; each needs at least one" % (fraction, m, n_val, m - n_val))
    if labels is None:
        val = rng.permutation(m)[:n_val]
    else:
        val = []
        for c in np.unique(labels):
            rows = rng.permutation(np.flatnonzero(labels == c))
            val.extend(rows[:int(round(fraction * rows.size))])
        val = np.array(val, dtype=np.int64)
        if val.size < 1 or val.size >= m:
            val = rng.permutation(m)[:n_val]
    val = np.sort(val)
    train = np.setdiff1d(np.arange(m), val)
    return train, val


# ---------------------------------------------------------------- one epoch

def per_sample_kernel(batch_size, optimizer, clip, backend):
    """Whether these settings train with the blocked per-sample kernel (kernels.sgd_epoch):
    plain SGD, one sample a step, no clipping; every other case runs batch_epoch."""
    return backend == "numba" and batch_size == 1 and optimizer.rule == "sgd" and not clip


def run_epoch(net, X, T, order, batch_size, lr, l2, optimizer, clip, backend, threads=1):
    """Train net on the samples X[order]; returns their summed loss (each taken before its
    step). Dispatches to the NumPy reference or to the kernels; threads is the per-sample
    kernel's thread count (see threads.py)."""
    if backend == "numpy":
        weights, biases = net._params()
        state = _reference_state(net, optimizer) if optimizer.state["w"].shape[0] else None
        with np.errstate(over="ignore", invalid="ignore"):   # divergence is checked after
            return reference.train_epoch(weights, biases, net.activations, net.loss_name, X, T, order,
                                         batch_size, lr, l2, net.propagate, optimizer, state, clip)
    kind = net.dtype.type
    args = net._layout() + (LOSS_CODES[net.loss_name], net.propagate == "error", net.bias, X, T)
    if per_sample_kernel(batch_size, optimizer, clip, backend):
        if threads > 1:
            numba.set_num_threads(threads)
        with kernels.first_call(kernels.sgd_epoch, "per-sample SGD kernel"):
            total = kernels.sgd_epoch(*args, order, kind(lr), kind(1.0 - lr * l2), net._eps(),
                                      np.finfo(net.dtype).tiny, threads)
        optimizer.t += order.size
        return total
    hyper = optimizer.hyper(lr, l2, clip, net.dtype)
    with kernels.first_call(kernels.batch_epoch, "mini-batch kernel"):
        total = kernels.batch_epoch(*args, order, batch_size, RULE_CODES[optimizer.rule], hyper,
                                    optimizer.state["w"], optimizer.state["b"], optimizer.t, net._eps())
    optimizer.t += -(-order.size // batch_size)
    return total


def _reference_state(net, optimizer):
    """The optimizer's state as the reference takes it: for each parameter (weights, then
    biases), the list of its state arrays, as views."""
    k = optimizer.state["w"].shape[0]
    per_w = [[net._layer_view(optimizer.state["w"][i], "w", l) for i in range(k)]
             for l in range(net.n_layers)]
    per_b = [[net._layer_view(optimizer.state["b"][i], "b", l) for i in range(k)]
             for l in range(net.n_layers)] if net.bias else []
    return per_w + per_b


def guarded(net, optimizer, what, history, step):
    """Run step() (which trains and returns a mean loss); if the loss or the parameters
    stop being finite, restore the parameters and the optimizer's state from before and
    raise TrainingDiverged."""
    saved = net._w.copy(), net._b.copy(), optimizer.t, \
        {p: s.copy() for p, s in optimizer.state.items()}
    mean_loss = step()
    if not (np.isfinite(mean_loss) and np.isfinite(net._w).all() and np.isfinite(net._b).all()):
        net._w[...], net._b[...], optimizer.t, state = saved
        for p in state:
            optimizer.state[p][...] = state[p]
        raise TrainingDiverged(
            "training diverged in %s (mean loss %r); the network keeps the weights from before "
            "it. Try a smaller lr, or clip." % (what, mean_loss), history)
    return mean_loss


# ---------------------------------------------------------------- diagnostics

def is_classifier(net):
    return net.output in ("softmax", "sigmoid")


def accuracy(net, O, T):
    """Fraction of samples classified right: argmax over several outputs, 0.5 for one."""
    if O.shape[1] == 1:
        return float(np.mean((O[:, 0] > 0.5) == (T[:, 0] > 0.5)))
    return float(np.mean(O.argmax(axis=1) == T.argmax(axis=1)))


def diagnose(net, X, T, backend):
    """Loss, accuracy, each layer's mean |error term| (by the network's propagate rule) and
    the norm of its true gradient, on (X, T): one forward and backward pass (two with
    propagate='error')."""
    A, D = net._backprop(X, T, net.propagate, backend)
    true_D = D if net.propagate == "delta" else net._backprop(X, T, "delta", backend)[1]
    dW, db = net._gradients(X, A, true_D, backend)
    norms = [float(np.sqrt(np.sum(w * w) + (np.sum(b * b) if db is not None else 0.0)))
             for w, b in zip(dW, db if db is not None else [0.0] * len(dW))]
    out = {"loss": float(np.mean(LOSSES[net.loss_name].per_sample(A[-1], T))),
           "mean_abs_delta": [float(np.mean(np.abs(d))) for d in D], "grad_norm": norms}
    if is_classifier(net):
        out["accuracy"] = accuracy(net, A[-1], T)
    return out


def r2(T, O):
    """The coefficient of determination R^2 of outputs O for targets T, averaged over the
    output columns (a constant column counts 1 if predicted exactly, else 0)."""
    residual = ((T - O) ** 2).sum(axis=0)
    total = ((T - T.mean(axis=0)) ** 2).sum(axis=0)
    per_output = np.where(total > 0, 1.0 - residual / np.where(total > 0, total, 1.0),
                          (residual == 0).astype(float))
    return float(np.mean(per_output))


def evaluate(net, X, T, backend):
    """Loss and accuracy (sigmoid or softmax outputs) or R^2 (others) on (X, T)."""
    O = net._forward(X, backend)[-1]
    out = {"loss": float(np.mean(LOSSES[net.loss_name].per_sample(O, T)))}
    if is_classifier(net):
        out["accuracy"] = accuracy(net, O, T)
    else:
        out["r2"] = r2(T, O)
    return out


# ---------------------------------------------------------------- the loop

RUN_KEYS = ("epochs", "batch_size", "shuffle", "l2", "clip", "n_iter_no_change", "tol",
            "target_loss", "diagnostics", "backend", "checkpoint_every")
STOPPED = (None, "epochs", "no improvement", "target loss")


def run_settings(epochs=1, batch_size=1, shuffle=True, l2=0.0, clip=None, n_iter_no_change=None,
                 tol=1e-4, target_loss=None, diagnostics=True, backend="numba", checkpoint_every=1):
    """The run's settings (RUN_KEYS), each checked: from train's arguments, and from a
    checkpoint's description when it is read back."""
    return {
        "epochs": positive_int("epochs", epochs, minimum=0),
        "batch_size": None if batch_size is None else positive_int("batch_size", batch_size),
        "shuffle": flag("shuffle", shuffle),
        "l2": number("l2", l2),
        "clip": None if clip is None else number("clip", clip, low_open=True),
        "n_iter_no_change": None if n_iter_no_change is None else positive_int("n_iter_no_change", n_iter_no_change),
        "tol": number("tol", tol),
        "target_loss": None if target_loss is None else number("target_loss", target_loss),
        "diagnostics": flag("diagnostics", diagnostics),
        "backend": choice("backend", backend, BACKENDS),
        "checkpoint_every": positive_int("checkpoint_every", checkpoint_every),
    }


def train(net, X, Y, epochs=1, lr=None, batch_size=1, shuffle=True, l2=0.0, optimizer="sgd",
          schedule=None, clip=None, validation=None, validation_fraction=None,
          n_iter_no_change=None, tol=1e-4, target_loss=None, diagnostics=True,
          checkpoint=None, checkpoint_every=1, backend="numba", progress=None, callback=None):
    """Train net by backpropagation and gradient descent; returns the history (a dict of
    per-epoch lists). See Network.train for the parameters. Every argument is checked
    before anything changes: the network, its generator and a given Optimizer are
    untouched by a call that raises ValueError or TypeError."""
    X = net._inputs(X)
    T = net._targets(Y, X.shape[0])
    m = X.shape[0]
    run = run_settings(epochs, batch_size, shuffle, l2, clip, n_iter_no_change, tol, target_loss,
                       diagnostics, backend, checkpoint_every)
    lr = None if lr is None else number("lr", lr, low_open=True)
    if isinstance(optimizer, Optimizer):
        optimizer.check_fits(net)
    schedule = make_schedule(schedule)
    check_progress(progress, callback)
    X_val = T_val = val_rows = None
    if validation is not None and validation_fraction is not None:
        raise ValueError("give validation=(X_val, Y_val) or validation_fraction, not both")
    if validation is not None:
        X_val, T_val = validation_set(net, validation)
    elif validation_fraction is not None:
        fraction = number("validation_fraction", validation_fraction, 0.0, 1.0, low_open=True)
        labels = T.argmax(axis=1) if is_classifier(net) and T.shape[1] > 1 else None
        rng = np.random.Generator(type(net._rng.bit_generator)())
        rng.bit_generator.state = net._rng.bit_generator.state    # drawn for real below
        split_validation(m, fraction, rng, labels)                 # raises if it cannot split
    optimizer = make_optimizer(optimizer, lr).bind(net)           # every check passed: act
    if validation_fraction is not None:
        val_rows = split_validation(m, fraction, net._rng, labels)[1]
    state = {"epoch": 0, "best_loss": float("inf"), "best_epoch": None, "bad_epochs": 0,
             "stopped": None}
    history = {"loss": [], "seconds": [], "lr": []}
    loop = Loop(net, X, T, X_val, T_val, val_rows, run, optimizer, schedule, state, history,
                checkpoint, fingerprint(X, T) if checkpoint else None, validation_fraction,
                validation_sha256=fingerprint(X_val, T_val) if checkpoint and X_val is not None else None)
    return loop.run(progress, callback)


def validation_set(net, validation):
    """(X_val, T_val) from validation=(X_val, Y_val), checked."""
    if not isinstance(validation, (tuple, list)) or len(validation) != 2:
        raise ValueError("validation must be a pair (X_val, Y_val), got %s" % type(validation).__name__)
    X_val = net._inputs(validation[0], "X_val")
    return X_val, net._targets(validation[1], X_val.shape[0], "Y_val")


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


class Loop:
    """The state of one training run between epochs: what a checkpoint saves."""

    def __init__(self, net, X, T, X_val, T_val, val_rows, run, optimizer, schedule, state,
                 history, checkpoint, data_sha256, validation_fraction, best=None,
                 validation_sha256=None):
        self.validation_sha256 = validation_sha256
        self.net, self.optimizer, self.schedule = net, optimizer, schedule
        self.run_settings, self.state, self.history = run, state, history
        self.checkpoint, self.data_sha256 = checkpoint, data_sha256
        self.validation_fraction, self.val_rows = validation_fraction, val_rows
        if val_rows is not None:
            train_rows = np.setdiff1d(np.arange(X.shape[0]), val_rows)
            X, T, X_val, T_val = X[train_rows], T[train_rows], X[val_rows], T[val_rows]
        self.X, self.T, self.X_val, self.T_val = X, T, X_val, T_val
        self.has_validation = X_val is not None
        self.best = best                 # (w, b) of the best epoch, when validation is used
        m = X.shape[0]
        self.batch_size = m if run["batch_size"] is None else min(run["batch_size"], m)
        self.diagnostic_rows = np.unique(np.linspace(0, m - 1, min(m, DIAGNOSTIC_SAMPLES)).astype(np.int64))

    def run(self, progress, callback):
        m = self.X.shape[0]
        progress, bar = _progress_bar(progress, (self.run_settings["epochs"] - self.state["epoch"]) * m)
        try:
            return self._run(progress, callback)
        finally:
            if bar is not None:
                bar.close()

    def _run(self, progress, callback):
        net, run, state, history = self.net, self.run_settings, self.state, self.history
        m = self.X.shape[0]
        bs = self.batch_size
        # A progress bar is fed after each slice of about 1% of an epoch, in whole batches.
        # Per-sample SGD always runs in slices (at least MIN_SLICE samples without a bar),
        # so that the ThreadChooser can time them; slices of whole blocks of samples give
        # bit for bit the result of one call (kernels.BLOCK).
        slice_len = max(bs, (m // 100) // bs * bs)
        chooser = None
        if self._per_sample():
            slice_len = max(kernels.BLOCK, slice_len // kernels.BLOCK * kernels.BLOCK)
            slice_len = max(slice_len, MIN_SLICE) if progress is None else slice_len
            chooser = chooser_for(net.sizes, net.dtype)
        elif progress is None:
            slice_len = m
        while state["epoch"] < run["epochs"] and state["stopped"] is None:
            epoch = state["epoch"]
            lr = self.optimizer.lr * self.schedule.factor(epoch)
            order = net._rng.permutation(m) if run["shuffle"] else np.arange(m)
            start = time.perf_counter()

            def one_epoch(order=order, lr=lr):          # (this epoch's, bound now)
                total = 0.0
                for first in range(0, m, slice_len):
                    part = order[first:first + slice_len]
                    threads = chooser.threads() if chooser else 1
                    began = time.perf_counter()
                    total += run_epoch(net, self.X, self.T, part, bs, lr, run["l2"], self.optimizer,
                                       run["clip"], run["backend"], threads)
                    if chooser:
                        chooser.took(len(part), time.perf_counter() - began)
                    if progress is not None:
                        progress(len(part), total / (first + len(part)))
                return total / m

            mean_loss = guarded(net, self.optimizer, "epoch %d" % (epoch + 1), history, one_epoch)
            history["seconds"].append(time.perf_counter() - start)
            history["loss"].append(mean_loss)
            history["lr"].append(lr)
            with self._between_epochs():
                self._record(mean_loss)
                state["epoch"] += 1
                if callback is not None:
                    callback(net, history)
            if self.checkpoint and (state["epoch"] % run["checkpoint_every"] == 0
                                    or state["epoch"] == run["epochs"] or state["stopped"]):
                self.save(self.checkpoint)
        if state["stopped"] is None:
            state["stopped"] = "epochs"
        if self.best is not None and state["best_epoch"] is not None:
            net._w[...], net._b[...] = self.best       # the best validation epoch's weights
        history["stopped"] = state["stopped"]
        history["best_epoch"] = state["best_epoch"]
        history["train_samples"] = m
        return history

    def _between_epochs(self):
        """Around the work between epochs: BLAS on one thread when the epochs run the
        per-sample kernel. Its OpenMP threads and BLAS's threads share the cores, and BLAS's
        stay spinning for about 0.1 s after a call: long enough to halve the speed of the
        next epoch's start (of a whole short epoch)."""
        return threadpool_limits(1, user_api="blas") if self._per_sample() else contextlib.nullcontext()

    def _per_sample(self):
        return per_sample_kernel(self.batch_size, self.optimizer, self.run_settings["clip"],
                                 self.run_settings["backend"])

    def _record(self, mean_loss):
        """Diagnostics, validation, the schedule and the stopping rules, after an epoch."""
        net, run, state, history = self.net, self.run_settings, self.state, self.history
        if run["diagnostics"]:
            d = diagnose(net, self.X[self.diagnostic_rows], self.T[self.diagnostic_rows], run["backend"])
            for key in ("accuracy", "mean_abs_delta", "grad_norm"):
                if key in d:
                    history.setdefault(key, []).append(d[key])
        monitored = mean_loss
        if self.has_validation:
            v = evaluate(net, self.X_val, self.T_val, run["backend"])
            for key, value in v.items():
                history.setdefault("val_" + key, []).append(value)
            monitored = v["loss"]
        self.schedule.observe(monitored)
        if monitored < state["best_loss"] - run["tol"]:
            state["best_loss"], state["best_epoch"], state["bad_epochs"] = monitored, state["epoch"] + 1, 0
            if self.has_validation:
                self.best = net._w.copy(), net._b.copy()
        else:
            state["bad_epochs"] += 1
            if run["n_iter_no_change"] is not None and state["bad_epochs"] >= run["n_iter_no_change"]:
                state["stopped"] = "no improvement"
        if run["target_loss"] is not None and mean_loss < run["target_loss"]:
            state["stopped"] = "target loss"

    # ------------------------------------------------------------ checkpoints
    def save(self, path):
        from .io import save_checkpoint
        save_checkpoint(self, path)

    def describe(self):
        """The JSON-able part of a checkpoint (io.save_checkpoint adds the arrays)."""
        return {"run": self.run_settings, "state": self.state, "history": self.history,
                "optimizer": self.optimizer.settings(), "optimizer_t": self.optimizer.t,
                "schedule": [self.schedule.name, self.schedule.settings()], "schedule_state": self.schedule.get_state(),
                "data_sha256": self.data_sha256, "validation_fraction": self.validation_fraction,
                "explicit_validation": self.has_validation and self.val_rows is None,
                "validation_sha256": self.validation_sha256}


def checkpoint_arrays(description, n_w, n_b, dtype):
    """{member: (shape, dtype)} of the arrays a checkpoint with this training description
    holds besides the network's (io checks the file's members against it before reading
    any): the optimizer's state, the best weights (with validation, once an epoch was the
    best) and the validation rows (a vector, for validation_fraction)."""
    k = N_STATE[choice("optimizer", description["optimizer"]["rule"], RULES)]
    out = {"opt_w": ((k, n_w), dtype), "opt_b": ((k, n_b), dtype)}
    fraction, explicit = description["validation_fraction"], description["explicit_validation"]
    if (fraction is not None or explicit is True) and description["state"]["best_epoch"] is not None:
        out.update(best_w=((n_w,), dtype), best_b=((n_b,), dtype))
    if fraction is not None:
        out["val_rows"] = (None, np.int64)
    return out


def _exact_keys(what, d, keys):
    if not isinstance(d, dict) or set(d) != set(keys):
        raise ValueError("%s must hold exactly %s, got %r" % (what, ", ".join(sorted(keys)),
                                                              sorted(d) if isinstance(d, dict) else d))
    return d


def restore(description, net, arrays):
    """A checkpoint's training description (Loop.describe) made live again, every field
    checked as train checks its arguments: a dict of run, optimizer (bound to net, its
    state loaded), schedule, state, history and the data's fingerprints."""
    keys = ("run", "state", "history", "optimizer", "optimizer_t", "schedule", "schedule_state",
            "data_sha256", "validation_fraction", "explicit_validation", "validation_sha256")
    d = dict(description) if isinstance(description, dict) else description
    if isinstance(d, dict):
        d.setdefault("validation_sha256", None)            # (fastbp 0.1.0's checkpoints)
    _exact_keys("the training description", d, keys)
    run = run_settings(**_exact_keys("run", d["run"], RUN_KEYS))
    settings = _exact_keys("optimizer", d["optimizer"], Optimizer().settings())
    optimizer = Optimizer(**settings).bind(net)
    optimizer.state["w"][...], optimizer.state["b"][...] = arrays["opt_w"], arrays["opt_b"]
    for p in ("w", "b"):
        if not np.isfinite(optimizer.state[p]).all():
            raise ValueError("the optimizer's state holds NaN or inf")
    optimizer.t = positive_int("optimizer_t", d["optimizer_t"], minimum=0)
    if not isinstance(d["schedule"], list) or len(d["schedule"]) != 2 or not isinstance(d["schedule"][1], dict):
        raise ValueError("schedule must be [name, {settings}], got %r" % (d["schedule"],))
    schedule = make_schedule(tuple(d["schedule"]))
    schedule.set_state(d["schedule_state"])
    state = _exact_keys("state", d["state"], ("epoch", "best_loss", "best_epoch", "bad_epochs", "stopped"))
    epoch = positive_int("state epoch", state["epoch"], minimum=0)
    if not (isinstance(state["best_loss"], (int, float)) and not isinstance(state["best_loss"], bool)
            and not np.isnan(state["best_loss"])):
        raise ValueError("state best_loss must be a number, got %r" % (state["best_loss"],))
    if state["best_epoch"] is not None and positive_int("state best_epoch", state["best_epoch"]) > epoch:
        raise ValueError("state best_epoch %r is after the epochs done (%d)" % (state["best_epoch"], epoch))
    if positive_int("state bad_epochs", state["bad_epochs"], minimum=0) > epoch:
        raise ValueError("state bad_epochs %r exceeds the epochs done (%d)" % (state["bad_epochs"], epoch))
    choice("state stopped", state["stopped"], STOPPED)
    history = d["history"]
    if not isinstance(history, dict) or not {"loss", "seconds", "lr"} <= set(history):
        raise ValueError("history must hold loss, seconds and lr")
    for key, values in history.items():
        if key in ("stopped", "best_epoch", "train_samples"):
            continue
        if not isinstance(values, list) or len(values) != epoch:
            raise ValueError("history %r must list one value per epoch done (%d)" % (key, epoch))
    for key in ("loss", "seconds", "lr"):
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in history[key]):
            raise ValueError("history %r must hold numbers" % key)
    for key in ("data_sha256", "validation_sha256"):
        value = d[key]
        if value is not None and not (isinstance(value, str) and len(value) == 64
                                      and all(c in "0123456789abcdef" for c in value)):
            raise ValueError("%s must be a SHA-256 in hex, got %r" % (key, value))
    if d["data_sha256"] is None:
        raise ValueError("data_sha256 is missing")
    fraction = d["validation_fraction"]
    if fraction is not None:
        number("validation_fraction", fraction, 0.0, 1.0, low_open=True)
    explicit = flag("explicit_validation", d["explicit_validation"])
    if explicit and fraction is not None:
        raise ValueError("explicit_validation and validation_fraction are both set")
    best = (arrays["best_w"], arrays["best_b"]) if "best_w" in arrays else None
    return {"run": run, "optimizer": optimizer, "schedule": schedule, "state": state,
            "history": history, "data_sha256": d["data_sha256"], "validation_fraction": fraction,
            "explicit_validation": explicit, "validation_sha256": d["validation_sha256"],
            "best": best, "val_rows": arrays.get("val_rows")}


def resume(path, X, Y, validation=None, epochs=None, progress=None, callback=None, checkpoint=None):
    """Continue the run saved in the checkpoint at path, on the same training data (X, Y)
    (and validation set, if the run had one given explicitly): it ends with the weights an
    uninterrupted run would have. epochs, if given, changes the total number of epochs.
    Checkpoints go on being written to path (or to checkpoint). Returns (net, history).
    A checkpoint is never changed by a call that raises before training."""
    from .io import load_checkpoint
    net, r, arrays = load_checkpoint(path)
    X = net._inputs(X)
    T = net._targets(Y, X.shape[0])
    check_progress(progress, callback)
    if fingerprint(X, T) != r["data_sha256"]:
        raise ResumeError("%s was trained on other data than the X, Y given (their SHA-256 "
                          "differs); resume needs the same training set, in the same order" % path)
    run, state = r["run"], r["state"]
    if epochs is not None:
        run["epochs"] = positive_int("epochs", epochs, minimum=0)
    if state["stopped"] == "epochs":
        state["stopped"] = None             # more epochs may follow
    X_val = T_val = None
    if r["explicit_validation"]:
        if validation is None:
            raise ResumeError("%s was trained with an explicit validation set; pass it again "
                              "as validation=(X_val, Y_val)" % path)
        X_val, T_val = validation_set(net, validation)
        if r["validation_sha256"] is not None and fingerprint(X_val, T_val) != r["validation_sha256"]:
            raise ResumeError("%s was trained with another validation set than the one given "
                              "(their SHA-256 differs); resume needs the same one" % path)
    elif validation is not None:
        raise ResumeError("%s was trained %s; resume takes no validation=" % (
            path, "with validation_fraction %g" % r["validation_fraction"]
            if r["validation_fraction"] is not None else "without a validation set"))
    val_rows = r["val_rows"]
    if val_rows is not None and not (0 < val_rows.size < X.shape[0] and val_rows.min() >= 0
                                     and val_rows.max() < X.shape[0] and np.all(np.diff(val_rows) > 0)):
        from .io import ModelFileError
        raise ModelFileError("%s: inconsistent checkpoint: its validation rows are not distinct, "
                             "sorted rows of the %d samples it was trained on" % (path, X.shape[0]))
    loop = Loop(net, X, T, X_val, T_val, val_rows, run, r["optimizer"], r["schedule"], state,
                r["history"], checkpoint or path, r["data_sha256"], r["validation_fraction"],
                best=r["best"], validation_sha256=r["validation_sha256"])
    return net, loop.run(progress, callback)
