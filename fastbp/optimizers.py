"""Optimizers and learning-rate schedules: their settings and their state.

The update rules themselves are written twice, as everything in fastbp: one formula to
a line in ``reference.py`` (``UPDATES``), and fused into the training loop in
``kernels.py`` (``_update``). This module holds what they share: the hyperparameters,
the per-parameter state (velocities, moments) in the network's flat layout, and the
step count, so that a checkpoint can save and restore all of it.

Rules (g is the gradient of the batch's mean loss plus l2 * w for weights, after
clipping; t counts steps from 1):
  sgd        w <- w - lr g
  momentum   v <- mu v - lr g;  w <- w + v                    (scikit-learn's form)
  nesterov   v <- mu v - lr g;  w <- w + mu v - lr g
  adam       m <- b1 m + (1 - b1) g;  s <- b2 s + (1 - b2) g^2;
             w <- w - lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(s) + eps)
"""
import numpy as np

from .checks import number, positive_int

RULES = ("sgd", "momentum", "nesterov", "adam")     # their order gives the kernels' codes
RULE_CODES = {name: code for code, name in enumerate(RULES)}
N_STATE = {"sgd": 0, "momentum": 1, "nesterov": 1, "adam": 2}   # state arrays per parameter


class Optimizer:
    """A gradient-descent rule, its hyperparameters and its state.

    Parameters
    ----------
    rule : 'sgd', 'momentum', 'nesterov' or 'adam'
    lr : float
        The learning rate (a schedule scales it from epoch to epoch).
    momentum : float
        mu, for 'momentum' and 'nesterov'.
    beta1, beta2, epsilon : float
        Adam's decay rates of the first and second moments, and its epsilon.

    ``state`` holds, once training has begun, the rule's per-parameter arrays over the
    network's flat buffers: ``state["w"]`` and ``state["b"]`` are each (N_STATE[rule], n)
    arrays; ``t`` the steps taken so far.
    """

    def __init__(self, rule="sgd", lr=0.1, momentum=0.9, beta1=0.9, beta2=0.999, epsilon=1e-8):
        if rule not in RULE_CODES:
            raise ValueError("unknown optimizer %r; choose from %s" % (rule, ", ".join(map(repr, RULES))))
        self.rule = rule
        self.lr = number("lr", lr, low_open=True)
        self.momentum = number("momentum", momentum, 0.0, 1.0)
        self.beta1 = number("beta1", beta1, 0.0, 1.0)
        self.beta2 = number("beta2", beta2, 0.0, 1.0)
        self.epsilon = number("epsilon", epsilon, low_open=True)
        self.state = None
        self.t = 0

    def __repr__(self):
        extra = {"sgd": "", "momentum": ", momentum=%g" % self.momentum,
                 "nesterov": ", momentum=%g" % self.momentum,
                 "adam": ", beta1=%g, beta2=%g, epsilon=%g" % (self.beta1, self.beta2, self.epsilon)}
        return "Optimizer(%r, lr=%g%s)" % (self.rule, self.lr, extra[self.rule])

    def settings(self):
        return {"rule": self.rule, "lr": self.lr, "momentum": self.momentum, "beta1": self.beta1,
                "beta2": self.beta2, "epsilon": self.epsilon}

    def _shapes(self, net):
        return {"w": (N_STATE[self.rule], net._w.size), "b": (N_STATE[self.rule], net._b.size)}

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

    def hyper(self, lr, l2, clip, dtype):
        """The kernels' hyperparameter vector, in the network's dtype."""
        beta = self.momentum if self.rule in ("momentum", "nesterov") else self.beta1
        return np.array([lr, l2, beta, self.beta2, self.epsilon, clip or 0.0,
                         np.finfo(dtype).tiny], dtype)


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
    """0.001 for Adam (its usual setting, scikit-learn's and PyTorch's), 0.1 otherwise."""
    return 0.001 if rule == "adam" else 0.1


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
    return SCHEDULES[name](**settings)
