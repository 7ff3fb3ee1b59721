"""Argument and input checks shared by the network, the training loop, the optimizers, the
estimators and Dask's shards: each raises a ValueError (a TypeError for a value that is not
a number at all) that names the argument, what it must be and what it got.

Data goes through one validator, `check_array` (and `check_sample_weight` for weights), so
that `Network`, the estimators and `fastbp.distributed` give one set of messages; targets
go through `check_targets`, against the network's loss."""
import difflib
import numbers

import numpy as np

from .functions import LOSSES


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


def check_finite(name, A, blas="scipy"):
    """A ValueError naming the first row of A that holds NaN or inf, if any.

    The fast test is a product with a vector of ones, one BLAS pass with no temporary of
    A's size: under IEEE arithmetic a NaN or an inf in a row makes the row's sum NaN or
    inf. A sum can also overflow from finite values; only then, or when the fast test
    fails, is each element tested (np.isfinite), which also finds the row. It is faster
    than np.isfinite(X).all() or a compiled loop (asv_benchmarks/README.md, "Figures
    behind the documented choices").

    The product goes through the BLAS that the backend's own products use (its ``blas``,
    backends.py): "numpy" (the reference's), or "scipy" (a copy of OpenBLAS of its own,
    the kernels'). A pool's threads keep spinning for a while after a product, on the
    cores that the other pool's next product needs, and slow it down (the same section)."""
    A = np.asarray(A)
    if A.dtype.kind != "f" or A.size == 0:
        return
    if A.size >= FAST_FINITE_MIN and A.ndim == 2 and A.flags.c_contiguous and A.shape[1] > 1 \
            and A.dtype in (np.float32, np.float64):
        ones = np.ones(A.shape[1], A.dtype)
        with np.errstate(all="ignore"):                 # (an overflow is not an error here)
            if blas == "numpy":
                sums = A @ ones
            else:
                from scipy.linalg import blas as scipy_blas  # (the kernels' products load it too)
                sums = scipy_blas.get_blas_funcs("gemv", (A,))(1.0, A.T, ones, trans=1)  # A.T: no copy
        if np.isfinite(sums).all():
            return
    bad = ~np.isfinite(A)
    if bad.any():
        raise ValueError("%s contains NaN or inf (first in row %d)" % (name, int(np.argwhere(bad)[0][0])))


def check_array(X, name="X", n_features=None, dtype=None, blas="scipy", finite=True):
    """X as a C-contiguous 2-D array of dtype (None: float32 stays float32, anything else
    becomes float64), or, for a scipy sparse matrix or array, as CSR of that dtype with its
    structure checked (the kernels index by it). A clear error otherwise: not numbers,
    complex, not 2-D, no samples or no features, n_features columns when it is given, NaN
    or inf (with the first row that holds one). blas: the BLAS of the backend that will
    use X, which tests it for NaN and inf (check_finite). finite=False leaves that test of
    a dense X to the caller (the backends' ``outputs(..., name)``: the kernels do it at no
    cost); a sparse one is always tested. The messages that scikit-learn's estimator checks
    look for are scikit-learn's own."""
    sparse = is_sparse(X)
    if not sparse:
        X = np.asarray(X)
    if X.dtype.kind == "c":
        raise ValueError("Complex data not supported: %s has dtype %s" % (name, X.dtype))
    if X.dtype.kind not in "biufO":
        raise TypeError("%s must hold numbers, got dtype %s" % (name, X.dtype))
    if X.ndim != 2:
        raise ValueError("Expected a 2-D array for %s, got %d-D (shape %s). Reshape your data with "
                         "X.reshape(-1, 1) for one feature or X.reshape(1, -1) for one sample"
                         % (name, X.ndim, X.shape))
    for count, what in ((X.shape[0], "sample"), (X.shape[1], "feature")):
        if count < 1:
            raise ValueError("Found array with 0 %s(s) (shape=%s) while a minimum of 1 is required: %s is empty"
                             % (what, X.shape, name))
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError("%s has shape %s; expected (n_samples, %d) for this network's %d inputs"
                         % (name, X.shape, n_features, n_features))
    if dtype is None:
        dtype = np.float32 if X.dtype == np.float32 else np.float64
    try:
        X = X.tocsr().astype(dtype, copy=False) if sparse else np.ascontiguousarray(X, dtype=dtype)
    except (TypeError, ValueError) as error:          # an object array of other things
        raise TypeError("%s must hold numbers: %s" % (name, error)) from None
    if not sparse:
        if finite:
            check_finite(name, X, blas)
        return X
    try:
        X.check_format(full_check=True)                  # indices in range, indptr consistent
    except ValueError as error:
        raise ValueError("%s is not a valid CSR matrix: %s" % (name, error)) from None
    bad = ~np.isfinite(X.data)
    if bad.any():
        row = int(np.searchsorted(X.indptr, np.argmax(bad), side="right")) - 1
        raise ValueError("%s contains NaN or inf (first in row %d)" % (name, row))
    return X


