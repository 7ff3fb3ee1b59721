"""The Numba kernels: the reference's mathematics, written for speed.

Plain functions over flat arrays, so one compiled function serves every depth:
  w      all weight matrices, flattened; layer l's W (n_out, n_in) is
         w[w_off[l] : w_off[l + 1]], row j (unit j's weights) at w_off[l] + j * n_in
  b      all biases (zeros and never updated when has_bias is False); layer l's at
         b[u_off[l] : u_off[l + 1]]
  a/d/e  per-sample activations, error terms and sent-back errors, laid out like b
  acts   one activation code per layer (functions.ACTIVATION_CODES), the output's last

Every kernel is ``@kernel`` (njit with ``cache=True`` and NumPy's error model) and
compiled on first call, never at import. A kernel runs in the dtype of its arrays
(float64 or float32); scalars it is given (lr, decay, eps) come in that dtype too, and
``lr - lr`` makes a zero of that dtype where an accumulator must keep it (a Python 0.0
would promote a float32 sum to float64).

Parallelism: in per-sample SGD, when the caller asks for threads > 1 (threads.py; the
default is 1), ``prange`` over the rows of a layer only when the layer has at least
PARALLEL_MIN_WEIGHTS weights: a parallel region costs far less with the OpenMP threading
layer, which fastbp asks Numba to prefer (see ``_prefer_openmp``), than with workqueue
(the figures behind this file's choices: asv_benchmarks/README.md). The dense mini-batch
epoch (batch_epoch) splits each batch into fixed ranges of rows and blocks of units on
Numba's threads, each calling a one-thread BLAS (see the comment above batch_epoch);
the other batched kernels hand their products to BLAS, on whatever threads it has.

Compile time: a cold compile is mostly Numba's own typing and lowering, then LLVM (the
CONTRIBUTING.md's "Compile time" has the figures). No kernel assigns an array to a slice
(``a[i:j] = b[k:l]``): for each such assignment Numba compiles a shape-mismatch error
that formats the shapes into a string, and that string code was a large part of every
cold compile; the kernels copy in element loops instead. (Tried and left out: per-sample
SGD compiled twice, a serial build for one thread beside the parallel one. It compiled
faster, but the two builds, some parts loaded from the cache and some compiled in the
process, differed in the last bit between thread counts, which tests/test_threads.py
forbids.)
Numba compiles each kernel a kernel calls into a library of its own, optimises it and
emits its machine code, then links it into the caller and optimises and emits it all
again there: a helper four calls deep is compiled five times over. So the call tree is
kept shallow: helpers that only passed their arguments on are gone, and a helper with one
or two call sites that only organises calls (_rows_pass, _forward_from_products) is
inlined in Numba's IR (inline="always") rather than compiled on its own; and every
function is compiled without the wrappers it does not need (see _compiled). Numba's
own implementations of NumPy functions are compiled again for each set of options
(fastmath, wrappers) of the kernels that call them, so the batched kernel sums with a
kernel of its own (_summed) and allocates with np.empty alone. The
training kernels have a second, smaller build for the runs within scikit-learn's
activations and rules (see "builds", at the end).

fastmath: FASTMATH allows reassociation and contraction (FMA), so that the dot products
and row updates vectorise; it does not assume away NaN and inf, so a diverging run is
still seen. tests/test_agreement.py holds the results to the NumPy reference.
"""
import contextlib
import functools
import math
import os
import sys
import threading
import types as pytypes

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import caching
from numba.core import event as numba_event
from numba.core.cpu import ParallelOptions
from numba.core.registry import CPUDispatcher
from numba.extending import intrinsic, overload
from numba.np.linalg import _BLAS, ensure_blas  # (Numba's own BLAS binding: gradient_rows)
from numba.typed import List

from .functions import (
    ACTIVATION_CODES,
    ACTIVATIONS,
    DELTA_KINDS,
    DELTA_OF,
    LOSS_CODES,
    NEEDS_Z,
    PENALTIES,
    exponential,
    hyperbolic_tangent,
)
from .optimizers import HYPER_SLOTS, RULE_CODES

FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
# NumPy's error model: a float division by zero gives inf or nan instead of raising.
# Python's model checks every division for a zero divisor, and that branch kept loops with
# a division (the sigmoid, Adam's step) from vectorising.
ERRORS = "numpy"


def _on_disk_cache():
    """Whether Numba can keep the kernels on disk. Its locators try, in order:
    NUMBA_CACHE_DIR (if set and writable), the package's own __pycache__ (if writable),
    then the user's cache directory (~/.cache/numba on Linux, if writable). Where none
    can be written (a read-only install run by a user without a writable home: a
    container image, a serverless runtime), Numba would refuse every cache=True function
    ("no locator available"); the kernels then compile in each process instead, and
    fastbp says so once."""
    from numba.core.caching import FunctionCache
    try:
        FunctionCache(_on_disk_cache)        # (the locators Numba would try for this file)
        return True
    except RuntimeError:
        import warnings
        warnings.warn("fastbp: no directory for Numba's on-disk cache can be written (NUMBA_CACHE_DIR=%s, "
                      "fastbp's __pycache__, the user's cache directory), so the kernels compile in every "
                      "process, at each first call. Set NUMBA_CACHE_DIR to a writable directory to keep "
                      "them." % (os.environ.get("NUMBA_CACHE_DIR") or "(unset)"), RuntimeWarning, stacklevel=2)
        return False


CACHE = _on_disk_cache()


def kernel(function=None, internal=False, **options):
    """njit with NumPy's error model, compiled on first call, and cached on disk (where it
    can be) under kernels.py's stamp and FINGERPRINT (see dependencies() below).
    internal: only other kernels call it (see _compiled)."""
    if function is None:
        return lambda f: kernel(f, internal, **options)
    dispatcher = _compiled(function, internal, **options)
    if CACHE:
        dispatcher._cache = _FingerprintedCache(dispatcher.py_func)    # (what cache=True sets, and more)
    return dispatcher


def _compiled(function, internal=False, **options):
    """njit with NumPy's error model, and none of the wrappers a kernel does not need.
    Numba gives every compiled function two: a C one, for calls through a function
    pointer (which fastbp never makes), and, unless the function is internal, a CPython
    one that unboxes Python's arguments. An internal function is called only from other
    kernels: it has no CPython wrapper, and a call from Python raises TypeError (without
    the wrapper it would crash the interpreter). The wrappers were 2.6 s of the 18 s cold
    first fit, because each function's library, its wrappers included, is optimised and
    turned into machine code again in every kernel that calls it (CONTRIBUTING.md,
    "Compile time")."""
    dispatcher = njit(error_model=ERRORS, no_cfunc_wrapper=True, no_cpython_wrapper=internal, **options)(function)
    if internal:
        dispatcher.__class__ = _Internal
    return dispatcher


# (the same for the implementations of the @overload functions below)
INTERNAL_JIT = {"error_model": ERRORS, "no_cfunc_wrapper": True, "no_cpython_wrapper": True}


class _Internal(CPUDispatcher):
    """A kernel that only other kernels call (see _compiled)."""

    def __call__(self, *args, **kwargs):
        raise TypeError("fastbp kernels: %s is called only from other kernels, not from Python"
                        % self.py_func.__name__)


class _FingerprintedImpl(caching.CompileResultCacheImpl):
    def __init__(self, py_func):
        super().__init__(py_func)
        stamp = self._locator.get_source_stamp
        self._locator.get_source_stamp = lambda: (stamp(), FINGERPRINT)


class _LockedIndex(caching.IndexDataCacheFile):
    """Numba's index of a function's cached versions, each save made under a lock. Numba
    saves a version by reading the index, adding the version, writing the index back and
    then the version's data file, under a name the index did not hold yet. Two processes
    saving versions of one function at once (Dask workers sharing a cache, fastbp's
    compile children) could each drop the other's entry, or both take the same data file,
    and then one signature's entry would load the other's code. Under the lock (an
    advisory one, on a file in the cache directory) a save sees every save before it.
    Loads take no lock: each write replaces a whole file (Numba's _open_for_write)."""

    def save(self, key, data):
        with _locked(os.path.join(self._cache_path, "fastbp-index.lock")):
            super().save(key, data)


@contextlib.contextmanager
def _locked(path):
    """An exclusive advisory lock on the file at path for the block, where the platform
    has flock (not Windows: there, Numba's own unlocked save)."""
    try:
        import fcntl
        handle = open(path, "a")
    except (ImportError, OSError):
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


class _FingerprintedCache(caching.FunctionCache):
    """Numba's cache of compiled functions, whose index is stale when kernels.py changes
    (as Numba's) or when FINGERPRINT does, and is saved under a lock (_LockedIndex)."""
    _impl_class = _FingerprintedImpl

    def __init__(self, py_func):
        super().__init__(py_func)
        self._cache_file.__class__ = _LockedIndex
# Numba's parallel=True also turns array expressions, np.zeros and slice assignments into
# parallel regions: inside the per-sample loop that is a region (and a barrier) per sample.
# The kernels ask for explicit prange loops only. (An options object, not a dict: Numba
# pops the keys of a dict, so a second kernel or specialisation would get the defaults.)
PRANGE_ONLY = ParallelOptions({"prange": True, "comprehension": False, "reduction": False,
                               "inplace_binop": False, "setitem": False, "numpy": False,
                               "stencil": False, "fusion": False})
PARALLEL_MIN_WEIGHTS = 32768

# Numba's on-disk cache is keyed on the file that defines a kernel (its time stamp and
# size). These kernels compile in code from other modules too: functions.py's activations
# and derivatives, the codes and flags of its tables (and so the dispatch generated from
# them, below), optimizers.RULE_CODES and HYPER_SLOTS. So each kernel's cache entry is keyed
# on kernels.py's stamp and the fingerprint of all of that (dependencies()): a change in
# any of it recompiles the kernels, with nothing to update by hand. (_FingerprintedCache:
# Numba's own cache, with the fingerprint added to the stamp it checks.)


def dependencies():
    """The fingerprint of what the kernels compile in from other modules."""
    import hashlib
    import inspect
    parts = [inspect.getsource(f) for f in COMPILED_IN]
    parts += ["%s=%r" % (name, f.__globals__[name]) for f in COMPILED_IN for name in f.__code__.co_names
              if isinstance(f.__globals__.get(name), (int, float))]   # the numbers they read (GELU's)
    parts += [repr(sorted(table.items())) for table in (ACTIVATION_CODES, LOSS_CODES, RULE_CODES, HYPER_SLOTS)]
    parts += [repr(NEEDS_Z.tolist()), repr(DELTA_OF.tolist()), repr(DELTA_KINDS)]
    parts += [repr([(a.parameter is not None, a.own_loop) for a in ACTIVATIONS.values()])]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


# every elementwise activation of the table and its derivative (softmax is written out below)
COMPILED_IN = tuple(f for a in ACTIVATIONS.values() if a.derivative is not None for f in (a.g, a.derivative))
COMPILED_IN += tuple(penalty.gradient for penalty in PENALTIES.values())         # (and the penalties')
FINGERPRINT = dependencies()
# the tables' codes (functions.py, optimizers.py), as the kernels branch on them
SIGMOID, SOFTMAX = ACTIVATION_CODES["sigmoid"], ACTIVATION_CODES["softmax"]
MSE, BINARY_CROSS_ENTROPY, CROSS_ENTROPY, POISSON = (
    LOSS_CODES[name] for name in ("mse", "binary_cross_entropy", "cross_entropy", "poisson"))
CHAIN, MATCHING = (DELTA_KINDS.index(kind) for kind in ("chain", "matching"))


# ---------------------------------------------------------------- the exponential
# functions.exponential is np.exp, which Numba compiles to a call of libm's exp, one
# number at a time (pip's llvmlite has no vector maths library), where NumPy's own exp is
# vectorised. Inside the kernels it is this instead, arithmetic only, so that a loop of
# sigmoids vectorises: e^x = 2^n e^r, n the integer nearest x / ln 2, r = x - n ln 2 in two parts
# (|r| <= ln(2) / 2), e^r by its Taylor polynomial (to degree 12 in float64, 7 in float32:
# the remainder is below the dtype's rounding), and 2^n as two powers of two built from
# their bits (so that 2^1024 and subnormal results need no special case). Below the
# dtype's range it gives 0, above it inf, and NaN stays NaN.
# tests/test_agreement.py holds it to np.exp: relative error below 1e-15 (float64) and
# 2e-7 (float32), and its 0, inf and NaN.


@intrinsic
def _float_from_bits(typingctx, bits, like):
    """The float of like's type whose bits are the integer bits' low 32 or 64."""
    if like not in (types.float32, types.float64):
        return None
    float_type, width = (ir.FloatType(), 32) if like == types.float32 else (ir.DoubleType(), 64)
    if not isinstance(bits, types.Integer) or bits.bitwidth < width:
        return None

    def codegen(context, builder, signature, args):
        value = args[0] if bits.bitwidth == width else builder.trunc(args[0], ir.IntType(width))
        return builder.bitcast(value, float_type)
    return like(bits, like), codegen


