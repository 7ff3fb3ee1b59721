"""Compiling ahead: `fastbp warm-up` and `fastbp.warm_up()`.

Numba compiles each kernel on its first call and keeps it in its on-disk cache (see
`fastbp.kernels`), so a first fit in a new environment waits for the compiler (the
README says how long, on which processors). Where every process starts with an empty
cache (a container image started many times, a CI job, a fresh worker), run this once
where the cache is kept, and every later process loads the kernels instead:

```bash
NUMBA_CACHE_DIR=/opt/fastbp-cache fastbp warm-up     # in the image's build, say
```

It compiles, mode by mode and for each dtype, every kernel that training and predicting
call, in a child process as `Network.warm_up` does (so that the first run and every later
one use the same code from the cache), and says for each whether it compiled or was
already cached. Numba keys its cache to fastbp's sources, Numba's version and the
processor, so build the cache on the kind of machine that will read it; a cache that
cannot be written is an error here, as nothing compiled would be kept. For a Dask
cluster's workers, see `fastbp.distributed.warm_workers`.
"""
import time

from .checks import choice
from .info import cache_writable
from .kernels import batch_epoch, cache_dir
from .network import Network

# mode: (Network.warm_up's batch_size and optimizer, whether sparse rows have kernels of
# their own for it, the hidden activations to warm it with). A dtype and a mode share the
# kernels of every rule, activation, loss and layer size, but for the training kernels'
# two builds (kernels.py, "builds"): a run within scikit-learn's activations and rules
# takes the common one (sigmoid warms it), any other the full one (softplus warms the
# per-sample kernel's; rprop, the mini-batch kernel's). These five cover every training
# call and predicting.
MODES = {
    "per-sample": ((1, "sgd"), True, ("sigmoid", "softplus")),   # plain SGD one sample at a time (Network's default)
    "mini-batch": ((200, "adam"), True, ("sigmoid",)),    # every rule in batches: the estimators' adam and sgd
    "full-batch": ((None, "rprop"), True, ("sigmoid",)),  # rprop and irprop+, and every other rule's full build
    "lm": ((None, "lm"), False, ("sigmoid",)),            # Levenberg-Marquardt and Bayesian regularisation
    "scg": ((None, "scg"), False, ("sigmoid",)),          # scaled conjugate gradient and the estimators' lbfgs
}
DTYPES = ("float64", "float32")


def warm_up(dtypes=DTYPES, modes=tuple(MODES), sparse=True, report=None):
    """Compile, or find in Numba's on-disk cache, the kernels of each training mode and
    of predicting, so that later processes compile nothing.

    Parameters
    ----------
    dtypes : sequence of str
        'float64', 'float32'.
    modes : sequence of str
        Of MODES.
    sparse : bool
        Also the modes' kernels for sparse (CSR) rows, where they have their own.
    report : callable or None
        Called with each case's dict as it is done.

    Returns
    -------
    list of dict
        One per case: mode, dtype, rows ('dense' or 'sparse'), compiled (False: it was in
        the cache already) and seconds.

    Raises
    ------
    OSError
        When the cache cannot be written, before compiling anything."""
    dtypes = [choice("dtype", dtype, DTYPES) for dtype in dtypes]
    modes = [choice("mode", mode, tuple(MODES)) for mode in modes]
    if not cache_writable():
        raise OSError("Numba's cache directory %s cannot be written, so nothing compiled now would be kept: "
                      "set NUMBA_CACHE_DIR to a writable directory" % cache_dir(batch_epoch))
    done = []
    for dtype in dtypes:
        for mode in modes:
            (batch_size, optimizer), has_sparse, activations = MODES[mode]
            for rows in ("dense", "sparse") if sparse and has_sparse else ("dense",):
                start = time.perf_counter()
                compiled = False
                for activation in activations:
                    compiled |= Network([2, 2, 2], activation=activation, dtype=dtype).warm_up(
                        batch_size, optimizer=optimizer, sparse=rows == "sparse")
                done.append({"mode": mode, "dtype": dtype, "rows": rows, "compiled": compiled,
                             "seconds": time.perf_counter() - start})
                if report is not None:
                    report(done[-1])
    return done
