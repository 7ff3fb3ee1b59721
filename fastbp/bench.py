"""A one-shot speed report: seconds per epoch of the NumPy reference and the Numba
kernels on synthetic data, their ratios measured in the same run, the kernels'
first-call compile time, cold and from Numba's on-disk cache, and (--peers) PyTorch and
scikit-learn training the same network, where installed.

    fastbp bench                                # seed 000's 784-200-10, 60,000 samples
    fastbp bench --hidden 100 --samples 10000 --repeats 5 --peers

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
    if warm:
        net.warm_up(batch_size, backend)             # compile outside the timing
    seconds = [net.train(X, Y, epochs=1, lr=lr, batch_size=batch_size, backend=backend,
                         diagnostics=False)["seconds"][0]
               for _ in range(repeats)]
    return statistics.median(seconds)


# ---------------------------------------------------------------- peers
# The peers train the same network the same way: 784-H-10, a ReLU hidden layer, softmax
# output and cross-entropy, plain SGD (no momentum, no L2), float32, over one epoch.
PEER_LR = 0.01


def peer_data(m, n_in=784, n_out=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (m, n_in)).astype(np.float32), rng.integers(0, n_out, m)


def fastbp_peer_seconds(X, y, hidden, batch_size, repeats=3):
    net = Network([X.shape[1], hidden, int(y.max()) + 1], activation="relu", output="softmax",
                  loss="cross_entropy", init="he", seed=0, dtype="float32")
    net.warm_up(batch_size)                          # compile outside the timing
    return statistics.median(net.train(X, y, epochs=1, lr=PEER_LR, batch_size=batch_size)["seconds"][0]
                             for _ in range(repeats))


def torch_seconds(X, y, hidden, batch_size, repeats=3):
    """PyTorch autograd on the CPU, with as many threads as Numba uses."""
    import numba
    import torch
    torch.set_num_threads(numba.get_num_threads())
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(X.shape[1], hidden), torch.nn.ReLU(),
                                torch.nn.Linear(hidden, int(y.max()) + 1))
    optimiser = torch.optim.SGD(model.parameters(), lr=PEER_LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    inputs, labels = torch.from_numpy(X), torch.from_numpy(y)

    def epoch():
        start = time.perf_counter()
        for rows in torch.randperm(len(X)).split(batch_size):
            optimiser.zero_grad()
            loss_fn(model(inputs[rows]), labels[rows]).backward()
            optimiser.step()
        return time.perf_counter() - start

    return statistics.median(epoch() for _ in range(repeats))


def sklearn_seconds(X, y, hidden, batch_size, repeats=3):
    """scikit-learn's MLPClassifier, one epoch of plain SGD."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    def epoch():
        model = MLPClassifier(hidden_layer_sizes=(hidden,), activation="relu", solver="sgd",
                              batch_size=batch_size, learning_rate_init=PEER_LR, momentum=0.0,
                              alpha=0.0, max_iter=1, shuffle=True, random_state=0)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        return time.perf_counter() - start

    return statistics.median(epoch() for _ in range(repeats))


PEERS = {  # name -> (module it needs, seconds function)
    "PyTorch autograd": ("torch", torch_seconds),
    "scikit-learn MLPClassifier": ("sklearn", sklearn_seconds),
}


def installed_peers():
    import importlib.util
    return {name: run for name, (module, run) in PEERS.items() if importlib.util.find_spec(module)}


def peer_table(samples, hidden, repeats, batch_sizes=(1, 64), scale_to=None):
    """Rows (batch size, who, seconds per epoch of scale_to samples, who / fastbp)."""
    X, y = peer_data(samples)
    factor = (scale_to or samples) / samples
    rows = []
    for batch_size in batch_sizes:
        ours = fastbp_peer_seconds(X, y, hidden, batch_size, repeats) * factor
        rows.append((batch_size, "fastbp", ours, 1.0))
        for name, run in installed_peers().items():
            if name.startswith("scikit") and batch_size != 1:
                continue             # scikit-learn's own default is the comparison at 200
            theirs = run(X, y, hidden, batch_size, repeats) * factor
            rows.append((batch_size, name, theirs, theirs / ours))
    return rows


_COMPILE_PROBE = """
import time, numpy as np
t0 = time.perf_counter()
from fastbp.bench import seed000_network, synthetic_data
net = seed000_network(dtype=%r)
X, Y = synthetic_data(2, dtype=%r)
t1 = time.perf_counter()
net.train(X, Y, epochs=1, lr=0.1, batch_size=1, diagnostics=False)
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
    parser = argparse.ArgumentParser(prog="fastbp bench", description=__doc__,
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
    parser.add_argument("--peers", action="store_true",
                        help="also time the installed peers (PyTorch, scikit-learn) on a "
                             "784-100-10 ReLU/softmax network, batch sizes 1 and 64")
    parser.add_argument("--peer-samples", type=int, default=6000,
                        help="samples the peers are timed on, scaled to --samples (default 6000)")
    args = parser.parse_args(argv)

    m, ref_m = args.samples, args.reference_samples or args.samples
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
    if args.peers:
        rows = peer_table(args.peer_samples, 100, args.repeats, scale_to=m)
        figures["peers"] = [dict(batch_size=b, who=who, seconds=sec, ratio=r) for b, who, sec, r in rows]
        print("\npeers: 784-100-10, ReLU + softmax + cross-entropy, plain SGD, lr %g, float32; "
              "timed on %d samples, scaled to %d" % (PEER_LR, args.peer_samples, m))
        print("%-6s %-28s %10s %14s" % ("batch", "", "s/epoch", "time / fastbp"))
        for batch_size, who, seconds, ratio in rows:
            print("%-6d %-28s %10.2f %13.1fx" % (batch_size, who, seconds, ratio))
        missing = sorted(set(PEERS) - set(installed_peers()))
        if missing:
            print("not installed: %s (pip install 'fastbp[bench,torch]')" % ", ".join(missing))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return figures


if __name__ == "__main__":
    main()