def _exponential_constants(dtype, degree, ln2_hi, ln2_lo, low, high, mantissa_bits, exponent_bias):
    """ln 2 = ln2_hi + ln2_lo, ln2_hi with trailing zero bits (so that n ln2_hi is exact);
    e^x is 0 below low and inf above high (the logarithms of half the smallest subnormal
    and of the largest float)."""
    f = dtype.type
    return dict(log2e=f(1.0 / math.log(2.0)), ln2_hi=f(ln2_hi), ln2_lo=f(ln2_lo), low=f(low), high=f(high),
                half=f(0.5), zero=f(0.0), inf=f(np.inf), shift=mantissa_bits, bias=exponent_bias,
                integer=np.int32 if dtype == np.float32 else np.int64,     # (as wide as the float)
                taylor=tuple(f(1.0 / math.factorial(k)) for k in range(degree, -1, -1)))


_EXPONENTIAL = {    # (fdlibm's and Cephes's splits of ln 2)
    types.float64: _exponential_constants(np.dtype(np.float64), 12, 6.93147180369123816490e-01,
                                          1.90821492927058770002e-10, -745.1332191019412, 709.782712893384,
                                          52, 1023),
    types.float32: _exponential_constants(np.dtype(np.float32), 7, 0.693359375, -2.12194440e-4, -103.97208,
                                          88.72284, 23, 127),
}


