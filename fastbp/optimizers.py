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
  rprop      iRPROP- (Igel and Huesken, 2000; torch.optim.Rprop): each parameter's own step
             size d (lr at the first step) grows by eta_plus while g keeps its sign and
             shrinks by eta_minus when it flips (g then counts as 0), within
             [step_min, step_max];  w <- w - sign(g) d.  Full batch.
  irprop+    iRPROP+: as rprop, and where g flips sign while the batch's loss rose above
             the last step's, the last change is taken back (weight backtracking). Full batch.
Methods with a step of their own (methods.py; full batch):
  lm         Levenberg-Marquardt (MATLAB's trainlm): (J^T J + mu I) dx = -J^T e, mu down by
             mu_dec after a step that lowers the sum of squared errors, up by mu_inc (and
             the step retried) after one that does not; the run stops once mu > mu_max
  br         Bayesian regularisation (MacKay; trainbr): lm on beta E_D + alpha E_W, alpha
             and beta re-estimated after each step from gamma = P - 2 alpha tr(H^-1)
  scg        Moller's scaled conjugate gradient (trainscg): sigma, lambda_init


Optimizers and schedules
========================

`optimizer=` is a name or a `fastbp.Optimizer(rule, lr, momentum=0.9, beta1=0.9,
beta2=0.999, epsilon=1e-8, rho=0.9)`, which keeps its state (velocities, moments, step
count) from one `train` call to the next. With g the step's gradient (clipped, plus `l2 * W + l1 * sign(W)`):

- `sgd`: `w -= lr g`
- `momentum`: `v = mu v - lr g; w += v` (scikit-learn's form)
- `nesterov`: `v = mu v - lr g; w += mu v - lr g`
- `adam`: `m = b1 m + (1-b1) g; s = b2 s + (1-b2) g^2; w -= lr sqrt(1-b2^t)/(1-b1^t) m /
  (sqrt(s) + eps)`
- `rmsprop`: `s = rho s + (1-rho) g^2; w -= lr g / (sqrt(s) + eps)` (Hinton's; PyTorch's with
  eps outside the root)
- `rprop`, `irprop+`, `lm`, `br`, `scg`: full batch: see `help(fastbp.methods)`

`lr` defaults to 0.1, Adam's to 0.001, RMSprop's to 0.01 (`train` and the CLI; a
`fastbp.Optimizer(rule)` made by hand starts at 0.1 whatever the rule). `clip=c` scales the
step's gradient (all layers
together) down to norm c when it is longer (PyTorch's `clip_grad_norm_`), before the L2
term is added. `schedule=` sets each epoch's learning rate as a factor of `lr`:
`"inverse_scaling"` (`1/(1+epoch)^power`), `"step"` (`gamma^(epoch // step_size)`),
`"exponential"` (`gamma^epoch`), `"reduce_on_plateau"` (times `factor` after `patience`
epochs without the monitored loss falling by `tol`), as a name, a `(name, {settings})` pair
or an object from `fastbp.optimizers`.

Each rule is one `optimizers.RULES` entry (its state arrays, the hyperparameters it reads,
its formula and default learning rate), written once in the reference (one formula to a
line) and once in the kernels (one compiled function, and its call in `kernels.STEPS`,
from which `kernels._update` is generated: a chain of branches on the rule's code, where an
unknown code is an error), and tested against each other and against
hand calculations on a one-weight network (`tests/test_optimizers.py`, every rule from
`fastbp.cases`). Per-sample plain SGD keeps its blocked kernel; momentum, Adam
and clipping at batch size 1 run the batched kernel with batches of one. Parameters and
moments that become subnormal are set to zero: before, they slowed long runs down
(asv_benchmarks/README.md, "Figures behind the documented choices").
"""
import inspect
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np

from . import methods, reference
from .checks import keywords, number, positive_int
from .functions import PENALTIES


@dataclass(frozen=True)
class Rule:
    """An update rule: its per-parameter state arrays (by name), the HYPERPARAMETERS it
    reads, its formula (a reference.py function) and the learning rate train gives it
    by default. A method with a step of its own (a linear solve, a line search: methods.py)
    has no formula: its step trains one epoch, on the full batch."""
    state: Tuple[str, ...]
    hyper: Tuple[str, ...]
    update: Optional[Callable]
    default_lr: float = 0.1
    full_batch: bool = False     # every step takes the whole training set (batch_size=None)
    step: Optional[Callable] = None      # methods.py's epoch, for a method; None for a formula
    scalars: Optional[Callable] = None   # its scalar state's first values (Optimizer.scalars)
    reports: Tuple[str, ...] = ()        # the scalars recorded in the history after each epoch
    stop: Optional[Callable] = None      # why the run ends after an epoch (a STOPPED reason), or None
    loss: Optional[str] = None           # the one loss it minimises, if it needs one
    jacobian: bool = False               # it solves a P x P system from J^T J


# name -> (default, its check). Every Optimizer has all of them; each rule reads its own.
HYPERPARAMETERS = {
    "momentum": (0.9, lambda v: number("momentum", v, 0.0, 1.0)),
    "beta1": (0.9, lambda v: number("beta1", v, 0.0, 1.0)),
    "beta2": (0.999, lambda v: number("beta2", v, 0.0, 1.0)),
    "epsilon": (1e-8, lambda v: number("epsilon", v, low_open=True)),
    "rho": (0.9, lambda v: number("rho", v, 0.0, 1.0)),
    "eta_minus": (0.5, lambda v: number("eta_minus", v, 0.0, 1.0, low_open=True)),
    "eta_plus": (1.2, lambda v: number("eta_plus", v, 1.0, low_open=True)),
    "step_min": (1e-6, lambda v: number("step_min", v)),
    "step_max": (50.0, lambda v: number("step_max", v, low_open=True)),
    "mu": (0.001, lambda v: number("mu", v, low_open=True)),
    "mu_dec": (0.1, lambda v: number("mu_dec", v, 0.0, 1.0, low_open=True)),
    "mu_inc": (10.0, lambda v: number("mu_inc", v, 1.0, low_open=True)),
    "mu_max": (1e10, lambda v: number("mu_max", v, low_open=True)),
    "sigma": (5e-5, lambda v: number("sigma", v, low_open=True)),
    "lambda_init": (5e-7, lambda v: number("lambda_init", v, low_open=True)),
}
_RPROP = ("eta_minus", "eta_plus", "step_min", "step_max")
_LM = ("mu", "mu_dec", "mu_inc", "mu_max")

RULES = {     # the order gives the kernels' codes
    "sgd": Rule((), (), reference.sgd),
    "momentum": Rule(("velocity",), ("momentum",), reference.momentum),
    "nesterov": Rule(("velocity",), ("momentum",), reference.nesterov),
    "adam": Rule(("m", "v"), ("beta1", "beta2", "epsilon"), reference.adam, default_lr=0.001),
    "rmsprop": Rule(("square_avg",), ("rho", "epsilon"), reference.rmsprop, default_lr=0.01),
    "rprop": Rule(("prev_grad", "step_size"), _RPROP, reference.rprop, default_lr=0.01, full_batch=True),
    "irprop+": Rule(("prev_grad", "step_size", "change"), _RPROP, reference.irprop_plus, default_lr=0.01,
                    full_batch=True),
    "lm": Rule((), _LM, None, full_batch=True, step=methods.levenberg_marquardt, scalars=methods.lm_scalars,
               reports=("mu",), stop=methods.mu_stop, loss="mse", jacobian=True),
    "br": Rule((), _LM, None, full_batch=True, step=methods.bayesian_regularisation, scalars=methods.br_scalars,
               reports=("mu", "gamma", "alpha", "beta"), stop=methods.mu_stop, loss="mse", jacobian=True),
    "scg": Rule(("direction", "descent"), ("sigma", "lambda_init"), None, full_batch=True,
                step=methods.scaled_conjugate_gradient, scalars=methods.scg_scalars,
                reports=("lambda", "gradients"), stop=methods.scg_stop),
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
    eta_minus, eta_plus, step_min, step_max : float
        RPROP's factors by which a step size shrinks (0 < eta_minus < 1) and grows
        (eta_plus > 1), and its bounds; lr is every step size at the first step
        (torch.optim.Rprop's defaults: etas (0.5, 1.2), step sizes (1e-6, 50)).
    mu, mu_dec, mu_inc, mu_max : float
        Levenberg-Marquardt's (and Bayesian regularisation's) damping: its first value,
        the factors after a good and a bad step, and the value past which the run stops
        (MATLAB's trainlm defaults: 0.001, 0.1, 10, 1e10).
    sigma, lambda_init : float
        Scaled conjugate gradient's step for the second-order estimate and the first
        value of its scale parameter (trainscg's defaults: 5e-5, 5e-7).

    ``state`` holds, once training has begun, the rule's per-parameter arrays over the
    network's flat buffers: ``state["w"]`` and ``state["b"]`` are each (N_STATE[rule], n)
    arrays; ``t`` the steps taken so far; ``scalars`` its scalar state: ``last_loss``, the
    mean loss of the last step's batch before that step (inf before the first), which
    iRPROP+ compares the next with, and a method's own (mu; gamma, alpha, beta; lambda).
    """

    def __init__(self, rule: str = "sgd", lr: float = 0.1, **hyper: float) -> None:
        if not isinstance(rule, str) or rule not in RULES:
            raise ValueError("unknown optimizer %r; choose from %s" % (rule, ", ".join(map(repr, RULES))))
        keywords("Optimizer()", hyper, tuple(HYPERPARAMETERS), ("rule", "lr"))
        self.rule = rule
        self.lr = number("lr", lr, low_open=True)
        for name, (default, check) in HYPERPARAMETERS.items():
            setattr(self, name, check(hyper.get(name, default)))
        if self.step_min > self.step_max:
            raise ValueError("step_min (%g) must not be above step_max (%g)" % (self.step_min, self.step_max))
        self.state = None
        self.t = 0
        self.scalars = {"last_loss": float("inf")}
        if self.entry.scalars is not None:
            self.scalars.update(self.entry.scalars(self))

    @property
    def last_loss(self):
        return self.scalars["last_loss"]

    @last_loss.setter
    def last_loss(self, value):
        self.scalars["last_loss"] = value

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
