"""Optimizers and learning-rate schedules: their settings and their state.

RULES is the table of update rules: each entry names the rule's per-parameter state
arrays, the hyperparameters it reads and its formula, written one step to a line in
``reference.py``; ``kernels.py`` holds one compiled function per rule, chosen by the rule's
code (an unknown code is an error). This module also holds the per-parameter state
(velocities, moments) in the network's flat layout and the step count, so that a
checkpoint can save and restore all of it.

Rules (g is the gradient of the batch's mean loss after clipping, plus the weight
penalties' gradients (functions.PENALTIES) for weights; t counts steps from 1):
  sgd        w <- w - lr g
  momentum   v <- mu v - lr g;  w <- w + v                    (scikit-learn's form)
  nesterov   v <- mu v - lr g;  w <- w + mu v - lr g
  adam       m <- b1 m + (1 - b1) g;  s <- b2 s + (1 - b2) g^2;
             w <- w - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(s) + eps)
  rmsprop    s <- rho s + (1 - rho) g^2;  w <- w - lr g / (sqrt(s) + eps)   (Hinton, 2012)
"""
import inspect
from dataclasses import dataclass
from typing import Callable, Tuple

import numpy as np

from . import reference
from .checks import keywords, number, positive_int
from .functions import PENALTIES


@dataclass(frozen=True)
class Rule:
    """An update rule: its per-parameter state arrays (by name), the HYPERPARAMETERS it
    reads, its formula (a reference.py function) and the learning rate train gives it
    by default."""
    state: Tuple[str, ...]
    hyper: Tuple[str, ...]
    update: Callable
    default_lr: float = 0.1


# name -> (default, its check). Every Optimizer has all of them; each rule reads its own.
HYPERPARAMETERS = {
    "momentum": (0.9, lambda v: number("momentum", v, 0.0, 1.0)),
    "beta1": (0.9, lambda v: number("beta1", v, 0.0, 1.0)),
    "beta2": (0.999, lambda v: number("beta2", v, 0.0, 1.0)),
    "epsilon": (1e-8, lambda v: number("epsilon", v, low_open=True)),
    "rho": (0.9, lambda v: number("rho", v, 0.0, 1.0)),
}

RULES = {     # the order gives the kernels' codes
    "sgd": Rule((), (), reference.sgd),
    "momentum": Rule(("velocity",), ("momentum",), reference.momentum),
    "nesterov": Rule(("velocity",), ("momentum",), reference.nesterov),
    "adam": Rule(("m", "v"), ("beta1", "beta2", "epsilon"), reference.adam, default_lr=0.001),
    "rmsprop": Rule(("square_avg",), ("rho", "epsilon"), reference.rmsprop, default_lr=0.01),
}
RULE_CODES = {name: code for code, name in enumerate(RULES)}
N_STATE = {name: len(rule.state) for name, rule in RULES.items()}   # state arrays per parameter
# The kernels' hyperparameter vector: lr, the PENALTIES' strengths (contiguous, in the
# table's order), these slots, then every HYPERPARAMETERS entry. max_norm 0 is none;
# input_noise is the standard deviation of the noise added to training inputs.
HYPER_SLOTS = {name: slot for slot, name in enumerate(
    ("lr",) + tuple(PENALTIES) + ("clip", "tiny", "max_norm", "input_noise") + tuple(HYPERPARAMETERS))}


