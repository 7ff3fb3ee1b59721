"""A training run as two objects, and its checkpoint.

RunConfig holds a run's settings, each checked once when it is made; Network.train, the
estimators, the command line and resume all build one. RunState holds everything that
changes from epoch to epoch: the optimizer (its state and step count), the schedule, the
stopping counters, the best weights, the validation rows and the history; the network's
random generator lives in the network. A checkpoint is the network, the config and the
state, written by save_checkpoint and read by read_checkpoint: here, and only here.
"""
import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, Optional, Tuple

import numpy as np

from . import io
from .backends import BACKENDS
from .checks import choice, flag, number, positive_int
from .optimizers import N_STATE, RULES, Optimizer, Schedule, make_schedule

STOPPED = (None, "epochs", "no improvement", "target loss", "mu at mu_max", "zero gradient")
# the settings a checkpoint records under "run" (the optimizer and the schedule are saved
# with their state, the validation fraction beside it)
RUN_KEYS = ("epochs", "batch_size", "shuffle", "l2", "l1", "max_norm", "dropout", "input_noise", "clip",
            "n_iter_no_change", "tol", "target_loss", "diagnostics", "backend", "checkpoint_every")
# (checkpoints before 0.2.0 lack these: their defaults)
ADDED_RUN_KEYS = {"l1": 0.0, "max_norm": None, "dropout": None, "input_noise": 0.0}


@dataclass
class RunConfig:
    """A training run's settings, checked when made (ValueError or TypeError, naming the
    setting): the estimators, the command line, Dask and resume build one, and a
    checkpoint records it.

    Parameters
    ----------
    epochs, lr, batch_size, shuffle
        As Network.train's (help(fastbp.Network.train)), with its defaults; lr, if given,
        replaces the optimizer's learning rate.
    l2, l1, max_norm, dropout, input_noise
        The penalties and the regularisers, as Network.train's.
    optimizer, schedule, clip
        The update rule, its schedule and gradient clipping, as Network.train's.
    validation_fraction, n_iter_no_change, tol, target_loss
        Validation and the stopping rules, as Network.train's.
    diagnostics, checkpoint, checkpoint_every, backend
        As Network.train's; backend None is the network's.

    Raises
    ------
    ValueError, TypeError
        Naming the setting that is wrong."""
    epochs: int = 1
    lr: Optional[float] = None
    batch_size: Any = "auto"             # 1, or None (the full batch) for a full-batch rule
    shuffle: bool = True
    l2: float = 0.0
    l1: float = 0.0
    max_norm: Optional[float] = None
    dropout: Any = None                  # None, a rate in [0, 1), or one per hidden layer
    input_noise: float = 0.0
    optimizer: Any = "sgd"               # a RULES name or an Optimizer
    schedule: Any = None                 # None, a name, (name, {settings}) or a Schedule
    clip: Optional[float] = None
    validation_fraction: Optional[float] = None
    n_iter_no_change: Optional[int] = None
    tol: float = 1e-4
    target_loss: Optional[float] = None
    diagnostics: bool = True
    checkpoint: Any = None               # a path, or None
    checkpoint_every: int = 1
    backend: Optional[str] = None        # None: the network's (Network(backend=...))

    def __post_init__(self):
        self.epochs = positive_int("epochs", self.epochs, minimum=0)
        self.lr = None if self.lr is None else number("lr", self.lr, low_open=True)
        self.shuffle = flag("shuffle", self.shuffle)
        self.l2 = number("l2", self.l2)
        self.l1 = number("l1", self.l1)
        self.max_norm = None if self.max_norm is None else number("max_norm", self.max_norm, low_open=True)
        if self.dropout is not None:
            if hasattr(self.dropout, "__len__") and not isinstance(self.dropout, (str, bytes)):
                self.dropout = [number("dropout", r, 0.0, 1.0) for r in self.dropout]   # (a list, an array)
            else:
                self.dropout = number("dropout", self.dropout, 0.0, 1.0)
        self.input_noise = number("input_noise", self.input_noise)
        if not isinstance(self.optimizer, Optimizer):
            if not isinstance(self.optimizer, str):
                raise TypeError("optimizer must be a name (%s) or a fastbp.Optimizer, got %r"
                                % (", ".join(RULES), self.optimizer))
            choice("optimizer", self.optimizer, tuple(RULES))
        rule = self.optimizer.rule if isinstance(self.optimizer, Optimizer) else self.optimizer
        full_batch = RULES[rule].full_batch
        if isinstance(self.batch_size, str) and self.batch_size == "auto":
            self.batch_size = None if full_batch else 1
        elif self.batch_size is not None:
            self.batch_size = positive_int("batch_size", self.batch_size)
            if full_batch:
                raise ValueError("optimizer %r steps on the whole training set: leave batch_size unset (or "
                                 "None), got batch_size=%d" % (rule, self.batch_size))
        if RULES[rule].step is not None:              # (methods.py: these are gradient steps' settings)
            given = [name for name in ("l1", "max_norm", "dropout", "input_noise", "clip")
                     + (("l2",) if rule == "br" else ()) if np.any(getattr(self, name) or 0)]
            if given:
                raise ValueError("optimizer %r takes no %s%s" % (
                    rule, ", ".join(given), " (it sets its own regularisation)" if rule == "br" else ""))
        make_schedule(self.schedule)                 # raises for a bad name or settings
        self.clip = None if self.clip is None else number("clip", self.clip, low_open=True)
        if self.validation_fraction is not None:
            self.validation_fraction = number("validation_fraction", self.validation_fraction, 0.0, 1.0,
                                              low_open=True)
        if self.n_iter_no_change is not None:
            self.n_iter_no_change = positive_int("n_iter_no_change", self.n_iter_no_change)
        self.tol = number("tol", self.tol)
        self.target_loss = None if self.target_loss is None else number("target_loss", self.target_loss)
        self.diagnostics = flag("diagnostics", self.diagnostics)
        if self.checkpoint is not None and not isinstance(self.checkpoint, (str, os.PathLike)):
            raise TypeError("checkpoint must be a path, got %r" % (self.checkpoint,))
        self.checkpoint_every = positive_int("checkpoint_every", self.checkpoint_every)
        self.backend = None if self.backend is None else choice("backend", self.backend, BACKENDS)

    def replace(self, **changes):
        """A copy with some settings changed, checked again."""
        return dataclasses.replace(self, **changes)


