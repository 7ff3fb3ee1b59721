"""What every benchmark shares: the networks, their data, and timing in one process."""
import statistics
import time

import fastbp
from fastbp.bench import synthetic_data

# name -> sizes: seed 001's network, seed 000's at three widths, and a deeper one
NETWORKS = {
    "3-3-2-1": [3, 3, 2, 1],
    "784-100-10": [784, 100, 10],
    "784-200-10": [784, 200, 10],
    "784-1000-10": [784, 1000, 10],
    "784-256-128-64-10": [784, 256, 128, 64, 10],
}
DTYPES = ["float64", "float32"]
BACKENDS = ["numpy", "numba"]
# samples per benchmark call: per-sample SGD with the NumPy reference is slow
SAMPLES = {"per-sample": 1000, "batched": 4096}


def make(network, dtype, m, seed=0):
    """A sigmoid/mse network with biases (seed 001's kind) and synthetic data for it."""
    sizes = NETWORKS[network]
    net = fastbp.Network(sizes, activation="sigmoid", output="sigmoid", loss="mse", bias=True,
                         seed=seed, dtype=dtype)
    X, Y = synthetic_data(m, n_in=sizes[0], n_out=sizes[-1], seed=seed, dtype=dtype)
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


def speedup(run, repeats=3):
    """Reference seconds over kernel seconds, medians, measured here and now."""
    return median_seconds(lambda: run("numpy"), repeats) / median_seconds(lambda: run("numba"), repeats)
