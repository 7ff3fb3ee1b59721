"""A one-shot speed report: seconds per epoch of the NumPy reference and the Numba
kernels on synthetic data, their ratios measured in the same run, and the kernels'
first-call compile time, cold and from Numba's on-disk cache.

    python -m fastbp.bench                      # seed 000's 784-200-10, 60,000 samples
    python -m fastbp.bench --hidden 100 --samples 10000 --repeats 5

Figures are medians over --repeats epochs. The default network is seed 000's: 784-200-10,
no biases, sigmoid, mse, the book's error propagation, lr 0.1, per-sample SGD.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from . import kernels
from .network import Network


def synthetic_data(m, n_in=784, n_out=10, seed=0, dtype="float64"):
    """Inputs uniform in [0.01, 1] (seed 000's scaled pixels) and 0.01/0.99 one-hot targets."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.01, 1.0, (m, n_in)).astype(dtype)
    Y = np.full((m, n_out), 0.01, dtype=dtype)
    Y[np.arange(m), rng.integers(0, n_out, m)] = 0.99
    return X, Y


def seed000_network(n_in=784, hidden=200, n_out=10, dtype="float64", seed=0):
    return Network([n_in, hidden, n_out], activation="sigmoid", output="sigmoid", loss="mse",
                   bias=False, init="normal", propagate="error", seed=seed, dtype=dtype)


def epoch_seconds(net, X, Y, backend, repeats, batch_size=1, lr=0.1, warm=True):
    """Median wall seconds of one training epoch over `repeats` epochs."""
    if warm and backend == "numba":                  # compile outside the timing
        net.train(X[:2], Y[:2], epochs=1, lr=lr, batch_size=min(batch_size, 2), backend=backend)
    seconds = [net.train(X, Y, epochs=1, lr=lr, batch_size=batch_size, backend=backend)["seconds"][0]
               for _ in range(repeats)]
    return statistics.median(seconds)


_COMPILE_PROBE = """
import time, numpy as np
t0 = time.perf_counter()
from fastbp.bench import seed000_network, synthetic_data
net = seed000_network(dtype=%r)
X, Y = synthetic_data(2, dtype=%r)
t1 = time.perf_counter()
net.train(X, Y, epochs=1, lr=0.1, batch_size=1)
print(time.perf_counter() - t1)
"""


def compile_seconds(dtype="float64"):
    """First-call seconds of the per-sample kernel in fresh interpreters: (cold, cached).
    Cold uses an empty NUMBA_CACHE_DIR; cached runs again over the cache it left."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs = [subprocess.run([sys.executable, "-c", _COMPILE_PROBE % (dtype, dtype)], env=env,
                               check=True, capture_output=True, text=True) for _ in range(2)]
    return tuple(float(run.stdout.strip().splitlines()[-1]) for run in runs)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastbp.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=200, help="hidden units (default 200)")
    parser.add_argument("--samples", type=int, default=60000, help="samples per epoch (default 60000)")
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per row (default 3)")
    parser.add_argument("--reference-samples", type=int, default=None,
                        help="time the reference on this many samples and scale to --samples "
                             "(default: all of them)")
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile-time probes")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    m, ref_m = args.samples, args.reference_samples or args.samples
    info = kernels.threading_info()
    print("fastbp %d-%d-10, per-sample SGD (seed 000's network), %d samples, median of %d epochs"
          % (784, args.hidden, m, args.repeats))
    rows, figures = [], {"samples": m, "hidden": args.hidden, "repeats": args.repeats}
    for dtype in args.dtypes.split(","):
        X, Y = synthetic_data(m, dtype=dtype)
        ref = epoch_seconds(seed000_network(hidden=args.hidden, dtype=dtype), X[:ref_m], Y[:ref_m],
                            "numpy", args.repeats) * m / ref_m
        fast = epoch_seconds(seed000_network(hidden=args.hidden, dtype=dtype), X, Y, "numba",
                             args.repeats)
        rows.append((dtype, ref, fast))
        figures[dtype] = {"reference_s": ref, "kernel_s": fast, "speedup": ref / fast}
    info = kernels.threading_info()
    figures.update(info)
    print("threading layer %(threading_layer)s, %(threads)d threads" % info)
    ref64 = dict((dtype, ref) for dtype, ref, _ in rows).get("float64")
    print("%-8s %15s %13s %19s %20s" % ("dtype", "reference s/ep", "kernels s/ep",
                                        "vs same-dtype ref", "vs float64 ref"))
    for dtype, ref, fast in rows:
        print("%-8s %15.2f %13.3f %18.1fx %19s" % (dtype, ref, fast, ref / fast,
                                                   "%.1fx" % (ref64 / fast) if ref64 else "-"))
        figures[dtype]["speedup_vs_float64_reference"] = ref64 / fast if ref64 else None
    if ref_m != m:
        print("(reference timed on %d samples, scaled to %d)" % (ref_m, m))
    if not args.no_compile:
        cold, cached = compile_seconds()
        figures["compile_cold_s"], figures["compile_cached_s"] = cold, cached
        print("first call of the per-sample kernel (float64), fresh interpreter: "
              "%.2f s compiling, %.2f s from the on-disk cache" % (cold, cached))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return figures


if __name__ == "__main__":
    main()
