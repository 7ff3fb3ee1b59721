"""What every benchmark shares: the networks, their data, and timing in one process."""
import statistics
import time

import numpy as np

import fastbp
from fastbp import kernels
from fastbp.bench import BLAS_IDLE, gemm_floor, synthetic_data
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


# rows a benchmark's own call is warmed on
WARM_ROWS = 128


def warm(net, call, batched=False):
    """Load (or compile) the kernels a benchmark calls, outside any timing: call() (the
    benchmark's own call, on WARM_ROWS rows) loads just those (net.warm_up would load
    every kernel of a mode and predicting: three times as long, in each of the hundreds
    of processes of a run). batched: whether call trains with the batched kernel; where
    that kernel's parallel build is not compiled yet, net.warm_up compiles it first (a
    short call would leave it out, training.ParallelBuild, and every timing after it
    would run on one thread)."""
    if batched and not kernels.built_for(kernels.batch_epoch, net.dtype):
        net.warm_up(2)
    call()


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
# so is each timed: after a pause of BLAS_IDLE seconds (fastbp.bench's, 0.2 s) and one
# untimed call. (After a product on two threads, one OpenBLAS thread on this Zen 4 used
# 105 ms of CPU time, and then none.)


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


def over_gemm(run, sizes, m, batch_size, dtype, products, pairs=3):
    """The kernels' seconds (run()) over the seconds of the same matrix products alone
    (fastbp.bench.gemm_floor: m rows in batches of batch_size, the products a GEMM_PRODUCTS
    name, on BLAS's own threads), the median of the ratios of `pairs` pairs run
    alternately: the products' mean of two calls, then the kernels' as _alone times them
    (the pause lets BLAS's threads stop spinning first: they would take a core from the
    kernels' threads). Few calls, to keep asv's quick run of the suite within 10 minutes."""
    floor = gemm_floor(sizes, m, batch_size, dtype, products)
    ratios = []
    for _ in range(pairs):
        alone = median_seconds(floor, 2)
        ratios.append(_alone(run, 1) / alone)
    return statistics.median(ratios)


def speedup(run, pairs=3, repeats=3):
    """Reference seconds over kernel seconds, measured here and now: the median of the
    ratios of `pairs` pairs, the two run alternately, each pair's from medians of
    `repeats` calls (one, for calls of LONG_CALL or more)."""
    return statistics.median(_alone(lambda: run("numpy"), repeats) / _alone(lambda: run("numba"), repeats)
                             for _ in range(pairs))
