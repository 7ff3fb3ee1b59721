"""What every benchmark shares: the networks, their data, and timing in one process."""
import statistics
import time

import numpy as np

import fastbp
from fastbp.bench import BLAS_IDLE, synthetic_data
from fastbp.cases import BENCHMARK_FUNCTIONS, BENCHMARK_NETWORKS, benchmark_function_network, targets

# the networks and dtypes come from fastbp.cases, the table that drives the tests too
NETWORKS = BENCHMARK_NETWORKS
FUNCTIONS = BENCHMARK_FUNCTIONS
DTYPES = ["float64", "float32"]
BACKENDS = ["numpy", "numba"]
# samples per benchmark call: per-sample SGD with the NumPy reference is slow
SAMPLES = {"per-sample": 1000, "batched": 4096}


def make(network, dtype, m, seed=0):
    """A NETWORKS network with biases, and synthetic data for it."""
    return _make(*NETWORKS[network], dtype, m, seed)


def make_function_case(name, dtype, m, seed=0):
    """The small network of a FUNCTIONS entry (one activation, or one output and loss)."""
    return _make(*benchmark_function_network(name), dtype, m, seed)


def _make(sizes, activation, output, loss, dtype, m, seed):
    net = fastbp.Network(sizes, activation=activation, output=output, loss=loss, bias=True,
                         seed=seed, dtype=dtype)
    X, Y = synthetic_data(m, n_in=sizes[0], n_out=sizes[-1], seed=seed, dtype=dtype)
    if (output, loss) != ("sigmoid", "mse"):        # (synthetic_data's targets suit that pair)
        Y = targets(np.random.default_rng(seed), m, sizes[-1], output, loss).astype(dtype)
    return net, X, Y


def warm(net, batch_size):
    """Compile (or load) every kernel these benchmarks call, outside any timing."""
    net.warm_up(batch_size)


def median_seconds(fn, repeats=3):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# NumPy and SciPy (whose BLAS the kernels call) each bring their own copy of OpenBLAS, with
# its own threads, and a pool's threads spin for a while after each product (OpenBLAS's
# default is 2^28 cycles, about 0.1 s) on the cores the other pool needs: the kernels'
# forward pass ran 2x slower right after the reference's. A user runs one of the two;
# so is each timed: after a pause of BLAS_IDLE seconds (fastbp.bench's, 0.3 s) and one
# untimed call.


# A call at least this long is timed once, as its first call after the pause: what the
# untimed call and the repeats guard against (the pools waking, a stray interruption) is
# small beside it, and the NumPy reference's per-sample epochs then cost a quarter.
LONG_CALL = 0.5


def _alone(fn, repeats):
    time.sleep(BLAS_IDLE)
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    return first if first >= LONG_CALL else median_seconds(fn, repeats)


def speedup(run, pairs=3, repeats=3):
    """Reference seconds over kernel seconds, measured here and now: the median of the
    ratios of `pairs` pairs, the two run alternately, each pair's from medians of
    `repeats` calls (one, for calls of LONG_CALL or more)."""
    return statistics.median(_alone(lambda: run("numpy"), repeats) / _alone(lambda: run("numba"), repeats)
                             for _ in range(pairs))