@overload(exponential, jit_options=dict(INTERNAL_JIT, fastmath={"contract"}))
def _exponential(x):
    if x not in _EXPONENTIAL:
        return None
    c = _EXPONENTIAL[x]
    log2e, ln2_hi, ln2_lo, low, high = c["log2e"], c["ln2_hi"], c["ln2_lo"], c["low"], c["high"]
    half, zero, inf, t, shift, bias = c["half"], c["zero"], c["inf"], c["taylor"], c["shift"], c["bias"]
    integer = c["integer"]

    def e(x):
        xc = min(max(x, low), high)
        n = np.floor(xc * log2e + half)
        r = (xc - n * ln2_hi) - n * ln2_lo
        p = t[0]
        for k in range(1, len(t)):                     # Horner's rule
            p = p * r + t[k]
        k = integer(n)
        y = p * _float_from_bits((k // 2 + bias) << shift, x) * _float_from_bits((k - k // 2 + bias) << shift, x)
        if x > high:
            y = inf
        if x < low:
            y = zero
        if x != x:
            y = x
        return y
    return e



# ---------------------------------------------------------------- the hyperbolic tangent
# functions.hyperbolic_tangent is np.tanh, which Numba compiles to libm's tanh, one number
# at a time (tanh and GELU layers, LM's and SCG's usual networks). Inside the kernels it is
# this instead, arithmetic and the exponential above, so that a loop of them vectorises:
# with y = |x| and e = e^(-2y), tanh y = 1 - 2e / (1 + e), whose rounding is that of 1
# minus a small term, as a correctly rounded tanh's (tanh's derivative 1 - a^2 reads a's
# last bits). Near 0 that difference cancels, so below `small` it is tanh's Taylor series
# to y^13 instead (its remainder there is below the dtype's rounding); the sign is x's.
# tests/test_agreement.py holds it to np.tanh over the dtype's range, and its -0, inf
# and NaN.
_TANH_SERIES = (21844 / 6081075, -1382 / 155925, 62 / 2835, -17 / 315, 2 / 15, -1 / 3, 1.0)   # z^13 ... z
_TANH = {kind: dict(one=f(1.0), two=f(2.0), small=f(small), series=tuple(f(c) for c in _TANH_SERIES))
         for kind, f, small in ((types.float64, np.float64, 0.1), (types.float32, np.float32, 0.3))}


@overload(hyperbolic_tangent, jit_options=dict(INTERNAL_JIT, fastmath={"contract"}))
def _hyperbolic_tangent(x):
    if x not in _TANH:
        return None
    c = _TANH[x]
    one, two, small, series = c["one"], c["two"], c["small"], c["series"]

    def t(x):
        y = abs(x)
        e = exponential(-two * y)
        r = one - two * e / (one + e)
        y2 = y * y
        p = series[0]
        for k in range(1, len(series)):               # Horner's rule in y^2
            p = p * y2 + series[k]
        if y < small:
            r = y * p
        return math.copysign(r, x)                     # (NaN: e, and so r, is NaN)
    return t


def _prefer_openmp():
    """Put OpenMP first in Numba's threading-layer priority, unless the user chose."""
    if "NUMBA_THREADING_LAYER" in os.environ or "NUMBA_THREADING_LAYER_PRIORITY" in os.environ:
        return
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]


_prefer_openmp()


NOTICE_AFTER = 1.0     # seconds a first call may take before fastbp says it is compiling


_NOTHING = contextlib.nullcontext()
_warm = set()          # kernels that first_call has seen with a signature
_watching = {}         # thread id -> Numba compiles begun in that thread while watched
_refusing = set()      # threads in which a compile of fastbp's raises WouldCompile


class WouldCompile(Exception):
    """Raised inside refusing_compiles() where Numba was about to compile one of fastbp's
    functions (never for a load from its cache)."""


class _CompileListener(numba_event.Listener):
    """Numba raises "numba:compile" only for a real compile, never for a load from its
    on-disk cache, and before it compiles: first_call's notice and compiles() listen for
    it, counting fastbp's own functions (Numba's typed-list helpers, called from Python,
    are never cached: they compile in every process, in well under a second), and
    refusing_compiles() stops the compile."""

    def on_start(self, event):
        thread = threading.get_ident()
        if not event.data["dispatcher"].py_func.__module__.startswith("fastbp"):
            return
        if thread in _refusing:
            raise WouldCompile(event.data["dispatcher"].py_func.__name__)
        if thread in _watching:
            _watching[thread] += 1

    def on_end(self, event):
        pass


_listener = None


def _listen():
    global _listener
    if _listener is None:
        _listener = _CompileListener()
        numba_event.register("numba:compile", _listener)


@contextlib.contextmanager
def refusing_compiles():
    """Inside the block, in this thread, a call that would make Numba compile one of
    fastbp's functions raises WouldCompile before anything is compiled; loads from the
    on-disk cache go ahead. (Network.warm_up asks this way whether the kernels are
    cached.)"""
    _listen()
    thread = threading.get_ident()
    _refusing.add(thread)
    try:
        yield
    finally:
        _refusing.discard(thread)


def refusing():
    """Whether this thread is inside refusing_compiles()."""
    return threading.get_ident() in _refusing


@contextlib.contextmanager
def compiles():
    """Count fastbp's functions that Numba compiles (rather than loads from its cache) in
    this thread inside the block: ``with compiles() as count: ...; count()``. (Nested
    functions count too: a kernel and its helpers.)"""
    _listen()
    thread = threading.get_ident()
    outer = _watching.get(thread)
    _watching[thread] = 0
    done = {}
    try:
        yield lambda: done["count"] if done else _watching[thread]
    finally:
        done["count"] = _watching.pop(thread)
        if outer is not None:
            _watching[thread] = outer + done["count"]


def first_call(kernel, what, seconds):
    """Around a call of a kernel: if it is the kernel's first in this process, and it is
    still running after NOTICE_AFTER seconds because Numba is compiling (not loading from
    its on-disk cache), say so on stderr while it runs: what, about how many seconds it
    takes (`seconds`: each entry point's own compile in a fresh cache on a 2-core machine,
    CONTRIBUTING.md, "Compile time"), where the cache is, and that `fastbp warm-up`
    compiles every mode ahead. Once the kernel has a signature this costs one look at
    Numba's list of them."""
    if kernel in _warm:
        return _NOTHING
    if kernel.signatures:
        _warm.add(kernel)
        return _NOTHING
    return _announce(kernel, what, seconds)


def cache_dir(kernel):
    """The directory Numba's on-disk cache keeps this kernel in, or None if unknown."""
    return getattr(getattr(kernel, "_cache", None), "_cache_path", None)



def built_for(dispatcher, dtype):
    """Whether the dispatcher has code for arrays of this dtype (the first argument's), in
    this process or in Numba's on-disk cache for this processor."""
    kind = numba.from_dtype(np.dtype(dtype))
    if any(signature[0].dtype == kind for signature in dispatcher.overloads):
        return True
    return any(getattr(key[0][0], "dtype", None) == kind for key in cached_keys(dispatcher))


def cached_keys(dispatcher):
    """The keys of Numba's on-disk index of the dispatcher's versions compiled for this
    source (an index written for another version of the file is none) and this
    processor: (signature, processor, code hashes)."""
    index = getattr(getattr(getattr(dispatcher, "_cache", None), "_cache_file", None), "_load_index", None)
    if index is None:
        return []
    try:
        keys = index()
    except Exception:               # an unreadable index: Numba recompiles, and so counts none
        return []
    magic = numba.core.registry.cpu_target.target_context.codegen().magic_tuple()
    return [key for key in keys if len(key) > 1 and key[1] == magic]


@contextlib.contextmanager
def _announce(kernel, what, seconds):
    where = cache_dir(kernel)
    message = ("fastbp: compiling the %s, once: about %d s on a 2-core machine (%s)..."
               % (what, seconds, "later runs load it from Numba's cache in %s; `fastbp warm-up` compiles "
                  "every mode ahead" % where if where
                  else "no on-disk cache can be written here: each process compiles it again"))
    with compiles() as count:
        timer = threading.Timer(NOTICE_AFTER, lambda: count() and print(message, file=sys.stderr, flush=True))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()


def threading_info():
    """The threading layer in use (after a parallel kernel ran) and the thread count."""
    try:
        layer = numba.threading_layer()
    except ValueError:               # no parallel kernel has run yet
        layer = "not yet chosen (preferring %s)" % numba.config.THREADING_LAYER_PRIORITY[0]
    return {"threading_layer": layer, "threads": numba.get_num_threads()}


# ---------------------------------------------------------------- per-unit helpers

# ---------------------------------------------------------------- the dispatch
# The kernels hold a layer's activation as its code and its parameter (0 where it has
# none): acts = (codes, parameters, dropout, masks, noise), codes and parameters one per
# layer (Network builds them); the last three are training's (see "dropout and input
# noise" below): each layer's dropout rate, and the batch's masks and input noise,
# (0, 0) arrays when none is drawn. What a
# code does is generated here from functions.ACTIVATIONS, so a new table entry needs no
# edit in this file:
#   _activate(code, p, z), _derivative(code, p, z, a): g(z) and g'(z), a chain of branches
#     on the code that calls the table's own functions, compiled; _activate_others and
#     _derivative_others, the same chains without the own_loop activations, for the loops
#     below (the rest of each loop has those: compiling their bodies into the chain too
#     only made the kernels' cold compile longer);
#   _activate_vector(code, p, a): a[i] <- g(a[i]) over a vector;
#   _activate_rows(code, p, Z, bias): Z[s, j] <- g(Z[s, j] + bias[j]) over a block of rows;
#   _chain_delta(code, p, z, o, t, d): an output layer's d[i] <- (o[i] - t[i]) g'(z[i]);
#   _delta_into(propagate_error, code, p, z, a, d, e): d[i] <- d[i] g'(z[i]), in place, d
#     holding what the layer above sent back, and e[i] <- that or the new d[i] (it took
#     the sent-back error as an argument of its own, which every caller passed as d too:
#     the loop's run-time alias check then failed and it ran scalar, 2.7x as slow);
#   _masked_delta(code, p, Z, A, back, E, masks, r0, first): a hidden layer with dropout
#     (see "dropout and input noise"), for a block of rows, from back = W^T e of the layer
#     above: back[s, j] and E[s, j] <- back[s, j] m g'(z), m the unit's mask in masks[r0 +
#     s, first + j] (0, or 1 / (1 - p) with A = m g(z), so g(z) is A / m). Dropout takes
#     the delta rule: what is sent back is d. A dropped unit's g' is read at a = 0, finite
#     for every activation, times m = 0.
# A loop that calls _activate or _derivative branches on the code at every element, which
# keeps it scalar. So the generated loops give each own_loop activation a loop of its own,
# which vectorises (a ReLU layer's bias and activation ran ten times as fast as through the
# chain). The others share one loop through the chain (softplus calls libm's log1p, scalar
# without SVML; GELU, the kernels' tanh, in that scalar loop). The generated source is
# kernels.DISPATCH_SOURCE.


def _dispatch_source(names=tuple(ACTIVATIONS)):
    """The source of the dispatch functions above for the activations `names` (all of the
    table's, or a build's: see "builds"), and the namespace of the compiled functions they
    call."""
    namespace, calls = {"__name__": __name__}, {}
    for name, act in ACTIVATIONS.items():
        if act.derivative is None or name not in names:     # (softmax: written out below)
            continue
        if act.own_loop and act.needs_z:            # (_bias_activate keeps z through the chain)
            raise ValueError("activation %r: an own_loop activation cannot need z" % name)
        code, p = ACTIVATION_CODES[name], (", p" if act.parameter else "")
        namespace["g_%s" % name], namespace["d_%s" % name] = _TABLE_KERNELS[name]
        calls[code] = ("g_%s({x}%s)" % (name, p), "d_%s({z}, {a}%s)" % (name, p), act.own_loop)

    def chain(signature, which, x, z="z", a="a", others=False):
        lines = ["def %s:" % signature]
        for code, call in calls.items():
            if others and call[2]:
                continue                            # (own_loop: the loops handle it)
            lines += ["    if code == %d:" % code, "        return " + call[which].format(x=x, z=z, a=a)]
        if len(lines) == 1:                         # (none in the build: the return gives the type)
            return lines + ["    if code >= 0:", "        raise ValueError('fastbp kernels: no such elementwise "
                            "activation code in this build')", "    return %s" % (x if which == 0 else a)]
        return lines + ["    raise ValueError('fastbp kernels: no such elementwise activation code')"]

    def unswitched(signature, loops, body, which, general, x="x", z="z[i]", a="a[i]"):
        """One loop nest per own_loop code, and one through the chain for the rest."""
        lines, keyword = ["def %s:" % signature], "if"
        inner = "    " * (len(loops) + 2)
        nest = ["    " * (k + 2) + loop for k, loop in enumerate(loops)]
        for code, call in calls.items():
            if call[2]:
                lines += ["    %s code == %d:" % (keyword, code)] + nest
                lines += [inner + line.format(call=call[which].format(x=x, z=z, a=a)) for line in body]
                keyword = "elif"
        if all(call[2] for call in calls.values()):     # (no other in the build)
            return lines + ["    else:", "        raise ValueError('fastbp kernels: no such elementwise activation "
                            "code in this build')"]
        lines += ["    else:"] + nest
        return lines + [inner + line.format(call=general) for line in body]

    source = chain("_activate(code, p, x)", 0, "x") + chain("_derivative(code, p, z, a)", 1, "x")
    source += chain("_activate_others(code, p, x)", 0, "x", others=True)
    source += chain("_derivative_others(code, p, z, a)", 1, "x", others=True)
    source += unswitched("_activate_vector(code, p, a)", ["for i in range(a.size):"],
                         ["x = a[i]", "a[i] = {call}"], 0, "_activate_others(code, p, x)")
    source += unswitched("_activate_rows(code, p, Z, bias)",
                         ["for s in range(Z.shape[0]):", "for j in range(Z.shape[1]):"],
                         ["x = Z[s, j] + bias[j]", "Z[s, j] = {call}"], 0, "_activate_others(code, p, x)")
    source += unswitched("_masked_delta(code, p, Z, A, back, E, masks, r0, first)",
                         ["for s in range(A.shape[0]):", "for j in range(A.shape[1]):"],
                         ["m = masks[r0 + s, first + j]", "q = m if m != 0 else 1.0",
                          "d = back[s, j] * m * {call}", "back[s, j] = d", "E[s, j] = d"], 1,
                         "_derivative_others(code, p, Z[s, j], A[s, j] / q)", z="Z[s, j]", a="A[s, j] / q")
    source += unswitched("_chain_delta(code, p, z, o, t, d)", ["for i in range(o.size):"],
                         ["d[i] = (o[i] - t[i]) * {call}"], 1, "_derivative_others(code, p, z[i], o[i])",
                         a="o[i]")
    source += unswitched("_delta_into(propagate_error, code, p, z, a, d, e)", ["for i in range(a.size):"],
                         ["v = d[i]", "d[i] = v * {call}", "e[i] = v if propagate_error else d[i]"], 1,
                         "_derivative_others(code, p, z[i], a[i])")
    return "\n".join(source) + "\n", namespace


DISPATCH = ("_activate", "_derivative", "_activate_others", "_derivative_others", "_activate_vector",
            "_activate_rows", "_chain_delta", "_delta_into", "_masked_delta")
# each activation's g and g', compiled once for every build's dispatch
_TABLE_KERNELS = {name: (kernel(act.g, internal=True), kernel(act.derivative, internal=True))
                  for name, act in ACTIVATIONS.items() if act.derivative is not None}


def _dispatch(names=tuple(ACTIVATIONS)):
    """The dispatch functions (DISPATCH) for the activations `names`, compiled: their
    namespace, and their source. Compiled into the kernels that call them, not cached on
    their own (Numba caches only functions with a source file); the fingerprint covers
    what they are generated from."""
    source, namespace = _dispatch_source(names)
    exec(compile(source, "<fastbp.kernels: the dispatch generated from functions.ACTIVATIONS>", "exec"), namespace)
    for f in DISPATCH:     # (tests call _activate and _derivative from Python; the loops, the last five, vectorise)
        namespace[f] = _compiled(namespace[f], internal=f not in ("_activate", "_derivative"),
                                 **({} if f in DISPATCH[:4] else {"fastmath": FASTMATH}))
    return namespace, source


_namespace, DISPATCH_SOURCE = _dispatch()
(_activate, _derivative, _activate_others, _derivative_others, _activate_vector, _activate_rows, _chain_delta,
 _delta_into, _masked_delta) = (_namespace[f] for f in DISPATCH)


@kernel(internal=True, inline="always")
def _codes(acts, l):
    """Layer l's activation code and parameter."""
    return acts[0][l], acts[1][l]


@kernel(internal=True)
def _softmax_rows(Z):
    """Each row of Z (C-contiguous) <- its softmax (shifted by the row's maximum). Indexed
    in two dimensions, with no view per row (a call per row with views cost more than the
    row). The exponentials in one loop over all of Z: a loop over one row of a few classes
    is too short to vectorise, and ran them one at a time (10,000 rows of 10 classes,
    float32, on one core of the 2-core Intel Xeon: 0.82 ms, now 0.14)."""
    m, n = Z.shape
    for s in range(m):
        top = Z[s, 0]
        for j in range(1, n):
            top = max(top, Z[s, j])
        for j in range(n):
            Z[s, j] = Z[s, j] - top
    flat = Z.reshape(m * n)
    for k in range(flat.size):
        flat[k] = exponential(flat[k])
    for s in range(m):
        total = 0.0
        for j in range(n):
            total += Z[s, j]
        for j in range(n):
            Z[s, j] = Z[s, j] / total


@kernel
def _activate_inplace(code, p, a):
    """a holds a layer's pre-activations z; replace them by g(z)."""
    if code == SOFTMAX:
        _softmax_rows(a.reshape((1, a.size)))
    else:
        _activate_vector(code, p, a)


@kernel(internal=True, inline="always")
def _row(flat, offset, j, n):
    """Row j of the (., n) matrix stored at flat[offset:], as a view. Loops index the
    view from 0, which Numba knows is never negative, so they vectorise (an index like
    flat[offset + i] keeps a negative-index check in the loop, which stops that)."""
    return flat[offset + j * n:offset + (j + 1) * n]


@kernel(internal=True, fastmath=FASTMATH)
def _dot(row, v, acc):
    for i in range(v.size):
        acc += row[i] * v[i]
    return acc


@kernel(inline="always")
def _sample_loss(loss, o, t, eps):
    """One sample's loss (functions.LOSSES), the loss chosen by its code."""
    total = 0.0
    if loss == MSE:
        for k in range(o.size):
            total += 0.5 * (t[k] - o[k]) ** 2
    elif loss == BINARY_CROSS_ENTROPY or loss == CROSS_ENTROPY:
        for k in range(o.size):
            p = min(max(o[k], eps), 1.0 - eps)
            if t[k] != 0:                  # a zero target adds nothing: skip its log
                total -= t[k] * np.log(p)
            if loss == BINARY_CROSS_ENTROPY and t[k] != 1:
                total -= (1.0 - t[k]) * np.log(1.0 - p)
    elif loss == POISSON:
        for k in range(o.size):
            total += o[k] - t[k]
            if t[k] > 0:
                total += t[k] * np.log(t[k] / o[k])
    else:
        raise ValueError("fastbp kernels: unknown loss code")
    return total


@kernel(internal=True)
def _output_delta(loss, code, p, z, o, t, d):
    """d <- dE/dz of the output layer (reference.output_delta), by the loss's kind of
    delta (functions.LOSSES); z: the layer's pre-activations, read where g' needs them."""
    kind = DELTA_OF[loss]
    if kind == MATCHING:
        for k in range(o.size):
            d[k] = o[k] - t[k]
    elif kind != CHAIN:
        raise ValueError("fastbp kernels: unknown kind of output delta")
    elif code == SOFTMAX:
        s = 0.0
        for k in range(o.size):
            s += o[k] * (o[k] - t[k])
        for k in range(o.size):
            d[k] = o[k] * ((o[k] - t[k]) - s)
    else:
        _chain_delta(code, p, z, o, t, d)


@kernel(internal=True, fastmath=FASTMATH)
def _weigh(sw, d, e):
    """A sample's output error terms and what it sends back, times its weight sw."""
    for k in range(d.size):
        d[k] *= sw
        e[k] *= sw


@kernel(internal=True)
def _send_back_output(propagate_error, o, t, d, e):
    """e <- what the output layer sends back: its raw error o - t (seed 000) or its delta."""
    for k in range(o.size):
        e[k] = o[k] - t[k] if propagate_error else d[k]


# Per-sample SGD updates the first layer, the largest, by a rank-1 step per sample:
# W <- decay * W - g x^T, g = lr * delta. Rather than read and write all of W for every
# sample, sgd_epoch keeps the steps of a block of BLOCK samples pending and applies them
# together, in the same pass that computes the next block's products W x:
#   W_p = s_p W_b - sum_{i<p} c_i g_i x_i^T     (W_b: W at the start of the block)
#   W_p x_p = s_p (W_b x_p) - sum_{i<p} c_i g_i (x_i . x_p)
# with s_p = decay^p and c_i = decay^(p-1-i). This is exactly per-sample SGD (only the
# rounding differs); it moves W between cache and core once per block instead of twice
# per sample. The pass takes two rows at a time, so that each input element it loads
# serves both (16 multiply-adds per 10 loads instead of 9 per 9: the pass was bound by
# loads, now by arithmetic). Rows are split between threads in pairs, so a row's
# arithmetic, and so its rounding, is the same with any number of threads.
BLOCK = 4


@kernel(internal=True, fastmath=FASTMATH)
def _block_row(w, j, n, scale, H, x0, x1, x2, x3, y0, y1, y2, y3, base):
    """Row j of the first layer: apply the block's pending steps, row <- scale * row -
    sum_i H[i, j] x_i, then take the updated row's products with the next block's inputs."""
    row = _row(w, 0, j, n)
    h0, h1, h2, h3 = H[0, j], H[1, j], H[2, j], H[3, j]
    acc0 = acc1 = acc2 = acc3 = scale - scale
    for c in range(n):
        v = row[c] * scale - (h0 * x0[c] + h1 * x1[c] + h2 * x2[c] + h3 * x3[c])
        row[c] = v
        acc0 += v * y0[c]
        acc1 += v * y1[c]
        acc2 += v * y2[c]
        acc3 += v * y3[c]
    base[0, j], base[1, j], base[2, j], base[3, j] = acc0, acc1, acc2, acc3


@kernel(internal=True, fastmath=FASTMATH)
def _block_row_pair(w, j, n, scale, H, x0, x1, x2, x3, y0, y1, y2, y3, base):
    """Rows j and j + 1 of the first layer, as _block_row, in one sweep over the inputs."""
    ra, rb = _row(w, 0, j, n), _row(w, 0, j + 1, n)
    a0, a1, a2, a3 = H[0, j], H[1, j], H[2, j], H[3, j]
    b0, b1, b2, b3 = H[0, j + 1], H[1, j + 1], H[2, j + 1], H[3, j + 1]
    p0 = p1 = p2 = p3 = q0 = q1 = q2 = q3 = scale - scale
    for c in range(n):
        u0, u1, u2, u3 = x0[c], x1[c], x2[c], x3[c]
        va = ra[c] * scale - (a0 * u0 + a1 * u1 + a2 * u2 + a3 * u3)
        vb = rb[c] * scale - (b0 * u0 + b1 * u1 + b2 * u2 + b3 * u3)
        ra[c] = va
        rb[c] = vb
        v0, v1, v2, v3 = y0[c], y1[c], y2[c], y3[c]
        p0 += va * v0
        p1 += va * v1
        p2 += va * v2
        p3 += va * v3
        q0 += vb * v0
        q1 += vb * v1
        q2 += vb * v2
        q3 += vb * v3
    base[0, j], base[1, j], base[2, j], base[3, j] = p0, p1, p2, p3
    base[0, j + 1], base[1, j + 1], base[2, j + 1], base[3, j + 1] = q0, q1, q2, q3


@kernel(internal=True, fastmath=FASTMATH)
def _block_rows(w, lo, hi, n0, scale, H, X, pending, upcoming, base):
    """Rows lo..hi-1 of the first layer (lo even): the block's pass, two rows at a time."""
    x0, x1, x2, x3 = X[pending[0]], X[pending[1]], X[pending[2]], X[pending[3]]
    y0, y1, y2, y3 = X[upcoming[0]], X[upcoming[1]], X[upcoming[2]], X[upcoming[3]]
    for j in range(lo, hi - 1, 2):
        _block_row_pair(w, j, n0, scale, H, x0, x1, x2, x3, y0, y1, y2, y3, base)
    if (hi - lo) % 2:
        _block_row(w, hi - 1, n0, scale, H, x0, x1, x2, x3, y0, y1, y2, y3, base)


@kernel(internal=True, parallel=PRANGE_ONLY, fastmath=FASTMATH)
def _block_rows_parallel(w, n0, n1, scale, H, X, pending, upcoming, base, threads):
    """The block's pass with the rows split in `threads` ranges of whole pairs."""
    pairs = (n1 + 1) // 2
    for c in prange(threads):
        lo = 2 * (pairs * c // threads)
        hi = min(n1, 2 * (pairs * (c + 1) // threads))
        _block_rows(w, lo, hi, n0, scale, H, X, pending, upcoming, base)


@kernel(internal=True)
def _first_layer_block(w, n0, n1, scale, H, X, pending, upcoming, base, threads):
    """Apply the steps of the samples X[pending]; base[q] <- W x for x = X[upcoming[q]]."""
    if threads > 1 and n0 * n1 >= PARALLEL_MIN_WEIGHTS:
        _block_rows_parallel(w, n0, n1, scale, H, X, pending, upcoming, base, threads)
    else:                # (n1 - n1: a 0 that is not a literal, which would compile _block_rows once more)
        _block_rows(w, n1 - n1, n1, n0, scale, H, X, pending, upcoming, base)


@kernel(internal=True)
def _block_samples(order, first, rows):
    """rows <- the BLOCK sample indices order[first:first + BLOCK], padded with order[0]."""
    rows[:] = order[0]
    for q in range(min(BLOCK, order.size - first)):
        rows[q] = order[first + q]


# ---------------------------------------------------------------- training kernels

# The per-sample helpers below are inlined into sgd_epoch (inline="always", as is _row):
# every array view that crosses a call costs an atomic reference count up and down, and
# per sample those came to about 1 microsecond (half the time of a 784-2-10 network's
# step, ~8% of 784-100-10's); inlined, Numba prunes most of them.
@kernel(internal=True, fastmath=FASTMATH, inline="always")
def _layer_products(w, b, sizes, w_off, u_off, l, a, zero):
    """One sample's z = W a + b of layer l + 1 (l >= 1), into its part of a."""
    n_in = sizes[l]
    a_in = a[u_off[l - 1]:u_off[l]]
    for j in range(sizes[l + 1]):
        a[u_off[l] + j] = _dot(_row(w, w_off[l], j, n_in), a_in, zero) + b[u_off[l] + j]


@kernel(internal=True, inline="always")
def _finish_layer(acts, u_off, l, a, zs):
    """Layer l + 1's part of a holds its z: keep z in zs where g' needs it, then a <- g(z)."""
    code, p = _codes(acts, l)
    if NEEDS_Z[code]:
        for j in range(u_off[l], u_off[l + 1]):    # (an element loop: see "Compile time" above)
            zs[j] = a[j]
    _activate_inplace(code, p, a[u_off[l]:u_off[l + 1]])


@kernel(internal=True, fastmath=FASTMATH, inline="always")
def _top_backward(w, b, sizes, w_off, u_off, acts, loss, propagate_error, has_bias, a, zs, d, e, t, sw,
                  weighted, lr, decay, eps):
    """One sample's step after its forward pass (a, zs): the output layer's error terms
    (times the sample's weight sw), then the backward pass and update of layers L..2 in
    one pass over each W: each row first sends its error back (old weights), then takes
    its step. Leaves layer 1's error terms in d[:n1]; returns the sample's loss times sw."""
    L = sizes.size - 1
    o = a[u_off[L - 1]:]
    sample = sw * _sample_loss(loss, o, t, eps)
    _output_delta(loss, *_codes(acts, L - 1), zs[u_off[L - 1]:], o, t, d[u_off[L - 1]:])
    _send_back_output(propagate_error, o, t, d[u_off[L - 1]:], e[u_off[L - 1]:])
    if weighted:
        _weigh(sw, d[u_off[L - 1]:], e[u_off[L - 1]:])
    for l in range(L - 1, 0, -1):
        n_in = sizes[l]
        a_in = a[u_off[l - 1]:u_off[l]]
        back = d[u_off[l - 1]:u_off[l]]
        back[:] = 0.0
        for j in range(sizes[l + 1]):
            g = lr * d[u_off[l] + j]
            ej = e[u_off[l] + j]
            row = _row(w, w_off[l], j, n_in)
            for i in range(n_in):
                wji = row[i]
                back[i] += wji * ej
                row[i] = wji * decay - g * a_in[i]
            if has_bias:
                b[u_off[l] + j] -= g
        _delta_into(propagate_error, *_codes(acts, l - 1), zs[u_off[l - 1]:u_off[l]], a_in, back,
                      e[u_off[l - 1]:u_off[l]])
    return sample


@kernel(parallel=PRANGE_ONLY, fastmath=FASTMATH)
def sgd_epoch(w, b, sizes, w_off, u_off, acts, loss, propagate_error, has_bias,
              X, T, S, order, lr, decay, eps, tiny, threads):
    """Per-sample SGD over the samples X[order], in one call. Returns the summed loss,
    each sample's taken before its update (reference.train_epoch with batch_size=1).
    S: the samples' weights (over X's rows), or empty: each step is then s_i times the
    sample's (its loss, and so every error term, scaled by s_i).

    decay = 1 - lr * l2 (the L2 penalty's shrink of every weight at each step); tiny is
    the dtype's smallest normal number. The first layer takes its steps in blocks (see
    BLOCK above); the layers above, one by one. threads > 1 splits the first layer's
    block pass, and the forward pass of layers with at least PARALLEL_MIN_WEIGHTS
    weights, over that many threads (threads.py decides); the result is the same."""
    L = sizes.size - 1
    n0, n1 = sizes[0], sizes[1]
    m = order.size
    weighted = S.size > 0
    zero = lr - lr
    one = lr / lr          # (zero + 1 would be float64: a Python int promotes float32)
    a = np.empty(u_off[L], w.dtype)
    zs = np.empty(u_off[L], w.dtype)           # pre-activations, kept where g' needs them
    d = np.empty(u_off[L], w.dtype)
    e = np.empty(u_off[L], w.dtype)
    base = np.empty((BLOCK, n1), w.dtype)      # W_b x for each sample of the block
    H = np.zeros((BLOCK, n1), w.dtype)         # pending steps: row j moves by -H[i, j] x_i
    coef = np.empty(BLOCK, w.dtype)
    inner = np.empty(BLOCK, w.dtype)
    pending, upcoming = np.empty(BLOCK, np.int64), np.empty(BLOCK, np.int64)
    _block_samples(order, order.size - order.size, upcoming)    # (a 0 that is not a literal, as above)
    _first_layer_block(w, n0, n1, one, H, X, upcoming, upcoming, base, threads)
    total = 0.0
    for start in range(0, m, BLOCK):
        count = min(BLOCK, m - start)
        scale = one
        for p in range(count):
            x = X[order[start + p]]
            t = T[order[start + p]]
            sw = S[order[start + p]] if weighted else one
            # forward: layer 1 from the block's products and the pending steps
            for i in range(p):
                inner[i] = coef[i] * _dot(X[order[start + i]], x, zero)
            for j in range(n1):
                z = scale * base[p, j] + b[j]
                for i in range(p):
                    z -= inner[i] * H[i, j]
                a[j] = z
            _finish_layer(acts, u_off, 0, a, zs)
            for l in range(1, L):
                n_in, n_out = sizes[l], sizes[l + 1]
                if threads > 1 and n_in * n_out >= PARALLEL_MIN_WEIGHTS:
                    a_in = a[u_off[l - 1]:u_off[l]]
                    for j in prange(n_out):
                        a[u_off[l] + j] = _dot(_row(w, w_off[l], j, n_in), a_in, zero) + b[u_off[l] + j]
                else:
                    _layer_products(w, b, sizes, w_off, u_off, l, a, zero)
                _finish_layer(acts, u_off, l, a, zs)
            total += _top_backward(w, b, sizes, w_off, u_off, acts, loss, propagate_error, has_bias,
                                   a, zs, d, e, t, sw, weighted, lr, decay, eps)
            # layer 1: the bias takes its step now, the weights' step joins the pending
            for i in range(p):
                coef[i] *= decay
            coef[p] = one
            scale *= decay
            for j in range(n1):
                g = lr * d[j]
                if abs(g) < tiny:      # a subnormal step: slows the block pass a
                    g = zero           # hundredfold, moves no weight; flush it
                H[p, j] = g
                if has_bias:
                    b[j] -= g
        for i in range(BLOCK):
            for j in range(n1):
                H[i, j] = coef[i] * H[i, j] if i < count else zero
        pending, upcoming = upcoming, pending
        _block_samples(order, start + BLOCK, upcoming)
        _first_layer_block(w, n0, n1, scale, H, X, pending, upcoming, base, threads)
    return total



# ---------------------------------------------------------------- sparse inputs
# X as CSR (data, indices, indptr: scipy.sparse's arrays): row r's non-zeros are
# data[indptr[r]:indptr[r + 1]] in the columns indices[...]. Only the first layer reads X,
# so only it changes: its products and its gradient visit the non-zeros only.
# Per-sample SGD works on a transposed copy of the first layer, V (n_in, n1), so that a
# non-zero input's weights to every unit are one contiguous row (in W's own layout they
# are n_in apart: a cache line each). And L2's decay would touch every first-layer weight
# at every step: there W^T = scale * V (scale a number), so that the decay is one
# multiplication of scale and a step touches only the sample's rows of V (scikit-learn's
# SGDClassifier keeps its weights so). V is folded into scale whenever scale falls below
# RESCALE_BELOW, and goes back into W when the call returns.
# The batched kernels work on W^T too: batch_epoch transposes the first layer's weights
# and its optimizer state in place for the epoch (the update rules are elementwise: the
# layout is theirs to choose) and back at its end; products and gradient then take, for
# each non-zero x_k of a row, the contiguous row k of W^T and of the gradient.
RESCALE_BELOW = 1e-6


@kernel(fastmath=FASTMATH)
def sgd_epoch_sparse(w, b, sizes, w_off, u_off, acts, loss, propagate_error, has_bias,
                     data, indices, indptr, T, S, order, lr, decay, eps, tiny):
    """Per-sample SGD as sgd_epoch, over the CSR rows X[order]: the first layer's forward
    pass and step cost the row's non-zeros (times the layer's width), not its length. One
    thread: a sparse row's work is too small to share."""
    L = sizes.size - 1
    n1 = sizes[1]
    weighted = S.size > 0
    zero = lr - lr
    one = lr / lr
    a = np.empty(u_off[L], w.dtype)
    zs = np.empty(u_off[L], w.dtype)
    d = np.empty(u_off[L], w.dtype)
    e = np.empty(u_off[L], w.dtype)
    V = _matrix(w, w_off, sizes, 0).T.copy()   # the first layer's W^T = scale * V
    scale = one
    total = 0.0
    for q in range(order.size):
        r = order[q]
        lo, hi = indptr[r], indptr[r + 1]
        t = T[r]
        sw = S[r] if weighted else one
        z = a[:n1]
        z[:] = zero
        for k in range(lo, hi):                 # z = W x: the rows of V of x's non-zeros
            _axpy(data[k], V[indices[k]], z)
        for j in range(n1):
            z[j] = scale * z[j] + b[j]
        _finish_layer(acts, u_off, 0, a, zs)
        for l in range(1, L):
            _layer_products(w, b, sizes, w_off, u_off, l, a, zero)
            _finish_layer(acts, u_off, l, a, zs)
        total += _top_backward(w, b, sizes, w_off, u_off, acts, loss, propagate_error, has_bias,
                               a, zs, d, e, t, sw, weighted, lr, decay, eps)
        # layer 1: W <- decay W - g x^T, as scale <- decay scale, V <- V - x (g / scale)^T
        scale *= decay
        g = e[:n1]                                 # (e's layer-1 part is free now)
        for j in range(n1):
            g[j] = lr * d[j]
            if abs(g[j]) < tiny:       # a subnormal step moves no weight (as sgd_epoch)
                g[j] = zero
            if has_bias:
                b[j] -= g[j]
        for k in range(lo, hi):
            _axpy(-data[k] / scale, g, V[indices[k]])
        if scale < RESCALE_BELOW:
            V *= scale
            scale = one
    W = _matrix(w, w_off, sizes, 0)
    for k in range(V.shape[0]):                  # W <- (scale V)^T, element by element ("Compile time")
        for j in range(n1):
            W[j, k] = V[k, j] * scale
    return total


@kernel(internal=True, fastmath=FASTMATH)
def _axpy(c, x, y):
    """y <- y + c x."""
    for i in range(y.size):
        y[i] += c * x[i]


@kernel(internal=True, fastmath=FASTMATH)
def _sparse_products(WT, data, indices, indptr, rows, Z):
    """Z[s] <- W x for the CSR rows x = X[rows[s]] (WT: the first layer's W^T, (n_in, n1)):
    the sum over x's non-zeros x_k of x_k WT[k]."""
    for s in range(rows.size):
        z = Z[s]
        z[:] = 0.0
        for k in range(indptr[rows[s]], indptr[rows[s] + 1]):
            _axpy(data[k], WT[indices[k]], z)


@kernel(internal=True, fastmath=FASTMATH)
def _sparse_gradient(data, indices, indptr, rows, D, GT):
    """GT <- X[rows]^T D for CSR rows: the first layer's summed gradient, transposed."""
    GT[:] = 0.0
    for s in range(rows.size):
        for k in range(indptr[rows[s]], indptr[rows[s] + 1]):
            _axpy(data[k], D[s], GT[indices[k]])


@kernel(internal=True)
def transpose_block(flat, n_rows, n_cols):
    """flat[:n_rows * n_cols], a (n_rows, n_cols) matrix, <- its transpose, in place."""
    M = flat[:n_rows * n_cols].reshape((n_rows, n_cols)).T.copy()
    flat[:n_rows * n_cols] = M.reshape(M.size)


# ---------------------------------------------------------------- batched kernels
# A batch's matrix products go to BLAS (Numba's np.dot, through SciPy): per layer,
# Z = A_in W^T, the sent-back error E W, and the gradient D^T A_in. Everything around
# them (biases, activations, error terms, losses, the update) runs in place, with no
# temporaries. Buffers are lists of per-layer (rows, n_l) arrays, so that every product
# reads and writes contiguous memory.
# These kernels are serial. batch_epoch calls them on ranges of a batch's rows from
# threads of its own, with BLAS held to one thread (interleaving Numba's parallel regions
# with a multi-threaded BLAS made the two thread pools wait on each other: a mini-batch
# epoch ran up to 100 times slower).

def gradient_rows(X, D, j0, j1, out):
    """out[j0 * n_in : j1 * n_in] <- the rows j0:j1 of D^T X, flattened: units j0..j1-1's
    summed weight gradient, for the B rows of the inputs X (B, n_in) and their error
    terms D (B, n_units). In the kernels, one BLAS product that reads D's columns j0:j1
    where they are (np.dot would need them copied)."""
    n_in = X.shape[1]
    out[j0 * n_in:j1 * n_in] = (D[:, j0:j1].T @ X).ravel()


@overload(gradient_rows, jit_options=INTERNAL_JIT)
def _gradient_rows(X, D, j0, j1, out):
    if X.dtype not in (types.float32, types.float64):
        return None
    ensure_blas()
    gemm = _BLAS().numba_xxgemm(X.dtype)
    kind = ord("s" if X.dtype == types.float32 else "d")
    no, yes = ord("n"), ord("t")

    def product(X, D, j0, j1, out):
        B, n_in = X.shape
        n_units = D.shape[1]
        if j1 <= j0:
            return
        if B == 0:
            for k in range(j0 * n_in, j1 * n_in):
                out[k] = 0
            return
        # alpha 1 and beta 0, from np.empty with a size that is not a literal: its
        # implementation for that signature is compiled anyway (np.ones and np.zeros were
        # 0.19 s more of a cold first fit)
        scalars = np.empty(B - B + 2, X.dtype)
        scalars[0], scalars[1] = 1, 0
        # column-major BLAS: out's rows j0:j1 (n_in x (j1 - j0), ld n_in) = X^T (n_in x B,
        # as stored) times D[:, j0:j1] (B x (j1 - j0): D's storage read transposed, ld n_units)
        gemm(kind, no, yes, n_in, j1 - j0, B, scalars.ctypes, X.ctypes, n_in, _flat(D)[j0:].ctypes, n_units,
             scalars[1:].ctypes, out[j0 * n_in:].ctypes, n_in)
    return product


@kernel
def layer_buffers(sizes, rows, dtype_like):
    """One (rows, n_l) array per layer, in the dtype of dtype_like."""
    buffers = List()
    for l in range(1, sizes.size):
        buffers.append(np.empty((rows, sizes[l]), dtype_like.dtype))
    return buffers


@kernel(internal=True, inline="always")
def _matrix(flat, w_off, sizes, l):
    return flat[w_off[l]:w_off[l + 1]].reshape((sizes[l + 1], sizes[l]))


@kernel(internal=True)
def _flat(M):
    """A contiguous (rows, n) block as one vector (a view), for elementwise helpers."""
    return M.reshape(M.size)


@kernel(internal=True, fastmath=FASTMATH)
def _bias_activate(Z, bias, code, p, keep):
    """Z <- g(Z + bias), indexed in two dimensions (no views per row: for small layers
    their cost would dominate); keep <- Z + bias first, for an activation whose
    derivative needs z (keep may be Z itself when nothing needs it)."""
    if NEEDS_Z[code]:
        for s in range(Z.shape[0]):
            for j in range(Z.shape[1]):
                keep[s, j] = Z[s, j] + bias[j]
                Z[s, j] = _activate_others(code, p, keep[s, j])     # (no own_loop one needs z)
    elif code == SOFTMAX:
        for s in range(Z.shape[0]):
            for j in range(Z.shape[1]):
                Z[s, j] += bias[j]
        _softmax_rows(Z)
    else:
        _activate_rows(code, p, Z, bias)


# ---------------------------------------------------------------- dropout and input noise
# Inverted dropout (Srivastava et al., 2014): while training, a hidden unit's output is
# kept with probability 1 - p and then divided by 1 - p, or dropped to 0; so inference
# needs no change. Gaussian input noise adds std * N(0, 1) to every input of a training
# row. Both come from the network's own generator, batch after batch in a fixed order:
# for each batch that takes a step, the normals of its rows' inputs (row by row), then a
# 32-bit uniform integer for every unit of every layer with a rate (row by row, layer by
# layer; two from each 64-bit step of the generator, reference.dropout_draws);
# reference.train_epoch draws the same numbers. Network.train_epoch draws them with NumPy
# for a few batches at a time and batch_epoch turns them into each batch's masks and
# noise (NumPy's draws from the raw 64-bit stream were the fastest of the ways tried,
# compiled draws the slowest). A seed so
# reproduces a run bit for bit, whatever the threads, and a checkpoint (which saves the
# generator) resumes the same masks.


@kernel(internal=True)
def _fill_regularisers(acts, hyper, sizes, u_off, B, U, N, pos):
    """The batch's input noise (acts[4][:B] <- std * N[pos:pos + B]) and dropout masks
    (acts[3][:B]: 0 where the 32-bit U[pos + s] is below p 2^32 for the layer's rate p,
    else 1 / (1 - p), for each layer with p > 0, U's columns layer after layer). U and N: the draws of every
    stepping batch of the call, row after row (Network.train_epoch draws them)."""
    std, noise, masks, rates = hyper[H_INPUT_NOISE], acts[4], acts[3], acts[2]
    if std > 0:
        for s in range(B):
            for i in range(sizes[0]):
                noise[s, i] = std * N[pos + s, i]
    column = 0
    for l in range(sizes.size - 2):
        p = rates[l]
        if p > 0:
            zero, n, first = p - p, u_off[l + 1] - u_off[l], u_off[l]
            kept = p / p / (p / p - p)                       # 1 / (1 - p), in the dtype
            below = np.float64(p) * 4294967296.0             # p 2^32: U's 32-bit uniforms
            for s in range(B):
                u, mask = U[pos + s, column:column + n], masks[s, first:first + n]
                for j in range(n):
                    mask[j] = zero if u[j] < below else kept
            column += u_off[l + 1] - u_off[l]


@kernel(fastmath=FASTMATH)
def forward_batch(w, b, sizes, w_off, u_off, acts, Xb, A, Zs, r0):
    """The batched forward pass: A[l][r0:r0 + B] <- layer l+1's outputs for the B rows of
    Xb, and Zs[l][r0:r0 + B] <- its pre-activations where the derivative needs them (Zs
    may be A itself when nothing will be propagated back: inference)."""
    r1 = r0 + Xb.shape[0]
    np.dot(Xb, _matrix(w, w_off, sizes, 0).T, A[0][r0:r1])        # z = W x, for every row
    _forward_from_products(w, b, sizes, w_off, u_off, acts, r0, r1, A, Zs)


@kernel(fastmath=FASTMATH)
def predict_batch(w, b, sizes, w_off, u_off, acts, X):
    """Inference: (the last layer's outputs for the rows of X, a new (m, n_out) array; the
    first row whose first product W x is NaN or inf, or -1). The other layers' buffers are
    made and dropped in here: handing typed lists of them to and from Python cost more
    than predicting a small batch.

    That row is the test of X for NaN and inf (backends.NumbaBackend.outputs). A NaN or an
    inf among a row's inputs makes each of the row's products NaN or inf (NaN times
    anything is NaN, inf times 0 is NaN, inf plus -inf too), so with finite weights a row
    is finite if its first product is. (Finite inputs can overflow too: the caller then
    tests X itself.) A pass of its own over X took 1-2 ms of a 12 ms predict of 10,000 rows
    (784-100-10, float32); this one reads m numbers."""
    m = X.shape[0]
    A = layer_buffers(sizes, m, w)
    np.dot(X, _matrix(w, w_off, sizes, 0).T, A[0])               # z = W x, for every row
    first = m - m - 1
    for s in range(m):
        if not np.isfinite(A[0][s, 0]):
            first = s
            break
    _forward_from_products(w, b, sizes, w_off, u_off, acts, m - m, m, A, A)   # (no z kept)
    return A[sizes.size - 2], first


@kernel(fastmath=FASTMATH)
def forward_batch_sparse(w, b, sizes, w_off, u_off, acts, WT, data, indices, indptr, rows, A, Zs):
    """forward_batch for the CSR rows X[rows] (see "sparse inputs"), the first layer's
    weights given as WT, (n_in, n1) (w's first layer is not read)."""
    _sparse_products(WT, data, indices, indptr, rows, A[0][:rows.size])
    _forward_from_products(w, b, sizes, w_off, u_off, acts, 0, rows.size, A, Zs)


@kernel(internal=True, fastmath=FASTMATH, inline="always")
def _forward_from_products(w, b, sizes, w_off, u_off, acts, r0, r1, A, Zs):
    """The forward pass of rows r0:r1 from A[0][r0:r1] = the first layer's products W x:
    each layer's bias and activation, and the products of the layers above."""
    for l in range(sizes.size - 1):
        Z = A[l][r0:r1]
        if l > 0:
            np.dot(A[l - 1][r0:r1], _matrix(w, w_off, sizes, l).T, Z)   # z = W a, for every row
        _bias_activate(Z, b[u_off[l]:u_off[l + 1]], *_codes(acts, l), Zs[l][r0:r1])
        if acts[2][l] > 0:                                        # dropout (training only)
            masks = acts[3]
            for s in range(r1 - r0):
                for j in range(Z.shape[1]):
                    Z[s, j] *= masks[r0 + s, u_off[l] + j]


@kernel(fastmath=FASTMATH)
def backward_batch(w, sizes, w_off, u_off, acts, loss, propagate_error, A, Zs, Tb, Sb, D, E, losses, eps, r0):
    """The batched delta propagation: D[l][r0:r0 + B] <- every layer's error terms for the
    forward pass (A, Zs) of those rows and their B targets Tb; losses[:B] <- their
    per-sample losses. Sb: the rows' weights, or empty: each row's losses and error terms
    are then times its weight. E is scratch: what each layer sends back."""
    B = Tb.shape[0]
    r1 = r0 + B
    L = sizes.size - 1
    O, DL, EL, ZL = A[L - 1][r0:r1], D[L - 1][r0:r1], E[L - 1][r0:r1], Zs[L - 1][r0:r1]
    for s in range(B):
        losses[s] = _sample_loss(loss, O[s], Tb[s], eps)
    code, p = _codes(acts, L - 1)
    if code == SOFTMAX and DELTA_OF[loss] == CHAIN:    # softmax's Jacobian: row by row
        for s in range(B):
            _output_delta(loss, code, p, ZL[s], O[s], Tb[s], DL[s])
    else:
        _output_delta(loss, code, p, _flat(ZL), _flat(O), _flat(Tb), _flat(DL))
    _send_back_output(propagate_error, _flat(O), _flat(Tb), _flat(DL), _flat(EL))
    if Sb.size > 0:
        for s in range(B):
            losses[s] *= Sb[s]
            _weigh(Sb[s], DL[s], EL[s])
    for l in range(L - 1, 0, -1):
        back = D[l - 1][r0:r1]
        np.dot(E[l][r0:r1], _matrix(w, w_off, sizes, l), back)    # W^T e, for every row
        if acts[2][l - 1] > 0:
            _masked_delta(*_codes(acts, l - 1), Zs[l - 1][r0:r1], A[l - 1][r0:r1], back, E[l - 1][r0:r1],
                           acts[3], r0, u_off[l - 1])
        else:
            _delta_into(propagate_error, *_codes(acts, l - 1), _flat(Zs[l - 1][r0:r1]), _flat(A[l - 1][r0:r1]),
                          _flat(back), _flat(E[l - 1][r0:r1]))


@kernel(fastmath=FASTMATH)
def jacobian_block(w, b, sizes, w_off, u_off, acts, has_bias, Xb, eps, J):
    """J[s * K + k] <- d o_k / d theta for each row s of Xb and output unit k (theta: the
    weights, then the biases if has_bias, flat; reference.jacobian): the forward pass
    once, then one backward pass per output unit, mse's error o - t made the unit vector
    e_k, and each row's outer products. Returns the block's outputs. (Its buffers are
    made in here, as predict_batch's.)"""
    B = Xb.shape[0]
    L = sizes.size - 1
    K = sizes[L]
    n_w = w_off[L]
    A, Zs, D, E = layer_buffers(sizes, B, w), layer_buffers(sizes, B, w), layer_buffers(sizes, B, w), \
        layer_buffers(sizes, B, w)
    Tb = np.empty((B, K), w.dtype)
    losses = np.empty(B)
    forward_batch(w, b, sizes, w_off, u_off, acts, Xb, A, Zs, 0)
    O = A[L - 1]
    for k in range(K):
        for s in range(B):
            for j in range(K):
                Tb[s, j] = O[s, j] - (1.0 if j == k else 0.0)
        backward_batch(w, sizes, w_off, u_off, acts, MSE, False, A, Zs, Tb, Tb[0, :0], D, E, losses, eps, 0)
        for s in range(B):
            row = J[s * K + k]
            for l in range(L):
                n_in = sizes[l]
                a_in = Xb[s] if l == 0 else A[l - 1][s]
                d = D[l][s]
                for j in range(sizes[l + 1]):
                    base = w_off[l] + j * n_in
                    for i in range(n_in):
                        row[base + i] = d[j] * a_in[i]
                    if has_bias:
                        row[n_w + u_off[l] + j] = d[j]
    return O


@kernel(fastmath=FASTMATH)
def gradient_batch(sizes, w_off, u_off, Xb, A, D, dw, db):
    """dw, db <- the batch's summed gradient: dW = D^T A_in, db = the sum of D's rows. The
    mean is that times 1/B, which optimizer_step applies inside its update (a pass over
    the gradient saved)."""
    B = Xb.shape[0]
    np.dot(D[0][:B].T, Xb, _matrix(dw, w_off, sizes, 0))
    _gradient_above(sizes, w_off, u_off, B, A, D, dw, db, 0)


@kernel(fastmath=FASTMATH)
def gradient_batch_sparse(sizes, w_off, u_off, data, indices, indptr, rows, A, D, GT, dw, db):
    """gradient_batch for the CSR rows X[rows], the first layer's gradient into GT as its
    transpose, (n_in, n1) (dw's first layer is not written)."""
    _sparse_gradient(data, indices, indptr, rows, D[0], GT)
    _gradient_above(sizes, w_off, u_off, rows.size, A, D, dw, db, 0)


@kernel(internal=True, fastmath=FASTMATH)
def _gradient_above(sizes, w_off, u_off, B, A, D, dw, db, first):
    """gradient_batch's weights above the first layer, and the biases of the layers from
    `first` up."""
    for l in range(first, sizes.size - 1):
        d = D[l][:B]
        if l > 0:
            np.dot(d.T, A[l - 1][:B], _matrix(dw, w_off, sizes, l))
        _bias_gradient(d, db[u_off[l]:u_off[l + 1]], 0, d.shape[1])


@kernel(internal=True, fastmath=FASTMATH)
def _bias_gradient(d, bias, j0, j1):
    """bias[j0:j1] <- the sums of d's columns j0:j1 (rows in order). The loops run over
    views from index 0: indexed from j0, which could be negative for all the compiler
    knows, each index carried a wraparound check and the loop stayed scalar (9x as slow)."""
    out, first = bias[j0:j1], d[0, j0:j1]
    for j in range(out.size):                    # (an element loop: see "Compile time" above)
        out[j] = first[j]
    for s in range(1, d.shape[0]):
        row = d[s, j0:j1]
        for j in range(out.size):
            out[j] += row[j]


@kernel(fastmath=FASTMATH)
def _gather(X, rows, out):
    """out[s] <- the row X[rows[s]], for each s. An element loop of its own: as a slice
    assignment (out[s] = X[rows[s]]) the copy of a shuffled epoch took half as long again
    as a sequential copy; this loop takes a sequential copy's time."""
    for s in range(rows.size):
        source, target = X[rows[s]], out[s]
        for j in range(target.size):
            target[j] = source[j]


@kernel
def draw_batches(u, m, out):
    """out[s] <- a sample of u.shape[1] rows of 0..m-1 drawn without replacement, for each
    step s, from the uniform numbers u[s] in [0, 1): a partial Fisher-Yates shuffle of a
    permutation carried from step to step (each step's draw is uniform whatever the
    permutation it starts from). O(batch) a step, however large m."""
    perm = np.arange(m)
    for s in range(u.shape[0]):
        for i in range(u.shape[1]):
            j = i + min(int(u[s, i] * (m - i)), m - i - 1)
            perm[i], perm[j] = perm[j], perm[i]
            out[s, i] = perm[i]


# The optimizers' update rules (optimizers.RULES; their formulas, one step to a line, in
# reference.py): one compiled function per rule, chosen by the rule's code in _update.
# hyper is the optimizer's vector (optimizers.HYPER_SLOTS) in the network's dtype (tiny: its
# smallest normal number), state the rule's arrays over the flat parameters (state[k] is
# the k-th), t the step's number. Every scalar comes in p's dtype (a Python 1 - beta would
# make float32 math float64).
SGD, MOMENTUM, NESTEROV, ADAM, RMSPROP, RPROP, IRPROP_PLUS = (
    RULE_CODES[name] for name in ("sgd", "momentum", "nesterov", "adam", "rmsprop", "rprop", "irprop+"))
H_LR, H_TINY, H_MOMENTUM, H_BETA1, H_BETA2, H_EPSILON, H_RHO, H_CLIP, H_MAX_NORM, H_INPUT_NOISE = (
    HYPER_SLOTS[name] for name in ("lr", "tiny", "momentum", "beta1", "beta2", "epsilon", "rho", "clip", "max_norm",
                                   "input_noise"))
H_ETA_MINUS, H_ETA_PLUS, H_STEP_MIN, H_STEP_MAX = (
    HYPER_SLOTS[name] for name in ("eta_minus", "eta_plus", "step_min", "step_max"))
# the penalties' strengths: hyper[H_PENALTIES:H_PENALTIES + N_PENALTIES], in PENALTIES' order
H_PENALTIES, N_PENALTIES = HYPER_SLOTS[next(iter(PENALTIES))], len(PENALTIES)
assert [HYPER_SLOTS[name] - H_PENALTIES for name in PENALTIES] == list(range(N_PENALTIES))


def _penalty_source():
    """_penalty(w, strengths): sum over functions.PENALTIES of strength * f'(w), generated
    from the table (so a new penalty is its table entry and a HYPER_SLOTS name)."""
    terms = ["strengths[%d] * penalty_%s(w)" % (k, name) for k, name in enumerate(PENALTIES)]
    return "def _penalty(w, strengths):\n    return " + " + ".join(terms) + "\n"


PENALTY_SOURCE = _penalty_source()
_penalty_namespace = {"__name__": __name__}
_penalty_namespace.update({"penalty_%s" % name: kernel(p.gradient, internal=True) for name, p in PENALTIES.items()})
exec(compile(PENALTY_SOURCE, "<fastbp.kernels: the penalty generated from functions.PENALTIES>", "exec"),
     _penalty_namespace)
_penalty = _compiled(_penalty_namespace["_penalty"], internal=True, fastmath=FASTMATH)


@kernel(internal=True, fastmath=FASTMATH)
def _flush(v, tiny):
    """v, or 0 where v is subnormal: long runs drive some parameters and moments there
    (weights of inputs that are always 0 decay under L2), and subnormal arithmetic is
    up to a hundred times slower. NaN and inf pass unchanged (the comparison is false for
    NaN), so that a diverging run is still seen: written the other way round, v if
    abs(v) >= tiny else v - v, fastmath folded NaN - NaN to 0."""
    return v - v if abs(v) < tiny else v


# The rules. Each keeps what it stores in a local and computes on that (mk = ...; m[k] =
# mk; then mk, not m[k], in the step): read back from memory after a store to another
# array, Adam's step took 2.0 ns a parameter in float64 and, in some processes (where the
# arrays happened to lie), 0.95-1.04 ns in float32; now 0.93-1.02 and 0.39-0.43 ns in
# every process, with the same numbers bit for bit (asv_benchmarks/README.md, "The rules
# keep what they store in locals"; asv's UpdateRules).
@kernel(internal=True, fastmath=FASTMATH)
def _sgd(p, g, state, lo, hi, gscale, strengths, hyper, t):
    lr, tiny = hyper[H_LR], hyper[H_TINY]
    p, g = p[lo:hi], g[lo:hi]
    for k in range(p.size):
        p[k] = _flush(p[k] - lr * (g[k] * gscale + _penalty(p[k], strengths)), tiny)


@kernel(internal=True, fastmath=FASTMATH)
def _momentum(p, g, state, lo, hi, gscale, strengths, hyper, t, nesterov):
    lr, tiny, mu = hyper[H_LR], hyper[H_TINY], hyper[H_MOMENTUM]
    p, g, v = p[lo:hi], g[lo:hi], state[0][lo:hi]
    for k in range(p.size):
        gk = g[k] * gscale + _penalty(p[k], strengths)
        vk = _flush(mu * v[k] - lr * gk, tiny)
        v[k] = vk
        p[k] = _flush(p[k] + (mu * vk - lr * gk if nesterov else vk), tiny)


@kernel(internal=True, fastmath=FASTMATH)
def _adam(p, g, state, lo, hi, gscale, strengths, hyper, t):
    lr, tiny, beta1, beta2, epsilon = hyper[H_LR], hyper[H_TINY], hyper[H_BETA1], hyper[H_BETA2], hyper[H_EPSILON]
    one = lr / lr
    c1, c2 = one - beta1, one - beta2
    lr_t = _cast(hyper, lr * np.sqrt(1.0 - beta2 ** t) / (1.0 - beta1 ** t))   # bias correction
    p, g, m, s = p[lo:hi], g[lo:hi], state[0][lo:hi], state[1][lo:hi]
    for k in range(p.size):
        gk = g[k] * gscale + _penalty(p[k], strengths)
        mk = _flush(beta1 * m[k] + c1 * gk, tiny)
        sk = _flush(beta2 * s[k] + c2 * gk * gk, tiny)
        m[k], s[k] = mk, sk
        p[k] = _flush(p[k] - lr_t * mk / (np.sqrt(sk) + epsilon), tiny)


@kernel(internal=True, fastmath=FASTMATH)
def _rmsprop(p, g, state, lo, hi, gscale, strengths, hyper, t):
    lr, tiny, rho, epsilon = hyper[H_LR], hyper[H_TINY], hyper[H_RHO], hyper[H_EPSILON]
    c = lr / lr - rho
    p, g, s = p[lo:hi], g[lo:hi], state[0][lo:hi]
    for k in range(p.size):
        gk = g[k] * gscale + _penalty(p[k], strengths)
        sk = _flush(rho * s[k] + c * gk * gk, tiny)
        s[k] = sk
        p[k] = _flush(p[k] - lr * gk / (np.sqrt(sk) + epsilon), tiny)


@kernel(internal=True, fastmath=FASTMATH)
def _rprop(p, g, state, lo, hi, gscale, strengths, hyper, t, backtrack, rose):
    """iRPROP-, or with backtrack iRPROP+ (rose: the batch's loss is above the last
    step's). A NaN or inf gradient passes into the parameter, so that divergence is seen."""
    tiny, eta_minus, eta_plus = hyper[H_TINY], hyper[H_ETA_MINUS], hyper[H_ETA_PLUS]
    low, high = hyper[H_STEP_MIN], hyper[H_STEP_MAX]
    p, g, prev, size = p[lo:hi], g[lo:hi], state[0][lo:hi], state[1][lo:hi]
    for k in range(p.size):
        gk = g[k] * gscale + _penalty(p[k], strengths)
        d = hyper[H_LR] if t == 1 else size[k]
        flipped = gk * prev[k] < 0
        if gk * prev[k] > 0:
            d *= eta_plus
        elif flipped:
            d *= eta_minus
            gk = gk - gk
        dk = _flush(min(max(d, low), high), tiny)
        size[k] = dk
        move = (dk if gk > 0 else -dk if gk < 0 else gk - gk) if np.isfinite(gk) else gk
        if backtrack:
            change = state[2][lo:hi]
            ck = (-change[k] if rose else change[k] - change[k]) if flipped else -move
            change[k] = ck
            p[k] = _flush(p[k] + ck, tiny)
        else:
            p[k] = _flush(p[k] - move, tiny)
        prev[k] = gk


# _update(rule, p, g, state, lo, hi, gscale, strengths, hyper, t, rose): p[lo:hi] <- one
# step of the rule (each rule reads and writes only p, g and its state arrays' lo:hi), g
# the loss gradient (times gscale, for clipping), plus the penalties' gradient (_penalty;
# strengths are zeros for biases). rose: whether the batch's loss is above the last step's
# (iRPROP+ reads it). Subnormal results are flushed. It is a chain of branches on the
# rule's code, generated from STEPS (so that a build can leave rules out, see "builds"):
# for each rule (or pair, told apart by a flag that is a value, not a literal, so that
# their function compiles once), the call of its function above. A code that is not in
# the chain is an error.
STEPS = {
    ("sgd",): "_sgd(p, g, state, lo, hi, gscale, strengths, hyper, t)",
    ("momentum", "nesterov"): "_momentum(p, g, state, lo, hi, gscale, strengths, hyper, t, rule == NESTEROV)",
    ("adam",): "_adam(p, g, state, lo, hi, gscale, strengths, hyper, t)",
    ("rmsprop",): "_rmsprop(p, g, state, lo, hi, gscale, strengths, hyper, t)",
    ("rprop", "irprop+"): "_rprop(p, g, state, lo, hi, gscale, strengths, hyper, t, rule == IRPROP_PLUS, rose)",
}
assert {rule for rules in STEPS for rule in rules} <= set(RULE_CODES)   # (lm, br, scg: methods.py)


def _update_for(rules=tuple(RULE_CODES)):
    """_update for the rules named (all, or a build's), compiled."""
    lines, keyword = ["def _update(rule, p, g, state, lo, hi, gscale, strengths, hyper, t, rose):"], "if"
    for names, call in STEPS.items():
        codes = [RULE_CODES[name] for name in names if name in rules]
        if codes:
            lines += ["    %s %s:" % (keyword, " or ".join("rule == %d" % code for code in codes)), "        " + call]
            keyword = "elif"
    lines += ["    else:", "        raise ValueError('fastbp kernels: no such optimizer rule code in this build')"]
    namespace = dict(globals())                  # (the rules' functions and codes)
    exec(compile("\n".join(lines) + "\n", "<fastbp.kernels: _update generated from STEPS>", "exec"), namespace)
    return _compiled(namespace["_update"], internal=True, fastmath=FASTMATH)


_update = _update_for()


@kernel(internal=True)
def _cast(like, value):
    """value in the dtype of the array like (Numba types lr * a_float64 as float64)."""
    out = np.empty(1, like.dtype)
    out[0] = value
    return out[0]


@kernel(internal=True, fastmath=FASTMATH)
def _squared_norm(g):
    total = 0.0
    for k in range(g.size):
        total += g[k] * g[k]
    return total


@kernel(fastmath=FASTMATH)
def optimizer_step(rule, w, b, dw, db, has_bias, hyper, state_w, state_b, t, batch, rose=False):
    """One step of the rule on the flat parameters from the gradients dw, db summed over a
    batch of `batch` samples (their mean is that over batch; with sample weights, batch is
    their total), as reference.step after its gradients: clip, add the penalties'
    gradients, update. t is the step's number, from 1; rose, whether the batch's mean
    loss is above the last step's. (max_norm: see _max_norm_rows.)"""
    clip = hyper[H_CLIP]
    strengths = hyper[H_PENALTIES:H_PENALTIES + N_PENALTIES]
    norm = np.sqrt(_squared_norm(dw) + (_squared_norm(db) if has_bias else 0.0)) / batch if clip > 0 else 0.0
    gscale = _cast(hyper, (clip / norm if norm > clip else 1.0) / batch)   # the mean, clipped
    start = w.size - w.size                  # (0 as a size: a literal 0 compiles _update once more)
    _update(rule, w, dw, state_w, start, w.size, gscale, strengths, hyper, t, rose)
    if has_bias:
        _update(rule, b, db, state_b, start, b.size, gscale, strengths * 0, hyper, t, rose)


# batch_epoch's step of a clipped gradient on dense rows: optimizer_step after the whole
# gradient (its norm first). Clipping is the full build's (see "builds"): the common build
# calls _left_out under this name, and so compiles no optimizer_step for dense rows.
_clipped_step = optimizer_step


@kernel(internal=True, fastmath=FASTMATH)
def _max_norm_rows(w, sizes, w_off, c, first_transposed):
    """Each hidden unit's incoming weights (the rows of every layer's W but the output's)
    scaled down to norm c where they are longer (reference.max_norm_rows). With
    first_transposed, the first layer's W is held as W^T (CSR epochs): its units are
    columns there."""
    for l in range(sizes.size - 2):
        n_in, n_out = sizes[l], sizes[l + 1]
        if l == 0 and first_transposed:
            for j in range(n_out):
                total = c - c
                for i in range(n_in):
                    total += w[i * n_out + j] * w[i * n_out + j]
                norm = np.sqrt(total)
                if norm > c:
                    for i in range(n_in):
                        w[i * n_out + j] *= c / norm
            continue
        for j in range(n_out):
            row = _row(w, w_off[l], j, n_in)
            norm = np.sqrt(_squared_norm(row))
            if norm > c:
                scale = c / norm
                for i in range(n_in):
                    row[i] *= scale


# The dense mini-batch step on several threads. Each batch is cut into `chunks` ranges of
# rows and the first layer's units into `chunks` blocks, both fixed by the shapes alone:
#   1. for each range of rows, at once: gather its rows, the forward pass, the error terms
#      (every product of those rows: one-thread BLAS calls, cache-warm passes around them),
#      and, "by ranges", every layer's weight and bias gradient over those rows alone (D^T A
#      and D's column sums, over the rows that this thread has just computed, into
#      partials[range], flat as w then b);
#   2. for each block of units (a share of every layer's), at once: their weight and bias
#      gradients over the whole batch (by ranges: the sums of the ranges' partials, in
#      order; otherwise gradient_rows and _bias_gradient over every row of the batch), and
#      (unless the gradient is clipped, which needs its whole norm first: optimizer_step
#      after) their update, while the block's gradient is in cache;
#   3. the batch's loss: on one thread.
# By ranges, each thread reads only its own rows, where the other way each reads the rows of
# the other ranges (bs - span of them, each the inputs of every layer, from the other cores'
# caches) but adds up no partials, each as large as the weights. So by ranges pays when the
# rows it saves outweigh the weights it adds: dense rows, and w.size <= 2 (bs - span) times
# the layers' inputs summed (on two threads, one hidden layer of n1 units over many inputs:
# about n1 <= 2 span; one range alone: never). On the 2-core Intel Xeon, an epoch the other
# way over one by ranges (CHANGELOG.md, 0.2.0), float32: 784-100-10 at batch 200 1.15x in
# order and 1.24x shuffled, at batch 128 1.02-1.20x, 784-200-10 at batch 200 1.03-1.08x;
# float64, 784-100-10 at batch 200: 1.01-1.04x. At batch 64 (32-row ranges) 0.96-0.99x at
# 784-100-10 and 0.84x at 784-200-10, which keep the blocks of units.
# Every rule is elementwise (_update on a range lo:hi), so a block's update is the same
# arithmetic as the whole vector's.
# BLAS runs on one thread inside (training.py sets it), so only Numba's threads are
# awake, and how many there are (threads.py's choice, numba.set_num_threads) changes who
# computes a range or a block, never what is computed: the result is the same bit for bit.
MIN_CHUNK_ROWS = 16        # rows of a batch's range, at least
MIN_CHUNK_UNITS = 8        # first-layer units of a gradient block, at least


@kernel(internal=True, fastmath=FASTMATH, inline="always")
def _rows_pass(w, b, sizes, w_off, u_off, acts, loss, propagate_error, X, T, rows, r0, r1,
               Xin, Xb, Tb, Sb, A, Zs, D, E, losses, eps, partial):
    """Step 1 for the batch's rows r0:r1 (rows: the batch's sample indices). Xin: the
    batch's inputs, Xb (gathered here) or, for rows in order, X's own slice of them.
    Unless partial is empty: partial <- these rows' share of every layer's gradient, flat
    as w then b (each layer's D^T A, then the sums of D's columns)."""
    r = rows[r0:r1]
    if Xin.ctypes.data == Xb.ctypes.data:
        _gather(X, r, Xb[r0:r1])
        noise = acts[4]
        if noise.shape[0] > 0:                           # input noise (training only: gathered rows)
            for s in range(r0, r1):
                for i in range(Xb.shape[1]):
                    Xb[s, i] += noise[s, i]
    _gather(T, r, Tb[r0:r1])
    forward_batch(w, b, sizes, w_off, u_off, acts, Xin[r0:r1], A, Zs, r0)
    backward_batch(w, sizes, w_off, u_off, acts, loss, propagate_error, A, Zs, Tb[r0:r1], Sb[r0:r1], D, E,
                   losses[r0:r1], eps, r0)
    if partial.size > 0:
        n_w = w_off[w_off.size - 1]
        for l in range(sizes.size - 1):
            d = D[l][r0:r1]
            gradient_rows(Xin[r0:r1] if l == 0 else A[l - 1][r0:r1], d, 0, sizes[l + 1],
                          partial[w_off[l]:w_off[l + 1]])
            _bias_gradient(d, partial[n_w + u_off[l]:n_w + u_off[l + 1]], n_w - n_w, sizes[l + 1])  # (0, not literal)


@kernel(internal=True)
def _in_order(rows):
    """Whether the batch's sample indices are consecutive, ascending."""
    for s in range(1, rows.size):
        if rows[s] != rows[0] + s:
            return False
    return True


@kernel(internal=True, fastmath=FASTMATH)
def _units_pass(sizes, w_off, u_off, Xin, partials, A, D, B, c, blocks, dw, db, step):
    """Step 2 for block c of `blocks`: units n_l c // blocks to n_l (c + 1) // blocks of
    every layer l (n_l its units): their weight and bias gradients over the batch's B rows
    (by ranges: the sums of the ranges' partials, in order; otherwise gradient_rows and
    _bias_gradient over every row); with step = (rule, w, b, state_w, state_b, hyper, t, gscale,
    rose, has_bias, True), their update too, while the block's gradient is in cache."""
    rule, w, b, state_w, state_b, hyper, t, gscale, rose, has_bias, update = step
    strengths = hyper[H_PENALTIES:H_PENALTIES + N_PENALTIES]
    none = strengths * 0                                         # (no penalty on biases)
    for l in range(sizes.size - 1):
        n_in, n = sizes[l], sizes[l + 1]
        j0, j1 = n * c // blocks, n * (c + 1) // blocks
        if partials.shape[1] > 0:
            n_w = w_off[w_off.size - 1]
            _sum_rows(partials, w_off[l] + j0 * n_in, w_off[l] + j1 * n_in, dw, n_w - n_w)   # (a 0 that is
            # not a literal: a literal argument is a signature of its own, see batch_epoch)
            _sum_rows(partials, n_w + u_off[l] + j0, n_w + u_off[l] + j1, db, n_w)
        else:
            d = D[l][:B]
            gradient_rows(Xin if l == 0 else A[l - 1][:B], d, j0, j1, dw[w_off[l]:w_off[l + 1]])
            _bias_gradient(d, db[u_off[l]:u_off[l + 1]], j0, j1)
        if update:
            _update(rule, w, dw, state_w, w_off[l] + j0 * n_in, w_off[l] + j1 * n_in, gscale, strengths, hyper, t,
                    rose)
            if has_bias:
                _update(rule, b, db, state_b, u_off[l] + j0, u_off[l] + j1, gscale, none, hyper, t, rose)


@kernel(internal=True, fastmath=FASTMATH)
def _sum_rows(P, lo, hi, out, shift):
    """out[lo - shift:hi - shift] <- the sum of P's rows' lo:hi, in order. The first two
    rows in one pass, through their own 1-d views: P[0, k] and a second pass over out made
    the two ranges' sum 2-3x as slow, the most costly step of an epoch's after the products."""
    first, second = P[0], P[min(1, P.shape[0] - 1)]
    if P.shape[0] == 1:
        for k in range(lo, hi):
            out[k - shift] = first[k]
    else:
        for k in range(lo, hi):
            out[k - shift] = first[k] + second[k]
    for r in range(2, P.shape[0]):
        row = P[r]
        for k in range(lo, hi):
            out[k - shift] += row[k]


@kernel(internal=True, parallel=PRANGE_ONLY, fastmath=FASTMATH)
def _in_parallel(part, w, b, sizes, w_off, u_off, acts, loss, propagate_error, X, T, rows, span, blocks,
                 Xin, Xb, Tb, Sb, A, Zs, D, E, losses, eps, partials, dw, db, step):
    """Step 1 (part 0) for every range of `span` rows, or step 2 (part 1: step, its update)
    for every one of the `blocks` blocks of units, at once. (One parallel kernel for both, apart from
    batch_epoch, so that Numba's parallel passes see only this: inside batch_epoch they
    added a third to its cold compile.)"""
    B = rows.size
    n = blocks
    if part == 0:
        n = -(-B // span)
    for c in prange(n):
        if part == 0:
            _rows_pass(w, b, sizes, w_off, u_off, acts, loss, propagate_error, X, T, rows, c * span,
                       min(B, (c + 1) * span), Xin, Xb, Tb, Sb, A, Zs, D, E, losses, eps, partials[c])
        else:
            _units_pass(sizes, w_off, u_off, Xin, partials, A, D, B, np.int64(c), blocks, dw, db, step)  # (c: unsigned)


@kernel(internal=True)
def _summed(v):
    """The sum of v's values, in order, in float64. (Not v.sum(): Numba compiles that
    once more for each set of options of the kernels that call it, four times in a cold
    first fit.)"""
    total = 0.0
    for k in range(v.size):
        total += v[k]
    return total


@kernel(internal=True)
def _before_step(losses, B, total_weight, t, last):
    """The step's number and whether the batch's mean loss rose above the last step's
    (iRPROP+ reads it); last[0] <- the batch's mean loss."""
    mean = _summed(losses[:B]) / total_weight
    rose = mean > last[0]
    last[0] = mean
    return t + 1, rose


@kernel(internal=True)
def _no_step(rule, w, b, state_w, state_b, hyper, t, has_bias):
    """_units_pass's step argument for a pass that updates nothing, of the same types: off
    is False as a bool (a literal False would be another signature, and compile
    _units_pass, _update and the parallel kernel once more, in every cold first fit)."""
    off = t < 0
    return rule, w, b, state_w, state_b, hyper, t, _cast(hyper, 0.0), off, has_bias, off


@kernel(fastmath=FASTMATH)
def batch_epoch(w, b, sizes, w_off, u_off, acts, loss, propagate_error, has_bias,
                X, data, indices, indptr, T, S, order, batch_size, rule, hyper, state_w, state_b, t0, eps,
                chunks, threads, U, N, last):
    """Mini-batch (or full-batch) gradient descent over X[order] in one call: each step
    takes the mean gradient of batch_size samples and applies the optimizer's rule
    (optimizer_step), the steps numbered from t0 + 1. The summed loss is each batch's
    taken before its step (reference.train_epoch). S: the samples' weights (over
    X's rows), or empty; with weights, a step takes the weighted mean gradient (batch_size
    1: s_i times the sample's) and a batch of total weight 0 takes none, as
    reference.train_epoch. X is dense, or empty with the rows in CSR (data, indices,
    indptr; see "sparse inputs"), or None for the three with dense X: Numba then compiles
    no sparse branch (it prunes branches on `is None` of an argument at compile time: the
    sparse path would add to the cold compile). Dense steps run in ranges and blocks
    of at most `chunks` (see above), on `threads` threads (Numba's count must be set to
    it; 1: no parallel region is entered); sparse ones on one thread. U and N: the
    uniform and normal draws for dropout masks and input noise of the stepping batches, in
    their order (see "dropout and input noise"; acts holds the masks' and the noise's
    buffers, of batch_size rows). last: [the mean loss of the last step's batch], read
    and written (iRPROP+ compares each batch's with it). Returns (the summed loss, the
    last step's number)."""
    bs = min(batch_size, order.size)
    n0, n1 = sizes[0], sizes[1]
    A, D, E = layer_buffers(sizes, bs, w), layer_buffers(sizes, bs, w), layer_buffers(sizes, bs, w)
    Zs = layer_buffers(sizes, bs, w)
    rows_buffered = bs
    if indptr is not None:
        rows_buffered = 0                  # (sparse rows are read where they are)
    Xb = np.empty((rows_buffered, X.shape[1]), X.dtype)
    Tb = np.empty((bs, T.shape[1]), T.dtype)
    Sb = np.empty(bs if S.size > 0 else 0, S.dtype)
    losses = np.empty(bs)
    dw = np.empty_like(w)
    db = np.empty_like(b)
    span = -(-bs // max(1, min(chunks, bs // MIN_CHUNK_ROWS)))       # rows of a range
    blocks = max(1, min(chunks, n1 // MIN_CHUNK_UNITS)) if bs >= 2 * MIN_CHUNK_ROWS else 1
    inputs = 0                                    # (each layer's inputs, summed: a row's reads)
    for l in range(sizes.size - 1):
        inputs += sizes[l]
    by_ranges = indptr is None and w.size <= 2 * (bs - span) * inputs        # (see above)
    partials = np.empty((-(-bs // span), w.size + b.size if by_ranges else 0), w.dtype)
    if indptr is not None:  # the first layer as W^T, its state too, for the epoch (see above)
        transpose_block(w, n1, n0)
        for k in range(state_w.shape[0]):
            transpose_block(state_w[k], n1, n0)
    WT, GT = w[:n0 * n1].reshape((n0, n1)), dw[:n0 * n1].reshape((n0, n1))
    # _in_parallel's two parts as ints that are not literals (literal 0 and 1 are two
    # signatures: the parallel kernel would compile twice)
    ROWS, UNITS = threads - threads, threads // threads
    total = 0.0
    t = t0
    drawn = threads - threads                  # rows of U and N used (a 0 that is not a literal, as below)
    for start in range(0, order.size, bs):
        rows = order[start:min(start + bs, order.size)]
        B = rows.size
        total_weight = float(B)
        if Sb.size > 0:
            for s in range(B):
                Sb[s] = S[rows[s]]
            total_weight = float(_summed(Sb[:B]))
            if not total_weight > 0:
                continue                                   # no weight: no step
            if batch_size == 1:
                total_weight = 1.0
        if acts[3].shape[0] > 0 or acts[4].shape[0] > 0:
            _fill_regularisers(acts, hyper, sizes, u_off, B, U, N, drawn)
            drawn += B
        if indptr is not None:
            _gather(T, rows, Tb[:B])
            forward_batch_sparse(w, b, sizes, w_off, u_off, acts, WT, data, indices, indptr, rows, A, Zs)
            backward_batch(w, sizes, w_off, u_off, acts, loss, propagate_error, A, Zs, Tb[:B], Sb[:B], D, E,
                           losses, eps, 0)
            gradient_batch_sparse(sizes, w_off, u_off, data, indices, indptr, rows, A, D, GT, dw, db)
            t, rose = _before_step(losses, B, total_weight, t, last)
            optimizer_step(rule, w, b, dw, db, has_bias, hyper, state_w, state_b, t, total_weight, rose)
        else:
            Xin = Xb[:B]
            ranges = -(-B // span)
            if _in_order(rows) and acts[4].shape[0] == 0:   # (shuffle=False: the rows are read where
                Xin = X[rows[0]:rows[0] + B]                 # they are, unless noise is added)
            if threads == 1 or B <= span:          # (one thread: no parallel region at all)
                for c in range(ranges):
                    _rows_pass(w, b, sizes, w_off, u_off, acts, loss, propagate_error, X, T, rows, c * span,
                               min(B, (c + 1) * span), Xin, Xb, Tb, Sb, A, Zs, D, E, losses, eps, partials[c])
            else:
                _in_parallel(ROWS, w, b, sizes, w_off, u_off, acts, loss, propagate_error, X, T, rows, span, blocks,
                             Xin, Xb, Tb, Sb, A, Zs, D, E, losses, eps, partials, dw, db,
                             _no_step(rule, w, b, state_w, state_b, hyper, t, has_bias))
            t, rose = _before_step(losses, B, total_weight, t, last)
            fused = hyper[H_CLIP] <= 0                   # (clipping needs the whole gradient's norm first)
            step = (rule, w, b, state_w, state_b, hyper, t, _cast(hyper, 1.0 / total_weight), rose, has_bias, fused)
            if threads == 1 or blocks == 1:
                for c in range(blocks):
                    _units_pass(sizes, w_off, u_off, Xin, partials[:ranges], A, D, B, c, blocks, dw, db, step)
            else:
                _in_parallel(UNITS, w, b, sizes, w_off, u_off, acts, loss, propagate_error, X, T, rows, span, blocks,
                             Xin, Xb, Tb, Sb, A, Zs, D, E, losses, eps, partials[:ranges], dw, db, step)
            if not fused:
                _clipped_step(rule, w, b, dw, db, has_bias, hyper, state_w, state_b, t, total_weight, rose)
        total += _summed(losses[:B])
        if hyper[H_MAX_NORM] > 0:
            _max_norm_rows(w, sizes, w_off, hyper[H_MAX_NORM], indptr is not None)
    if indptr is not None:
        transpose_block(w, n0, n1)
        for k in range(state_w.shape[0]):
            transpose_block(state_w[k], n0, n1)
    return total, t


def _twin(dispatcher, name, doc, **calls):
    """dispatcher's Python function compiled once more, with its options, as a kernel named
    `name` (its own entry in Numba's cache) that calls the kernels in `calls` under the
    names it calls (umap's layouts.py compiles one function both ways)."""
    f = dispatcher.py_func
    twin = pytypes.FunctionType(f.__code__, dict(f.__globals__, **calls), name, f.__defaults__, f.__closure__)
    twin.__qualname__, twin.__doc__ = name, doc
    options = {key: dispatcher.targetoptions[key] for key in ("fastmath", "parallel", "inline")
               if key in dispatcher.targetoptions}
    cached = f.__code__.co_filename == __file__          # (a generated function has no file to cache under)
    return (kernel if cached else _compiled)(twin, internal=isinstance(dispatcher, _Internal), **options)


# batch_epoch for one thread. Much of batch_epoch's cold compile is its parallel region
# (_in_parallel: Numba's parfor lowering, then the region's code, with everything it calls,
# optimised and emitted four times over). batch_epoch_serial is the same source with the
# parallel kernel left out (one thread never calls it; a call with more threads is an
# error): it computes what batch_epoch computes on any thread count, bit for bit, and
# compiles in about two thirds of the time. Runs on one thread call it, and so does a run
# whose threads the load chooses until the parallel build is compiled (by a child process,
# once the run is long enough: training.ParallelBuild). The asv_benchmarks README has the
# figures.
@kernel(internal=True)
def _one_thread_only(*args):
    raise ValueError("fastbp kernels: batch_epoch_serial runs on one thread (threads=1)")


batch_epoch_serial = _twin(batch_epoch, "batch_epoch_serial", "batch_epoch for one thread (see _twin's callers).",
                           _in_parallel=_one_thread_only)


# ---------------------------------------------------------------- builds
# The kernels above compile in all that the tables offer, whatever a run uses: every
# activation (most with a loop of their own in each dispatch function), every rule,
# dropout, input noise, max-norm and clipping; and a cold compile grows with all of it. So
# the training kernels (TRAINING) have a second build, the common one: the same source,
# with the dispatch generated for COMMON_ACTIVATIONS alone, _update for COMMON_RULES
# alone, and _left_out in place of the code of dropout, input noise, max-norm and the
# clipped step on dense rows (whose branches such a run never takes). A run whose choices
# lie within it (scikit-learn's activations and solvers' rules, none of the four) takes
# the common build, and compiles about a
# quarter less (CONTRIBUTING.md, "Compile time"); any other run takes the full build.
# Which build a run takes depends on its settings alone, so a run computes the same every
# time. Every kernel of this file that a training kernel calls is compiled once more for
# the common build, under its name + "_common" (its own entry in Numba's cache), even
# where it is the same code: a build then never links code another build's process left
# in the cache into code compiled here (a kernel compiled in the process and one loaded
# from the cache can differ in the last bit, and the one-thread and parallel builds must
# not: tests/test_threads.py).
COMMON_ACTIVATIONS = ("identity", "sigmoid", "tanh", "relu", "softmax")
COMMON_RULES = ("sgd", "momentum", "nesterov", "adam")
TRAINING = ("sgd_epoch", "sgd_epoch_sparse", "batch_epoch", "batch_epoch_serial")
_COMMON_CODES = frozenset(ACTIVATION_CODES[name] for name in COMMON_ACTIVATIONS)
_COMMON_RULE_CODES = frozenset(RULE_CODES[name] for name in COMMON_RULES)


@kernel(internal=True)
def _left_out(*args):
    raise ValueError("fastbp kernels: the common build has no dropout, input noise, max-norm or clipping")


@functools.lru_cache(maxsize=None)
def _common_replacements():
    """What the common build calls in place of the full build's, by name (made at its
    first use, once)."""
    namespace, _ = _dispatch(COMMON_ACTIVATIONS)
    replacements = {f: namespace[f] for f in DISPATCH}
    replacements.update(_update=_update_for(COMMON_RULES), _masked_delta=_left_out, _fill_regularisers=_left_out,
                        _max_norm_rows=_left_out, _clipped_step=_left_out)
    return replacements


def _names(code):
    """The global names a code object (and the code nested in it) reads."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, pytypes.CodeType):
            names |= _names(const)
    return names


def _rebuilt(dispatcher, replacements, built):
    """dispatcher's twin in the build: the kernels it calls replaced by `replacements`
    (under their names) or by their own twins. A kernel of this file always has a twin;
    another (the table's functions, the generated ones) only where what it calls
    changes. built: the dispatchers seen so far, and what they became."""
    if dispatcher not in built:
        f = dispatcher.py_func
        calls = {}
        for name in _names(f.__code__):
            callee = f.__globals__.get(name)
            if isinstance(callee, CPUDispatcher):
                target = _rebuilt(replacements.get(name, callee), replacements, built)
                if target is not callee:
                    calls[name] = target
        own = f.__code__.co_filename == __file__
        built[dispatcher] = (_twin(dispatcher, f.__qualname__ + "_common", f.__doc__, **calls) if calls or own
                             else dispatcher)
    return built[dispatcher]


_common = {}         # each kernel the common build has met: what it became there
_common_lock = threading.Lock()     # (threads of one process, a Dask worker's, may ask at once)


def common_build(name):
    """The common build of the training kernel `name` (of TRAINING): see "builds"."""
    return in_build(globals()[name], True)


def in_build(kernel, common):
    """A kernel of this file as a build compiles it: its twin in the common build, or
    itself in the full one."""
    if not common:
        return kernel
    with _common_lock:
        return _rebuilt(kernel, _common_replacements(), _common)


def build(name, activations=(), rule=SGD, extras=False):
    """The build of the training kernel `name` (of TRAINING) that a run takes: the common
    one when its activation codes and its rule's code are within COMMON_ACTIVATIONS and
    COMMON_RULES and it has no extras (dropout, input noise, max-norm, clipping), else the
    full one."""
    if extras or rule not in _COMMON_RULE_CODES or not set(int(code) for code in activations) <= _COMMON_CODES:
        return globals()[name]
    return common_build(name)
