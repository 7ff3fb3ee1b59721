"""Argument checks shared by the network, the training loop and the optimizers: each
raises a ValueError that names the argument, what it must be and what it got."""
import difflib
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


def keywords(caller, given, allowed, also=(), noun="keyword argument"):
    """Raise the TypeError Python gives for an unknown keyword argument, naming caller as
    the user called it ('train()'), not an internal class, with the nearest of allowed
    and also (the caller's other parameters) as a suggestion."""
    for name in given:
        if name not in allowed:
            near = difflib.get_close_matches(name, list(allowed) + list(also), n=1)
            raise TypeError("%s got an unexpected %s %r; %s" % (
                caller, noun, name, "did you mean %r?" % near[0] if near else "it takes %s" % ", ".join(allowed)))


def is_sparse(X):
    """Whether X is a scipy.sparse matrix or array (without importing scipy.sparse)."""
    return type(X).__module__.startswith("scipy.sparse")


FAST_FINITE_MIN = 4096     # elements: below, np.isfinite is quicker than a BLAS call


def check_finite(name, A, backend="numba"):
    """A ValueError naming the first row of A that holds NaN or inf, if any.

    The fast test is a product with a vector of ones, one BLAS pass with no temporary of
    A's size: under IEEE arithmetic a NaN or an inf in a row makes the row's sum NaN or
    inf. A sum can also overflow from finite values; only then, or when the fast test
    fails, is each element tested (np.isfinite), which also finds the row. For a 10,000 x
    784 float32 X the product took 1.6 ms and np.isfinite(X).all() 5.0 ms (a compiled
    loop, one thread, 3.9 ms).

    The product goes through the BLAS that the backend's own products use: NumPy's for
    the reference, SciPy's (a copy of OpenBLAS of its own) for the kernels. A pool's
    threads keep spinning for a while after a product, on the cores that the other
    pool's next product needs: predicting 10,000 rows took 32 ms after a test through
    NumPy's BLAS and 15 ms after one through SciPy's."""
    A = np.asarray(A)
    if A.dtype.kind != "f" or A.size == 0:
        return
    if A.size >= FAST_FINITE_MIN and A.ndim == 2 and A.flags.c_contiguous and A.shape[1] > 1 \
            and A.dtype in (np.float32, np.float64):
        ones = np.ones(A.shape[1], A.dtype)
        with np.errstate(all="ignore"):                 # (an overflow is not an error here)
            if backend == "numpy":
                sums = A @ ones
            else:
                from scipy.linalg import blas  # (the kernels' products load it too)
                sums = blas.get_blas_funcs("gemv", (A,))(1.0, A.T, ones, trans=1)  # A.T: no copy
        if np.isfinite(sums).all():
            return
    bad = ~np.isfinite(A)
    if bad.any():
        raise ValueError("%s contains NaN or inf (first in row %d)" % (name, int(np.argwhere(bad)[0][0])))