def check_sample_weight(sample_weight, m, dtype, name="sample_weight"):
    """Sample weights as a (m,) array of dtype (a scalar: the same for every sample), or
    None for none: finite, not negative, not all zero; a clear error otherwise."""
    if sample_weight is None:
        return None
    s = np.asarray(sample_weight)
    if s.dtype.kind not in "biuf":
        raise TypeError("%s must hold numbers, got dtype %s" % (name, s.dtype))
    if s.ndim == 0:
        s = np.full(m, s)
    if s.shape != (m,):
        raise ValueError("%s has shape %s; expected (%d,): one weight per sample" % (name, s.shape, m))
    s = np.ascontiguousarray(s, dtype=dtype)
    check_finite(name, s)
    if s.min() < 0:
        raise ValueError("%s has a negative weight (%g at row %d); weights must be >= 0"
                         % (name, s.min(), int(np.argmin(s))))
    if not s.sum() > 0:
        raise ValueError("%s: all the sample weights are zero; at least one sample must have weight" % name)
    return s


def check_targets(Y, m, n_out, dtype, loss, name="Y"):
    """Targets as a C-contiguous (m, n_out) array of dtype, for a network of n_out outputs
    trained on the loss named `loss`; 1-D integer labels are one-hot encoded. A clear
    error for a wrong shape, NaN or inf, labels out of range, or targets the loss does not
    take (functions.LOSSES: what each loss's targets must be)."""
    Y = np.asarray(Y)
    if Y.dtype.kind not in "biuf":
        raise TypeError("%s must hold numbers, got dtype %s" % (name, Y.dtype))
    if Y.ndim == 1 and n_out == 1:
        Y = Y[:, None]
    elif Y.ndim == 1:
        if Y.dtype.kind not in "biu":
            raise ValueError("%s is 1-D but not integer class labels; give (n_samples, %d) "
                             "targets or integer labels in 0..%d" % (name, n_out, n_out - 1))
        if Y.size and (Y.min() < 0 or Y.max() >= n_out):
            raise ValueError("%s has labels out of range: found %d..%d, but the network has "
                             "%d outputs (labels 0..%d)" % (name, Y.min(), Y.max(), n_out, n_out - 1))
        Y = np.eye(n_out, dtype=dtype)[Y]
    if Y.shape != (m, n_out):
        raise ValueError("%s has shape %s; expected (%d, %d): one target row per sample of X"
                         % (name, Y.shape, m, n_out))
    Y = np.ascontiguousarray(Y, dtype=dtype)
    check_finite(name, Y)
    kind = LOSSES[loss].targets            # what the loss takes (functions.py)
    if kind in ("unit", "distribution") and (Y.min() < 0 or Y.max() > 1):
        raise ValueError("%s: loss %r needs targets in [0, 1]" % (name, loss))
    if kind == "nonnegative" and Y.min() < 0:
        raise ValueError("%s: loss %r needs targets >= 0 (counts or rates); found %g"
                         % (name, loss, Y.min()))
    if kind == "distribution":
        off = np.abs(Y.sum(axis=1) - 1.0) > 1e-3
        if off.any():
            raise ValueError("%s: %s needs each target row to sum to 1 (one-hot or "
                             "a distribution); row %d sums to %g"
                             % (name, loss, int(np.argmax(off)), Y[np.argmax(off)].sum()))
    elif kind not in ("any", "unit", "nonnegative"):
        raise ValueError("loss %r: unknown kind of targets %r" % (loss, kind))
    return Y