class Optimizer:
    """A gradient-descent rule, its hyperparameters and its state.

    Parameters
    ----------
    rule : a name in RULES: 'sgd', 'momentum', 'nesterov', 'adam', 'rmsprop'
    lr : float
        The learning rate (a schedule scales it from epoch to epoch).
    momentum : float
        mu, for 'momentum' and 'nesterov'.
    beta1, beta2, epsilon : float
        Adam's decay rates of the first and second moments, and its epsilon (RMSprop's
        too).
    rho : float
        RMSprop's decay rate of the mean square.

    ``state`` holds, once training has begun, the rule's per-parameter arrays over the
    network's flat buffers: ``state["w"]`` and ``state["b"]`` are each (N_STATE[rule], n)
    arrays; ``t`` the steps taken so far.
    """

    def __init__(self, rule: str = "sgd", lr: float = 0.1, **hyper: float) -> None:
        if not isinstance(rule, str) or rule not in RULES:
            raise ValueError("unknown optimizer %r; choose from %s" % (rule, ", ".join(map(repr, RULES))))
        keywords("Optimizer()", hyper, tuple(HYPERPARAMETERS), ("rule", "lr"))
        self.rule = rule
        self.lr = number("lr", lr, low_open=True)
        for name, (default, check) in HYPERPARAMETERS.items():
            setattr(self, name, check(hyper.get(name, default)))
        self.state = None
        self.t = 0

    @property
    def entry(self):
        """This rule's RULES entry."""
        return RULES[self.rule]

    def __repr__(self):
        extra = "".join(", %s=%g" % (name, getattr(self, name)) for name in self.entry.hyper)
        return "Optimizer(%r, lr=%g%s)" % (self.rule, self.lr, extra)

    def settings(self):
        """The constructor's arguments: Optimizer(**o.settings()) rebuilds it (no state)."""
        return dict({"rule": self.rule, "lr": self.lr}, **{name: getattr(self, name) for name in HYPERPARAMETERS})

    def _shapes(self, net):
        n_w, n_b = net.n_parameters
        return {"w": (N_STATE[self.rule], n_w), "b": (N_STATE[self.rule], n_b)}

    def check_fits(self, net):
        """Raise ValueError unless this optimizer's state (if any) is net's: changes nothing."""
        if self.state is not None and any(self.state[p].shape != shape or self.state[p].dtype != net.dtype
                                          for p, shape in self._shapes(net).items()):
            raise ValueError("this optimizer's state belongs to another network; use a new "
                             "Optimizer for each network")
        return self

    def bind(self, net):
        """Allocate the state for net's parameters (zeros), unless it is already there."""
        if self.check_fits(net).state is None:
            self.state = {p: np.zeros(shape, net.dtype) for p, shape in self._shapes(net).items()}
        return self

    def hyper(self, lr, l2, clip, dtype, l1=0.0, max_norm=None, input_noise=0.0):
        """The kernels' hyperparameter vector (HYPER_SLOTS), in the network's dtype."""
        values = {"lr": lr, "l2": l2, "l1": l1, "clip": clip or 0.0, "tiny": np.finfo(dtype).tiny,
                  "max_norm": max_norm or 0.0, "input_noise": input_noise}
        values.update({name: getattr(self, name) for name in HYPERPARAMETERS})
        return np.array([values[name] for name in HYPER_SLOTS], dtype)


def make_optimizer(optimizer, lr=None):
    """An Optimizer from a name ('adam'), or the given Optimizer (lr, if given, replaces its
    learning rate)."""
    if isinstance(optimizer, Optimizer):
        if lr is not None:
            optimizer.lr = number("lr", lr, low_open=True)
        return optimizer
    if not isinstance(optimizer, str):
        raise TypeError("optimizer must be a name (%s) or a fastbp.Optimizer, got %r"
                        % (", ".join(RULES), optimizer))
    return Optimizer(optimizer, lr=default_lr(optimizer) if lr is None else lr)


def default_lr(rule):
    """The rule's usual learning rate (RULES): Adam's 0.001 (scikit-learn's and PyTorch's),
    RMSprop's 0.01 (PyTorch's), 0.1 otherwise."""
    return RULES[rule].default_lr if rule in RULES else 0.1


# ---------------------------------------------------------------- schedules
# A schedule gives each epoch's learning rate as a factor of the optimizer's lr, from the
# epoch number (counted from 0) and, for reduce-on-plateau, the losses seen so far.

