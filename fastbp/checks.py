"""Argument checks shared by the network, the training loop and the optimizers: each
raises a ValueError that names the argument, what it must be and what it got."""
import numbers

import numpy as np


def choice(what, value, allowed):
    if value not in allowed:
        raise ValueError("unknown %s %r; choose from %s" % (what, value, ", ".join(map(repr, allowed))))
    return value


def positive_int(what, value, minimum=1):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError("%s must be an integer >= %d, got %r" % (what, minimum, value))
    return int(value)


def number(what, value, low=0.0, high=None, low_open=False, high_open=True):
    """A finite real in [low, high) (by default; either end open or closed, high optional),
    as a float."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    ok = ok and (value > low if low_open else value >= low)
    if high is not None:
        ok = ok and (value < high if high_open else value <= high)
    if not ok:
        bounds = "%s %g" % (">" if low_open else ">=", low)
        if high is not None:
            bounds += " and %s %g" % ("<" if high_open else "<=", high)
        raise ValueError("%s must be a finite number %s, got %r" % (what, bounds, value))
    return float(value)


def flag(what, value):
    """True or False (a bool, NumPy's too, or the integers 0 and 1), as a bool."""
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, numbers.Integral) and value in (0, 1)):
        return bool(value)
    raise ValueError("%s must be True or False, got %r" % (what, value))


def is_sparse(X):
    """Whether X is a scipy.sparse matrix or array (without importing scipy.sparse)."""
    return type(X).__module__.startswith("scipy.sparse")