RUN_SETTINGS = tuple(f.name for f in dataclasses.fields(RunConfig))   # Network.train's **settings


def new_history():
    return {"loss": [], "seconds": [], "lr": []}


@dataclass
class RunState:
    """What a run carries from epoch to epoch (a checkpoint saves all of it)."""
    optimizer: Optimizer                 # bound to the network: its state and step count
    schedule: Schedule
    epoch: int = 0                       # epochs finished
    best_loss: float = math.inf          # the monitored loss's best so far
    best_epoch: Optional[int] = None     # counted from 1
    bad_epochs: int = 0                  # epochs since it last improved by tol
    stopped: Optional[str] = None        # why the run ended (STOPPED)
    history: dict = field(default_factory=new_history)
    best: Optional[Tuple[np.ndarray, np.ndarray]] = None    # Network.snapshot() of best_epoch
    val_rows: Optional[np.ndarray] = None                    # validation_fraction's rows
    explicit_validation: bool = False    # the run was given validation=(X_val, Y_val)
    data_sha256: Optional[str] = None    # the training set's fingerprint (with checkpoints)
    validation_sha256: Optional[str] = None

    def counters(self):
        return {"epoch": self.epoch, "best_loss": self.best_loss, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "stopped": self.stopped}


# ---------------------------------------------------------------- the checkpoint

def save_checkpoint(path, net, config, state):
    """Write the run (the network, its config, its state) to path, atomically."""
    arrays, meta = net.record()
    arrays.update(opt_w=state.optimizer.state["w"], opt_b=state.optimizer.state["b"])
    if state.best is not None:
        arrays.update(best_w=state.best[0], best_b=state.best[1])
    if state.val_rows is not None:
        arrays["val_rows"] = state.val_rows
    meta["training"] = {
        "run": {key: getattr(config, key) for key in RUN_KEYS}, "state": state.counters(),
        "history": state.history, "optimizer": state.optimizer.settings(), "optimizer_t": state.optimizer.t,
        "optimizer_scalars": state.optimizer.scalars,
        "schedule": [state.schedule.name, state.schedule.settings()],
        "schedule_state": state.schedule.get_state(), "data_sha256": state.data_sha256,
        "validation_fraction": config.validation_fraction,
        "explicit_validation": state.explicit_validation, "validation_sha256": state.validation_sha256,
    }
    return io.write_file(path, io.CHECKPOINT, arrays, meta)


def read_checkpoint(path, record, from_record):
    """(network, RunConfig, RunState) from a checkpoint written by save_checkpoint, every
    field checked as a new run's settings are (a ModelFileError otherwise). record is the
    file's (arrays, meta), read by the network's schema (which adds checkpoint_arrays), and
    from_record builds its network (network.load_checkpoint passes both). The config's
    checkpoint is path."""
    arrays, meta = record
    net = from_record(path, arrays, meta, "checkpoint")
    try:
        config, state = _restore(meta["training"], net, arrays)
    except (KeyError, ValueError, TypeError, OverflowError) as error:
        raise io.ModelFileError("%s: inconsistent checkpoint: %s" % (path, io.reason(error))) from None
    return net, config.replace(checkpoint=path), state