class Schedule:
    """Constant: the factor is 1 at every epoch."""
    name = "constant"

    def factor(self, epoch):
        return 1.0

    def observe(self, loss):
        """Told each finished epoch's monitored loss (validation loss when there is one)."""

    def get_state(self):
        return {}

    def set_state(self, state):
        if state != {}:
            raise ValueError("a %s schedule has no state, got %r" % (self.name, state))

    def settings(self):
        """The constructor's arguments: make_schedule((s.name, s.settings())) rebuilds it."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self):
        return "%s(%s)" % (type(self).__name__, ", ".join("%s=%r" % kv for kv in self.settings().items()))


class InverseScaling(Schedule):
    """factor = 1 / (1 + epoch) ** power (scikit-learn's 'invscaling' counts samples
    instead of epochs)."""
    name = "inverse_scaling"

    def __init__(self, power=0.5):
        self.power = number("power", power)

    def factor(self, epoch):
        return 1.0 / (1.0 + epoch) ** self.power


class StepDecay(Schedule):
    """factor = gamma ** (epoch // step_size): multiply by gamma every step_size epochs."""
    name = "step"

    def __init__(self, step_size=10, gamma=0.1):
        self.step_size = positive_int("step_size", step_size)
        self.gamma = number("gamma", gamma, 0.0, 1.0, low_open=True, high_open=False)

    def factor(self, epoch):
        return self.gamma ** (epoch // self.step_size)


class ExponentialDecay(Schedule):
    """factor = gamma ** epoch."""
    name = "exponential"

    def __init__(self, gamma=0.95):
        self.gamma = number("gamma", gamma, 0.0, 1.0, low_open=True, high_open=False)

    def factor(self, epoch):
        return self.gamma ** epoch


class ReduceOnPlateau(Schedule):
    """Multiply the factor by `factor` when the monitored loss has not fallen below
    (best - tol) for `patience` epochs in a row (scikit-learn's 'adaptive' is factor=0.2,
    patience=2); never below min_factor."""
    name = "reduce_on_plateau"

    def __init__(self, factor=0.2, patience=2, tol=1e-4, min_factor=0.0):
        self.reduce_by = number("factor", factor, 0.0, 1.0, low_open=True)
        self.patience = positive_int("patience", patience)
        self.tol = number("tol", tol)
        self.min_factor = number("min_factor", min_factor, 0.0, 1.0, high_open=False)
        self._state = {"factor": 1.0, "best": float("inf"), "bad_epochs": 0}

    def factor(self, epoch):
        return self._state["factor"]

    def settings(self):
        return {"factor": self.reduce_by, "patience": self.patience, "tol": self.tol,
                "min_factor": self.min_factor}

    def observe(self, loss):
        s = self._state
        if loss < s["best"] - self.tol:
            s["best"], s["bad_epochs"] = float(loss), 0
            return
        s["bad_epochs"] += 1
        if s["bad_epochs"] >= self.patience:
            s["factor"] = max(s["factor"] * self.reduce_by, self.min_factor)
            s["bad_epochs"] = 0

    def get_state(self):
        return dict(self._state)

    def set_state(self, state):
        """Restore get_state()'s dict (from a checkpoint: every value checked)."""
        if not isinstance(state, dict) or set(state) != {"factor", "best", "bad_epochs"}:
            raise ValueError("reduce_on_plateau's state must hold factor, best and bad_epochs, "
                             "got %r" % (state,))
        best = state["best"]
        if isinstance(best, bool) or not isinstance(best, (int, float)) or best != best:
            raise ValueError("reduce_on_plateau's best loss must be a number, got %r" % (best,))
        self._state = {"factor": number("reduce_on_plateau's factor", state["factor"], 0.0, 1.0,
                                        high_open=False),
                       "best": float(best),
                       "bad_epochs": positive_int("reduce_on_plateau's bad_epochs", state["bad_epochs"], 0)}


class Continued(Schedule):
    """A schedule picked up after `start` epochs (a warm-started fit, or partial_fit):
    epoch e of this run is epoch start + e of the schedule, whose state carries on."""
    name = "continued"

    def __init__(self, schedule, start):
        self.schedule, self.start = schedule, positive_int("start", start, minimum=0)

    def factor(self, epoch):
        return self.schedule.factor(self.start + epoch)

    def observe(self, loss):
        self.schedule.observe(loss)

    def get_state(self):
        return self.schedule.get_state()

    def set_state(self, state):
        self.schedule.set_state(state)


SCHEDULES = {cls.name: cls for cls in (Schedule, InverseScaling, StepDecay, ExponentialDecay,
                                       ReduceOnPlateau)}


def make_schedule(schedule):
    """A Schedule from None/'constant', a name, a (name, {settings}) pair or a Schedule."""
    if schedule is None:
        return Schedule()
    if isinstance(schedule, Schedule):
        return schedule
    name, settings = (schedule, {}) if isinstance(schedule, str) else schedule
    if name not in SCHEDULES:
        raise ValueError("unknown schedule %r; choose from %s" % (name, ", ".join(map(repr, SCHEDULES))))
    cls = SCHEDULES[name]
    keywords("the schedule %r" % name, settings, tuple(inspect.signature(cls).parameters), noun="setting")
    return cls(**settings)