def checkpoint_arrays(description, n_w, n_b, dtype):
    """{member: (shape, dtype)} of the arrays a checkpoint with this training description
    holds besides the network's (io checks the file's members against it before reading
    any): the optimizer's state, the best weights (with validation, once an epoch was the
    best) and the validation rows (a vector, for validation_fraction)."""
    k = N_STATE[choice("optimizer", description["optimizer"]["rule"], tuple(RULES))]
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


def _restore(description, net, arrays):
    """The training description of a checkpoint as (RunConfig, RunState), every field
    checked; the optimizer bound to net with its saved state."""
    keys = ("run", "state", "history", "optimizer", "optimizer_t", "optimizer_scalars", "schedule",
            "schedule_state", "data_sha256", "validation_fraction", "explicit_validation", "validation_sha256")
    d = dict(description) if isinstance(description, dict) else description
    if isinstance(d, dict):
        d.setdefault("validation_sha256", None)            # (fastbp 0.1.0's checkpoints)
        d.setdefault("optimizer_scalars", None)            # (before 0.2.0's RPROP and methods: the first)
    _exact_keys("the training description", d, keys)
    settings = d["optimizer"]
    if not isinstance(settings, dict) or not {"rule", "lr"} <= set(settings) <= set(Optimizer().settings()):
        raise ValueError("optimizer must hold rule, lr and hyperparameters among %s, got %r"
                         % (", ".join(Optimizer().settings()), settings))
    optimizer = Optimizer(**settings).bind(net)
    optimizer.state["w"][...], optimizer.state["b"][...] = arrays["opt_w"], arrays["opt_b"]
    for p in ("w", "b"):
        if not np.isfinite(optimizer.state[p]).all():
            raise ValueError("the optimizer's state holds NaN or inf")
    optimizer.t = positive_int("optimizer_t", d["optimizer_t"], minimum=0)
    scalars = d["optimizer_scalars"]
    if scalars is not None:
        if not isinstance(scalars, dict) or set(scalars) != set(optimizer.scalars):
            raise ValueError("optimizer_scalars must hold exactly %s, got %r"
                             % (", ".join(sorted(optimizer.scalars)), scalars))
        for key, value in scalars.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or np.isnan(value):
                raise ValueError("optimizer_scalars %r must be a number, got %r" % (key, value))
        optimizer.scalars = {key: float(value) for key, value in scalars.items()}
    if not isinstance(d["schedule"], list) or len(d["schedule"]) != 2 or not isinstance(d["schedule"][1], dict):
        raise ValueError("schedule must be [name, {settings}], got %r" % (d["schedule"],))
    schedule = make_schedule(tuple(d["schedule"]))
    schedule.set_state(d["schedule_state"])
    run = dict(ADDED_RUN_KEYS, **d["run"]) if isinstance(d["run"], dict) else d["run"]
    config = RunConfig(**_exact_keys("run", run, RUN_KEYS), optimizer=optimizer, schedule=schedule,
                       validation_fraction=d["validation_fraction"])
    counters = _exact_keys("state", d["state"], ("epoch", "best_loss", "best_epoch", "bad_epochs", "stopped"))
    epoch = positive_int("state epoch", counters["epoch"], minimum=0)
    best_loss = counters["best_loss"]
    if isinstance(best_loss, bool) or not isinstance(best_loss, (int, float)) or np.isnan(best_loss):
        raise ValueError("state best_loss must be a number, got %r" % (best_loss,))
    best_epoch = counters["best_epoch"]
    if best_epoch is not None and positive_int("state best_epoch", best_epoch) > epoch:
        raise ValueError("state best_epoch %r is after the epochs done (%d)" % (best_epoch, epoch))
    bad_epochs = positive_int("state bad_epochs", counters["bad_epochs"], minimum=0)
    if bad_epochs > epoch:
        raise ValueError("state bad_epochs %r exceeds the epochs done (%d)" % (bad_epochs, epoch))
    stopped = choice("state stopped", counters["stopped"], STOPPED)
    history = d["history"]
    if not isinstance(history, dict) or not {"loss", "seconds", "lr"} <= set(history):
        raise ValueError("history must hold loss, seconds and lr")
    for key, values in history.items():
        if key in ("stopped", "best_epoch", "train_samples", "round_seconds", "worker_seconds"):
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
    explicit = flag("explicit_validation", d["explicit_validation"])
    if explicit and config.validation_fraction is not None:
        raise ValueError("explicit_validation and validation_fraction are both set")
    best = (arrays["best_w"], arrays["best_b"]) if "best_w" in arrays else None
    state = RunState(optimizer, schedule, epoch=epoch, best_loss=float(best_loss), best_epoch=best_epoch,
                     bad_epochs=bad_epochs, stopped=stopped, history=history, best=best,
                     val_rows=arrays.get("val_rows"), explicit_validation=explicit,
                     data_sha256=d["data_sha256"], validation_sha256=d["validation_sha256"])
    return config, state
