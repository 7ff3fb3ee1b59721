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
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from numba import njit

from . import kernels
from .info import blas_core_note, blas_libraries, processor
from .network import Network
from .optimizers import Optimizer


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
# output and cross-entropy, plain SGD (no momentum, no L2), float32 (or --peer-dtype float64), over one epoch.
PEER_LR = 0.01


def peer_data(m, n_in=784, n_out=10, seed=0, dtype="float32"):
    """m rows uniform in [0, 1) in dtype, and labels: every peer trains in X's dtype."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (m, n_in)).astype(dtype), rng.integers(0, n_out, m)


PEER_ADAM_LR = 0.001
JAX = "JAX jit + lax.scan"           # (the JAX peer's name in the tables)
IN_ORDER = "%s, in order"            # a contender taking the samples in order
PRODUCTS = "fastbp's products alone"  # the floor under a batched epoch (products_seconds)


def fastbp_peer_seconds(X, y, hidden, batch_size, repeats=3, rule="sgd", shuffle=True):
    net = Network([X.shape[1], hidden, int(y.max()) + 1], activation="relu", output="softmax",
                  loss="cross_entropy", init="he", seed=0, dtype=X.dtype)
    net.warm_up(batch_size)                          # compile outside the timing
    lr = PEER_LR if rule == "sgd" else PEER_ADAM_LR
    net.train(X, y, epochs=1, lr=lr, batch_size=batch_size, optimizer=rule, diagnostics=False,
              shuffle=shuffle)                                                                  # warm
    return statistics.median(net.train(X, y, epochs=1, lr=lr, batch_size=batch_size, optimizer=rule,
                                       diagnostics=False, shuffle=shuffle)["seconds"][0]
                             for _ in range(repeats))


def products_seconds(X, y, hidden, batch_size, repeats=3, rule="sgd", shuffle=False):
    """The matrix products of one batched epoch of X's rows and nothing else, in X's dtype,
    through the BLAS the kernels call, with its own threads (gemm_floor, "step": every
    product of the forward pass, the delta propagation and the gradient, on buffers
    that stay in cache): the floor under every contender's epoch that computes the
    same products, whatever its rule (the rule and the order change no product)."""
    sizes = [X.shape[1], hidden, int(y.max()) + 1]
    return gemm_seconds(sizes, X.shape[0], batch_size, dtype=X.dtype, repeats=repeats)


def torch_seconds(X, y, hidden, batch_size, repeats=3, rule="sgd"):
    """PyTorch autograd on the CPU, with as many threads as Numba uses."""
    import numba
    import torch
    torch.set_num_threads(numba.get_num_threads())
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(X.shape[1], hidden), torch.nn.ReLU(),
                                torch.nn.Linear(hidden, int(y.max()) + 1)).to(torch.from_numpy(X[:1]).dtype)
    optimiser = (torch.optim.SGD(model.parameters(), lr=PEER_LR) if rule == "sgd"
                 else torch.optim.Adam(model.parameters(), lr=PEER_ADAM_LR))
    loss_fn = torch.nn.CrossEntropyLoss()
    inputs, labels = torch.from_numpy(X), torch.from_numpy(y)

    def epoch():
        start = time.perf_counter()
        for rows in torch.randperm(len(X)).split(batch_size):
            optimiser.zero_grad()
            loss_fn(model(inputs[rows]), labels[rows]).backward()
            optimiser.step()
        return time.perf_counter() - start

    epoch()                                                       # warm, as the others
    return statistics.median(epoch() for _ in range(repeats))


def jax_seconds(X, y, hidden, batch_size, repeats=3, rule="sgd", shuffle=True):
    """JAX on the CPU in its strongest form: one jit-compiled epoch that draws the epoch's
    sample order and runs a lax.scan over the batches (over single samples at batch size
    1), plain SGD or Adam written out; the data sits on the device beforehand. Without
    shuffle, the batches are X's rows in order, reshaped: no gather. In X's dtype (float64:
    with JAX's x64 enabled for the call)."""
    import jax
    with jax.enable_x64(X.dtype == np.float64):
        return _jax_seconds(X, y, hidden, batch_size, repeats, rule, shuffle)


def _jax_seconds(X, y, hidden, batch_size, repeats, rule, shuffle):
    import jax
    import jax.numpy as jnp
    from jax import lax

    n_out = int(y.max()) + 1
    rng = np.random.default_rng(0)
    kind = X.dtype
    params = (jnp.asarray(rng.normal(0, np.sqrt(2 / X.shape[1]), (X.shape[1], hidden)), kind),
              jnp.zeros(hidden, kind),
              jnp.asarray(rng.normal(0, np.sqrt(2 / hidden), (hidden, n_out)), kind),
              jnp.zeros(n_out, kind))

    def loss(p, xb, yb):
        W1, b1, W2, b2 = p
        logits = jax.nn.relu(xb @ W1 + b1) @ W2 + b2
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), yb[:, None], 1))

    grad = jax.grad(loss)
    b1, b2, eps = 0.9, 0.999, 1e-8

    def step(carry, batch):
        p, m, v, t = carry
        g = grad(p, *batch)
        if rule == "sgd":
            return (jax.tree_util.tree_map(lambda w, gw: w - PEER_LR * gw, p, g), m, v, t), None
        t = t + 1
        m = jax.tree_util.tree_map(lambda a, gw: b1 * a + (1 - b1) * gw, m, g)
        v = jax.tree_util.tree_map(lambda a, gw: b2 * a + (1 - b2) * gw * gw, v, g)
        rate = PEER_ADAM_LR * jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        p = jax.tree_util.tree_map(lambda w, a, s: w - rate * a / (jnp.sqrt(s) + eps), p, m, v)
        return (p, m, v, t), None

    n = len(X) // batch_size * batch_size

    @jax.jit
    def epoch(carry, key, X, y):
        if shuffle:
            order = jax.random.permutation(key, len(X))[:n]     # a new order every epoch,
            X, y = X[order], y[order]                            # as fastbp's, on the device
        xs = X[:n].reshape(-1, batch_size, X.shape[1])
        ys = y[:n].reshape(-1, batch_size)
        return lax.scan(step, carry, (xs, ys))[0]

    X, y = jnp.asarray(X), jnp.asarray(y)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    carry = (params, zeros, zeros, jnp.asarray(0, kind))
    keys = iter(jax.random.split(jax.random.PRNGKey(0), repeats + 1))
    jax.block_until_ready(epoch(carry, next(keys), X, y))        # compile outside the timing

    def timed():
        start = time.perf_counter()
        jax.block_until_ready(epoch(carry, next(keys), X, y))
        return (time.perf_counter() - start) * len(X) / n

    return statistics.median(timed() for _ in range(repeats))


def sklearn_seconds(X, y, hidden, batch_size, repeats=3, rule="sgd"):
    """scikit-learn's MLPClassifier, one epoch of plain SGD."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    def epoch():
        model = MLPClassifier(hidden_layer_sizes=(hidden,), activation="relu", solver=rule,
                              batch_size=batch_size,
                              learning_rate_init=PEER_LR if rule == "sgd" else PEER_ADAM_LR, momentum=0.0,
                              alpha=0.0, max_iter=1, shuffle=True, random_state=0)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        return time.perf_counter() - start

    return statistics.median(epoch() for _ in range(repeats))


# ---- predicting: the outputs (class probabilities) of PREDICT_ROWS rows, as NumPy arrays
PREDICT_ROWS = 10000
PREDICT_CALLS = 20      # a time: the median of this many calls, after a pause (BLAS_IDLE)
BLAS_IDLE = 0.2         # seconds: a BLAS pool's threads spin for a while after a product
                        # (OpenBLAS's for 2^28 cycles: 0.2 s covers clocks down to 1.35 GHz;
                        # asv's common.py pauses as long before each timing)


def _predict_seconds(predict, X):
    predict(X[:2])                                     # compile or warm outside the timing
    time.sleep(BLAS_IDLE)
    predict(X)
    times = []
    for _ in range(PREDICT_CALLS):
        start = time.perf_counter()
        predict(X)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _predict_weights(n_in, hidden, n_out):
    rng = np.random.default_rng(0)
    return tuple((rng.normal(0, np.sqrt(2 / fan_in), (fan_out, fan_in)).astype(np.float32),
                  rng.normal(0, 0.1, fan_out).astype(np.float32))
                 for fan_in, fan_out in ((n_in, hidden), (hidden, n_out)))


# Each predictor: the function from a (rows, n_in) float32 array to the (rows, n_out) class
# probabilities of 784-H-10 ReLU/softmax with _predict_weights' weights.
def fastbp_predictor(n_in, hidden, n_out):
    net = Network([n_in, hidden, n_out], activation="relu", output="softmax",
                  loss="cross_entropy", dtype="float32")
    net.weights, net.biases = zip(*_predict_weights(n_in, hidden, n_out))
    return net.predict


def torch_predictor(n_in, hidden, n_out):
    import numba
    import torch
    torch.set_num_threads(numba.get_num_threads())
    layers = [torch.nn.Linear(n_in, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, n_out)]
    with torch.no_grad():
        for layer, (W, b) in zip(layers[::2], _predict_weights(n_in, hidden, n_out)):
            layer.weight.copy_(torch.from_numpy(W))
            layer.bias.copy_(torch.from_numpy(b))
    model = torch.nn.Sequential(*layers)

    def predict(X):
        with torch.no_grad():
            return torch.softmax(model(torch.from_numpy(X)), 1).numpy()
    return predict


def jax_predictor(n_in, hidden, n_out):
    """A jit-compiled forward pass on a NumPy array, its result back as one."""
    import jax
    import jax.numpy as jnp
    (W1, b1), (W2, b2) = [(jnp.asarray(W.T), jnp.asarray(b)) for W, b in _predict_weights(n_in, hidden, n_out)]
    forward = jax.jit(lambda X: jax.nn.softmax(jax.nn.relu(X @ W1 + b1) @ W2 + b2, axis=1))
    return lambda X: np.asarray(forward(X))


def sklearn_predictor(n_in, hidden, n_out):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    model = MLPClassifier(hidden_layer_sizes=(hidden,), max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(np.zeros((n_out, n_in), np.float32), np.arange(n_out))   # (every class once)
    (W1, b1), (W2, b2) = _predict_weights(n_in, hidden, n_out)
    model.coefs_, model.intercepts_ = [W1.T, W2.T], [b1, b2]
    return model.predict_proba


PREDICT_PEERS = {"PyTorch autograd": torch_predictor, JAX: jax_predictor,
                 "scikit-learn MLPClassifier": sklearn_predictor}


def predict_table(hidden, repeats, rows=PREDICT_ROWS, n_out=10):
    """Rows (who, seconds to predict `rows` rows, who / fastbp) for the installed peers: the
    same weights, float32; each peer timed right after fastbp, the ratio the median of
    the pairwise ratios of `repeats` pairs."""
    X, _ = peer_data(rows)
    predictors = {"fastbp": fastbp_predictor(X.shape[1], hidden, n_out),
                  **{name: PREDICT_PEERS[name](X.shape[1], hidden, n_out) for name in installed_peers()}}
    times = {name: [] for name in predictors}
    for _ in range(repeats):
        for name, predict in predictors.items():
            times[name].append(_predict_seconds(predict, X))
    return [(name, statistics.median(seconds), statistics.median(a / b for a, b in zip(seconds, times["fastbp"])))
            for name, seconds in times.items()]


PEERS = {  # name -> (module it needs, seconds function)
    "PyTorch autograd": ("torch", torch_seconds),
    JAX: ("jax", jax_seconds),
    "scikit-learn MLPClassifier": ("sklearn", sklearn_seconds),
}
# (batch size, rule) rows of the peer table: per-sample and mini-batch SGD, and Adam with
# batches of 200 (the estimators' default)
PEER_CASES = ((1, "sgd"), (64, "sgd"), (200, "sgd"), (200, "adam"))


PEER_COLUMNS = (("PyTorch", "PyTorch autograd"), ("JAX", "JAX jit + lax.scan"),
                ("both in order: fastbp, JAX", "JAX jit + lax.scan, in order"),
                ("products alone (in-order epochs over them: fastbp, JAX)", PRODUCTS),
                ("scikit-learn", "scikit-learn MLPClassifier"))


def peers_markdown(figures):
    """The peers' table (`fastbp bench --peers --json`'s "peers") as Markdown: seconds per
    epoch (predicting: per call), each peer's with its ratio to fastbp's time; the in-order
    column pairs fastbp in order with JAX in order, and the products' column gives the
    seconds of the products alone with each in-order epoch's time over them (ratios of
    the medians); a column that the run has no figure for is left out (runs made before
    it existed). asv_benchmarks/readme_table.py writes it into the README, so that nobody
    types a figure by hand."""
    def g3(x):                          # three significant digits, trailing zeros kept
        return ("%#.3g" % x).rstrip(".")

    def cell(r):
        return "%s (%sx)" % (g3(r["seconds"]), "%.2f" % r["ratio"] if r["ratio"] < 10 else g3(r["ratio"]))

    rows = figures["peers"]
    columns = [(h, who) for h, who in PEER_COLUMNS if any(r["who"] == who for r in rows)]   # (a run's own)
    lines = ["| network | batch, rule | fastbp | %s |" % " | ".join(h for h, _ in columns),
             "|---|---|---|" + "---|" * len(columns)]
    for hidden in sorted({r["hidden"] for r in rows}):
        cases = list(dict.fromkeys((r["batch_size"], r["rule"]) for r in rows if r["hidden"] == hidden))
        for k, (batch, rule) in enumerate(cases):
            got = {r["who"]: r for r in rows if (r["hidden"], r["batch_size"], r["rule"]) == (hidden, batch, rule)}
            cells = []
            for _, who in columns:
                if who not in got:
                    cells.append("")
                elif "in order" in who:
                    cells.append("%s, %s (%.2fx)" % (g3(got["fastbp, in order"]["seconds"]), g3(got[who]["seconds"]),
                                                     got[who]["ratio"]))
                elif who == PRODUCTS:
                    floor = got[who]["seconds"]
                    over = [got[name]["seconds"] / floor for name in (IN_ORDER % "fastbp", IN_ORDER % JAX)
                            if name in got]
                    cells.append("%s (%s)" % (g3(floor), ", ".join("%.2fx" % x for x in over)))
                else:
                    cells.append(cell(got[who]))
            case = "predict" if rule == "predict" else "%d, %s" % (batch, "SGD" if rule == "sgd" else rule.title())
            lines.append("| %s | %s | %s | %s |" % ("784-%d-10" % hidden if k == 0 else "", case,
                                                    g3(got["fastbp"]["seconds"]), " | ".join(cells)))
    return "\n".join(lines)


def installed_peers():
    import importlib.util
    return {name: run for name, (module, run) in PEERS.items() if importlib.util.find_spec(module)}


def peer_table(samples, hidden, repeats, cases=PEER_CASES, scale_to=None, dtype="float32"):
    """Rows (batch size, rule, who, seconds per epoch of scale_to samples, who / fastbp),
    every contender training in dtype.
    Each peer is timed right after fastbp, and the ratio is the median of the pairwise
    ratios of `repeats` such pairs (A B A B ...: the machines here are noisy). Everyone
    shuffles every epoch; batched cases add fastbp taking the samples in order
    (shuffle=False), with JAX installed JAX in order too, and fastbp's products alone
    (products_seconds: the floor under both), each of the three with its ratio over fastbp
    in order. Each
    contender starts BLAS_IDLE after the last one ended: a library's idle threads spin
    for a while after its work, on the cores the next contender needs (right after
    scikit-learn's fit, fastbp's in-order Adam epoch took 1.49x as long as after the
    pause)."""
    X, y = peer_data(samples, dtype=dtype)
    factor = (scale_to or samples) / samples
    rows = []
    for batch_size, rule in cases:
        peers = {name: run for name, run in installed_peers().items()
                 if not (name.startswith("scikit") and (batch_size, rule) not in ((1, "sgd"), (200, "adam")))}
        contenders = [("fastbp", fastbp_peer_seconds, True)] + [(name, run, True) for name, run in peers.items()]
        if batch_size > 1:                       # like with like: both taking the samples in order
            contenders += [(IN_ORDER % "fastbp", fastbp_peer_seconds, False)]
            contenders += [(IN_ORDER % JAX, jax_seconds, False)] if JAX in peers else []
            contenders += [(PRODUCTS, products_seconds, False)]
        times = {name: [] for name, _, _ in contenders}
        for _ in range(repeats):
            for name, run, shuffle in contenders:
                in_order = {} if shuffle else {"shuffle": False}
                time.sleep(BLAS_IDLE)                       # (the last contender's threads at rest)
                times[name].append(run(X, y, hidden, batch_size, 1, rule=rule, **in_order) * factor)
        for name, seconds in times.items():
            base = times[IN_ORDER % "fastbp" if name.endswith(IN_ORDER % "") or name == PRODUCTS else "fastbp"]
            ratio = statistics.median(a / b for a, b in zip(seconds, base))
            rows.append((batch_size, rule, name, statistics.median(seconds), ratio))
    return rows


# ---------------------------------------------------------------- the machine's floor

@njit(fastmath=True, cache=kernels.CACHE)
def _fma_chains(v, rounds):
    """Sums of v times 8 numbers, `rounds` times over v (a few KB, in L1): 8 multiply-adds
    per element loaded, so the rate is the multiply-add units', as this compiler reaches
    them on this core (the vectorised dot products of the kernels are built the same way)."""
    k0, k1, k2, k3, k4, k5, k6, k7 = v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = k0 - k0      # in v's dtype (a literal is float64)
    for _ in range(rounds):
        for i in range(v.size):
            x = v[i]
            a0 += x * k0
            a1 += x * k1
            a2 += x * k2
            a3 += x * k3
            a4 += x * k4
            a5 += x * k5
            a6 += x * k6
            a7 += x * k7
    return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7


def _rounds_per_second(run, seconds, rounds=1):
    """run(rounds) with rounds doubled until one call takes more than `seconds`; that
    call's rounds per second."""
    while True:
        start = time.perf_counter()
        run(rounds)
        elapsed = time.perf_counter() - start
        if elapsed > seconds:
            return rounds / elapsed
        rounds *= 2


def fma_peak_gflops(dtype="float32", seconds=0.3):
    """One core's measured multiply-add rate, GFLOP/s (2 flops per multiply-add)."""
    v = np.full(1024, 1e-3, dtype)
    _fma_chains(v, 1)
    return 2 * 8 * v.size * _rounds_per_second(functools.partial(_fma_chains, v), seconds, 64) / 1e9


@njit(cache=kernels.CACHE)
def _square_products(A, B, C, rounds):
    """C <- A B, `rounds` times, through the BLAS the kernels call (Numba's np.dot)."""
    for _ in range(rounds):
        np.dot(A, B, C)


BLAS_PEAK_SIZES = (256, 384, 512)      # square products of a few ms, where BLAS runs at full speed


def blas_peak_gflops(dtype="float32", seconds=0.3, sizes=BLAS_PEAK_SIZES):
    """One core's multiply-add rate as BLAS reaches it, GFLOP/s: the fastest of square
    products of these sizes, BLAS held to one thread. BLAS's kernels use every
    vector width the core has, where fma_peak_gflops measures what Numba's loops reach
    (256-bit vectors on an AVX-512 core), so this is the higher of the two there: the
    peak to read the batched epochs' and their products' GFLOP/s against, times the
    cores in use."""
    from .threads import blas_on_one_thread
    best = 0.0
    with blas_on_one_thread():
        for n in sizes:
            A, B = (np.full((n, n), 1e-3, dtype) for _ in range(2))
            C = np.empty((n, n), dtype)
            _square_products(A, B, C, 1)
            per_second = _rounds_per_second(functools.partial(_square_products, A, B, C), seconds / len(sizes))
            best = max(best, 2.0 * n ** 3 * per_second / 1e9)
    return best


def per_sample_flops(sizes):
    """Multiply-adds of per-sample SGD, times 2: a forward product and a weight update per
    weight and sample (the first layer sends nothing back; the others also W^T delta)."""
    fan = [a * b for a, b in zip(sizes, sizes[1:])]
    return 2 * (2 * fan[0] + 3 * sum(fan[1:]))


# ---------------------------------------------------------------- batched epochs against GEMM

def batched_flops(sizes, m):
    """Flops of a mini-batch epoch's matrix products: per layer A W^T and D^T A, and
    E W for every layer but the first (2 flops per multiply-add)."""
    fan = [a * b for a, b in zip(sizes, sizes[1:])]
    return 2 * m * (2 * fan[0] + 3 * sum(fan[1:]))


# which products of a step a GEMM-only floor runs: the forward pass's, those and the
# delta propagation's, or all of a training step's
GEMM_PRODUCTS = {"forward": 0, "deltas": 1, "step": 2}


@njit(cache=kernels.CACHE)
def _gemm_epoch(Xb, Ws, Zs, Es, Gs, batches, products):
    """The products of `batches` mini-batch steps and nothing else, through the BLAS the
    kernels call (Numba's np.dot): the floor a batched epoch can reach. products (a
    GEMM_PRODUCTS value): per layer A W^T (the forward pass); from 1, also E W for every
    layer but the first (the delta propagation); from 2, also D^T A (the gradient)."""
    for _ in range(batches):
        for l in range(len(Ws)):
            a_in = Xb if l == 0 else Zs[l - 1]
            np.dot(a_in, Ws[l].T, Zs[l])
            if l > 0 and products >= 1:
                np.dot(Es[l], Ws[l], Es[l - 1])
            if products >= 2:
                np.dot(Es[l].T, a_in, Gs[l])


def gemm_floor(sizes, m, batch_size, dtype="float32", products="step"):
    """A function of no arguments that runs, once, the matrix products of an epoch of m
    samples in batches of batch_size through a network of these sizes, and nothing else
    (_gemm_epoch; products: a GEMM_PRODUCTS name), on buffers made here. Called once
    before it is returned (compiled or loaded)."""
    from numba.typed import List
    rng = np.random.default_rng(0)
    Xb = rng.random((batch_size, sizes[0])).astype(dtype)
    Ws, Zs, Es, Gs = List(), List(), List(), List()
    for n_in, n_out in zip(sizes, sizes[1:]):
        Ws.append(rng.random((n_out, n_in)).astype(dtype))
        Gs.append(np.empty((n_out, n_in), dtype))
        Zs.append(np.empty((batch_size, n_out), dtype))
        Es.append(rng.random((batch_size, n_out)).astype(dtype))
    code, batches = GEMM_PRODUCTS[products], -(-m // batch_size)
    _gemm_epoch(Xb, Ws, Zs, Es, Gs, 1, code)

    def run():
        _gemm_epoch(Xb, Ws, Zs, Es, Gs, batches, code)
    return run


def gemm_seconds(sizes, m, batch_size, dtype="float32", repeats=3, products="step"):
    """The median seconds of `repeats` runs of gemm_floor(sizes, m, batch_size, dtype, products)."""
    run = gemm_floor(sizes, m, batch_size, dtype, products)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def batched_table(hidden, samples, repeats, cases=((64, "sgd"), (200, "sgd"), (200, "adam"))):
    """Rows (batch, rule, epoch s, GFLOP/s, GEMM-only s, GEMM GFLOP/s, epoch / GEMM-only)
    for a 784-hidden-10 ReLU/softmax float32 epoch of `samples` samples, each epoch timed
    right after its GEMM-only twin."""
    X, y = peer_data(samples)
    sizes = [784, hidden, 10]
    flops = batched_flops(sizes, samples)
    rows = []
    for batch_size, rule in cases:
        ours, floor = [], []
        for _ in range(repeats):
            time.sleep(BLAS_IDLE)             # (as peer_table: the last one's threads at rest)
            floor.append(gemm_seconds(sizes, samples, batch_size, repeats=1))
            time.sleep(BLAS_IDLE)             # (the floor's BLAS threads spin into the epoch: 1.4x)
            ours.append(fastbp_peer_seconds(X, y, hidden, batch_size, 1, rule=rule))
        o, f = statistics.median(ours), statistics.median(floor)
        rows.append((batch_size, rule, o, flops / o / 1e9, f, flops / f / 1e9,
                     statistics.median(a / b for a, b in zip(ours, floor))))
    return rows


@njit(cache=kernels.CACHE)
def _pieces(w, b, sizes, w_off, u_off, acts, X, T, order, batch_size, A, Zs, D, E, Xb, Tb, losses, dw, db,
            hyper, state_w, state_b, piece):
    """One epoch's worth of calls of one piece of kernels.batch_epoch (0 gather, 1
    forward, 2 delta propagation, 3 gradient, 4 update: SGD), on the same buffers."""
    S = np.empty(0, w.dtype)
    for start in range(0, order.size - batch_size + 1, batch_size):
        if piece == 0:
            kernels._gather(X, order[start:start + batch_size], Xb)
            kernels._gather(T, order[start:start + batch_size], Tb)
        elif piece == 1:
            kernels.forward_batch(w, b, sizes, w_off, u_off, acts, Xb, A, Zs, 0)
        elif piece == 2:
            kernels.backward_batch(w, sizes, w_off, u_off, acts, kernels.CROSS_ENTROPY, False, A, Zs, Tb, S, D,
                                   E, losses, 1e-7, 0)
        elif piece == 3:
            kernels.gradient_batch(sizes, w_off, u_off, Xb, A, D, dw, db)
        else:
            kernels.optimizer_step(kernels.SGD, w, b, dw, db, True, hyper, state_w, state_b, 1, 1.0 * batch_size, False)


PIECES = ("gather", "forward", "delta propagation", "gradient", "update")


def batched_breakdown(hidden, samples, batch_size=200, repeats=3):
    """Seconds of one epoch's worth of each piece of a mini-batch SGD epoch (784-hidden-10
    ReLU/softmax, float32), each timed alone on the same buffers (medians)."""
    X, y = peer_data(samples)
    T = np.eye(10, dtype=np.float32)[y]
    net = Network([784, hidden, 10], activation="relu", output="softmax", loss="cross_entropy", init="he",
                  seed=0, dtype="float32")
    optimizer = Optimizer("sgd", lr=0.01).bind(net)
    hyper = optimizer.hyper(0.01, 0.0, None, net.dtype)
    w, b, sizes, w_off, u_off, acts = net._layout()
    A, Zs, D, E = (kernels.layer_buffers(sizes, batch_size, w) for _ in range(4))
    buffers = (A, Zs, D, E, np.empty((batch_size, 784), np.float32), np.empty((batch_size, 10), np.float32),
               np.empty(batch_size), np.empty_like(w), np.empty_like(b))
    order = np.random.default_rng(0).permutation(samples)
    times = {}
    for piece, name in enumerate(PIECES):
        args = (w, b, sizes, w_off, u_off, acts, X, T, order, batch_size) + buffers + (
            hyper, optimizer.state["w"], optimizer.state["b"], piece)
        _pieces(*args[:8], order[:batch_size], *args[9:])                 # compile, fill the buffers
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            _pieces(*args)
            seconds.append(time.perf_counter() - start)
        times[name] = statistics.median(seconds)
    return times


# ---------------------------------------------------------------- contention

_BUSY = "while True: pass"


def _train_seconds(net, X, y, **settings):
    settings = dict(dict(lr=PEER_LR, diagnostics=False, epochs=1), **settings)
    return net.train(X, y, **settings)["seconds"][0]


def _predict_seconds_5(net, X, y):
    start = time.perf_counter()
    for _ in range(5):
        net.predict(X)
    return time.perf_counter() - start


def _classifier_fit_seconds(net, X, y):
    """One epoch of the estimators' default path, as a user calls it: fastbp.MLPClassifier
    with its defaults (Adam, batches of 200) and net's hidden layer, on X's dtype."""
    import warnings

    from .estimators import MLPClassifier
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # (max_iter=1: a ConvergenceWarning)
        MLPClassifier(hidden_layer_sizes=(net.sizes[1],), max_iter=1, random_state=0).fit(X, y)
    return time.perf_counter() - start


# what `fastbp bench --contention` times: name -> (seconds(net, X, y), the batch size to warm up)
CONTENTION_MODES = {
    "per-sample SGD": (functools.partial(_train_seconds, batch_size=1), 1),
    "mini-batch SGD, 200": (functools.partial(_train_seconds, batch_size=200), 200),
    "Adam, 200": (functools.partial(_train_seconds, batch_size=200, optimizer="adam", lr=PEER_ADAM_LR), 200),
    "full batch": (functools.partial(_train_seconds, batch_size=None), 2),
    "predict": (_predict_seconds_5, 2),
    "MLPClassifier fit": (_classifier_fit_seconds, 200),
}


COMPETITORS = (1, 2)     # `fastbp bench --contention`: beside one busy process, then beside two


def contention_table(hidden, dtype, samples, repeats, mode="per-sample SGD", competitors=1):
    """An epoch of the mode (CONTENTION_MODES; predict: 5 calls on the samples; the
    estimator: a one-epoch fit) of 784-hidden-10, ReLU/softmax/cross-entropy, alone and
    beside `competitors` competing CPU-bound processes, with fastbp's thread setting and
    with one thread, interleaved. Rows: (setting, seconds alone, seconds busy, busy / alone)."""
    X, y = peer_data(samples)
    X = X.astype(dtype)
    settings = {"default": os.environ.get("FASTBP_THREADS"), "FASTBP_THREADS=1": "1"}
    saved = os.environ.get("FASTBP_THREADS")
    times = {name: ([], []) for name in settings}
    nets = {}
    try:
        for name in settings:
            nets[name] = Network([784, hidden, 10], activation="relu", output="softmax",
                                 loss="cross_entropy", init="he", seed=0, dtype=dtype)
            nets[name].warm_up(CONTENTION_MODES[mode][1])
        for repeat in range(repeats):
            for busy in (False, True):
                running = [subprocess.Popen([sys.executable, "-c", _BUSY]) for _ in range(competitors if busy else 0)]
                try:
                    if running:
                        time.sleep(0.2)
                    # (the two settings take turns going first: beside two busy processes on 2 CPUs
                    # the first fit after the pause took 0.155-0.157 s, the second 0.167-0.181 s,
                    # whichever setting it was; four runs of 7 pairs, Intel Xeon)
                    for name, value in list(settings.items())[::1 if repeat % 2 == 0 else -1]:
                        if value is None:
                            os.environ.pop("FASTBP_THREADS", None)
                        else:
                            os.environ["FASTBP_THREADS"] = value
                        seconds = CONTENTION_MODES[mode][0](nets[name], X, y)
                        times[name][busy].append(seconds)
                finally:
                    for competitor in running:
                        competitor.kill()
                        competitor.wait()
    finally:
        if saved is None:
            os.environ.pop("FASTBP_THREADS", None)
        else:
            os.environ["FASTBP_THREADS"] = saved
    return [(name, statistics.median(alone), statistics.median(busy),
             statistics.median(b / a for a, b in zip(alone, busy)))
            for name, (alone, busy) in times.items()]


# one fastbp process's epochs (per-sample or batched), in samples per second (processes_table)
_ONE_PROCESS = """
import statistics, sys
from fastbp import Network
from fastbp.bench import peer_data
hidden, dtype, samples, batch_size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
X, y = peer_data(samples)
net = Network([784, hidden, 10], activation="relu", output="softmax", loss="cross_entropy", init="he",
              seed=0, dtype=dtype)
net.warm_up(batch_size)
seconds = net.train(X.astype(dtype), y, epochs=3, lr=0.01, batch_size=batch_size, diagnostics=False)["seconds"]
print(samples / statistics.median(seconds))
"""


def processes_table(hidden, dtype, samples, repeats, processes=2, batch_size=1):
    """Several fastbp processes at once (as two scripts, GridSearchCV(n_jobs=2) or
    pytest -n 2 start them), each training epochs of batch_size (1: per-sample SGD;
    784-hidden-10, ReLU/softmax, fastbp's thread setting), against one alone,
    interleaved: (samples per second alone, of all together, together / alone: the median
    of the pairs)."""
    command = [sys.executable, "-c", _ONE_PROCESS, str(hidden), dtype, str(samples), str(batch_size)]
    alone, together = [], []
    for _ in range(repeats):
        alone.append(float(subprocess.run(command, capture_output=True, text=True, check=True).stdout))
        running = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
        outputs = [p.communicate()[0] for p in running]
        if any(p.returncode for p in running):
            raise RuntimeError("a benchmark process failed (exit statuses %s)" % [p.returncode for p in running])
        together.append(sum(float(out) for out in outputs))
    return (statistics.median(alone), statistics.median(together),
            statistics.median(b / a for a, b in zip(alone, together)))


def sparse_data(m, n_in, density, seed=0, dtype="float32"):
    """(X dense, X as CSR, labels): m rows of n_in features, each feature non-zero with
    probability density (values uniform in (0, 1]: counts or tf-idf-like), 10 classes."""
    import scipy.sparse
    rng = np.random.default_rng(seed)
    X = np.where(rng.random((m, n_in)) < density, 1.0 - rng.random((m, n_in)), 0.0).astype(dtype)
    return X, scipy.sparse.csr_matrix(X), rng.integers(0, 10, m)


SPARSE_MODES = {"per-sample SGD": (1, "sgd"), "batch 200 Adam": (200, "adam")}


def sparse_table(samples, n_in, densities, repeats, hidden=100):
    """Epochs on sparse rows (CSR, the kernels that read the non-zeros) against the same
    rows dense, n_in-hidden-10 ReLU/softmax/cross-entropy, float32, interleaved. Rows:
    (density, mode, dense seconds, sparse seconds, median of dense / sparse)."""
    rows = []
    for density in densities:
        X, Xs, y = sparse_data(samples, n_in, density)
        for mode, (batch_size, rule) in SPARSE_MODES.items():
            nets = [Network([n_in, hidden, 10], activation="relu", output="softmax", loss="cross_entropy",
                            init="he", seed=0, dtype="float32") for _ in range(2)]
            times = ([], [])
            for net, data in zip(nets, (X, Xs)):
                net.train(data[:8], y[:8], epochs=1, batch_size=min(batch_size, 8), optimizer=rule)  # compile
            for _ in range(repeats):
                for k, data in enumerate((X, Xs)):
                    times[k].append(nets[k].train(data, y, epochs=1, lr=0.001 if rule == "adam" else 0.01,
                                                  batch_size=batch_size, optimizer=rule, l2=1e-4,
                                                  diagnostics=False)["seconds"][0])
            dense, sparse = times
            rows.append((density, mode, statistics.median(dense), statistics.median(sparse),
                         statistics.median(d / s for d, s in zip(dense, sparse))))
    return rows


_COMPILE_PROBE = """
import sys, time
import numpy as np
from fastbp.bench import seed000_network, synthetic_data
X, Y = synthetic_data(4, dtype=%r)
for mode in sys.argv[1:]:
    net = seed000_network(dtype=%r)
    start = time.perf_counter()
    if mode == "predict":
        net.predict(X)
    elif mode.endswith(":parallel"):           # (the parallel build, as a run on 2 threads calls it)
        from fastbp import Optimizer
        net.train_epoch(net.check_inputs(X), net.check_targets(Y, 4), np.arange(4), 2, 0.1, 0.0,
                        Optimizer("adam").bind(net), threads=2)
    else:
        batch_size, rule = mode.split(":")
        net.train(X, Y, epochs=1, lr=0.1, batch_size=int(batch_size), optimizer=rule,
                  diagnostics=False)
    print(mode, time.perf_counter() - start)
"""
# training mode -> what the compile probe runs: (batch size, rule), or inference. A short
# run takes one thread (training.ParallelBuild); the mini-batch kernel's parallel build is
# a compile of its own. The probe's network (sigmoid) and these rules take the training
# kernels' common build (kernels.py, "builds"), but RMSprop, which takes the full one.
COMPILE_MODES = {"per-sample SGD": "1:sgd", "mini-batch SGD": "2:sgd", "mini-batch Adam": "2:adam",
                 "mini-batch, parallel build": "2:adam:parallel", "mini-batch RMSprop, full build": "2:rmsprop",
                 "predict": "predict"}


def compile_seconds(dtype="float64"):
    """First-call seconds of each training mode's kernel in fresh interpreters, {mode:
    (cold, cached)}: an interpreter with an empty NUMBA_CACHE_DIR runs the modes in turn
    (so a kernel that two modes share counts for the first), a second one over the cache
    the first left."""
    cold, cached = _cold_and_cached(_COMPILE_PROBE % (dtype, dtype), list(COMPILE_MODES.values()))
    return {name: (cold[mode], cached[mode]) for name, mode in COMPILE_MODES.items()}


def _cold_and_cached(script, args):
    """Run script (which prints lines "name seconds") in a fresh interpreter with an
    empty NUMBA_CACHE_DIR, then in another over the cache it left: ({name: seconds} of
    the first run, the same of the second)."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        runs = [subprocess.run([sys.executable, "-c", script] + args, env=env, check=True,
                               capture_output=True, text=True) for _ in range(2)]
    return [{name: float(seconds) for name, seconds in (line.split() for line in run.stdout.strip().splitlines())}
            for run in runs]


_FIRST_FIT = """
import sys, time, warnings
import numpy as np
import fastbp
warnings.simplefilter("ignore")              # (one epoch: a ConvergenceWarning)
rng = np.random.default_rng(0)
X = rng.random((1797, 64))                   # the size of scikit-learn's digits
y = rng.integers(0, 10, 1797)
for name in sys.argv[1:]:
    estimator = getattr(fastbp, name)(max_iter=1)
    start = time.perf_counter()
    estimator.fit(X, y if name == "MLPClassifier" else y / 9.0)
    print(name, time.perf_counter() - start)
"""
ESTIMATORS = ("MLPClassifier", "MLPRegressor")


def first_fit_seconds(names=ESTIMATORS):
    """Seconds of each estimator's first fit with its defaults (one epoch, 1,797 x 64
    random rows: the size of scikit-learn's digits), {name: (cold, cached)}: each in a
    fresh interpreter with an empty NUMBA_CACHE_DIR, then in another over the cache it
    left. The cold figure is what a new environment's first fit waits."""
    out = {}
    for name in names:                       # (each in a cache of its own: both are first fits)
        cold, cached = _cold_and_cached(_FIRST_FIT, [name])
        out[name] = (cold[name], cached[name])
    return out


_PROFILE = """
import json, sys, time
from numba.core import event

class Compiles(event.Listener):       # each compile's own seconds: its nested compiles taken out
    def __init__(self):
        self.open, self.done = [], []
    def on_start(self, ev):
        self.open.append([ev.data["dispatcher"].py_func.__name__, time.perf_counter(), 0.0])
    def on_end(self, ev):
        name, start, nested = self.open.pop()
        seconds = time.perf_counter() - start
        if self.open:
            self.open[-1][2] += seconds
        self.done.append((name, seconds - nested))

compiles = Compiles()
event.register("numba:compile", compiles)
start = time.perf_counter()
exec(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - start, "compiles": compiles.done}))
"""


FIRST_CLASSIFIER_FIT = ("import warnings, numpy as np, fastbp; warnings.simplefilter('ignore'); "
                        "rng = np.random.default_rng(0); "
                        "fastbp.MLPClassifier(max_iter=1).fit(rng.random((1797, 64)), rng.integers(0, 10, 1797))")


def compile_profile(code=FIRST_CLASSIFIER_FIT):
    """Where a cold compile's time goes: code (default: first_fit_seconds' first
    MLPClassifier fit, 1,797 x 64 random rows) runs in a fresh interpreter with an empty NUMBA_CACHE_DIR while a
    listener for Numba's "numba:compile" events times each compile. Returns (the code's
    seconds, [(function, signatures compiled, own seconds)], largest own time first),
    where a function's own seconds leave out the compiles nested in it (the helpers a
    kernel calls are compiled while it is)."""
    with tempfile.TemporaryDirectory() as cache:
        done = subprocess.run([sys.executable, "-c", _PROFILE, code], env=dict(os.environ, NUMBA_CACHE_DIR=cache),
                              check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    functions = {}
    for name, own in result["compiles"]:
        count, seconds = functions.get(name, (0, 0.0))
        functions[name] = (count + 1, seconds + own)
    rows = sorted(((name, count, own) for name, (count, own) in functions.items()), key=lambda row: -row[2])
    return result["seconds"], rows


def distributed_table(epochs=5, worker_counts=(1, 2), hidden=256, batch_size=200, lr=0.001):
    """Fashion-MNIST, 784-hidden-10 ReLU/softmax/cross-entropy, Adam: test accuracy and
    the training call's wall time for net.train in this process and for
    fastbp.distributed.train on LocalClusters of each worker count (sync_every=1), with
    per round the bytes sent, the seconds the round took and the seconds the slowest
    worker trained (the rest is communication and scheduling). The clusters' start-up is
    not counted."""
    import distributed as dask_distributed

    from . import distributed as fd
    from .datasets import load_fashion_mnist
    X, y, X_test, y_test = load_fashion_mnist(dtype="float32")

    def network():
        return Network([784, hidden, 10], activation="relu", output="softmax", loss="cross_entropy",
                       init="he", seed=0, dtype="float32")

    def accuracy(net):
        return float(np.mean(net.predict(X_test).argmax(axis=1) == y_test))

    settings = dict(epochs=epochs, batch_size=batch_size, optimizer="adam", lr=lr)
    rows = []
    net = network()
    net.warm_up(batch_size)
    start = time.perf_counter()
    net.train(X, y, diagnostics=False, **settings)
    rows.append(dict(who="net.train, one process", workers=0, wall_s=time.perf_counter() - start,
                     accuracy=accuracy(net), bytes_per_round=0, round_s=None, worker_s=None))
    for n in worker_counts:
        with fd.local_cluster(n) as cluster, dask_distributed.Client(cluster) as client:
            fd.train(network(), X[:2 * n * batch_size], y[:2 * n * batch_size], client=client,
                     **dict(settings, epochs=1))             # each worker loads the kernels, untimed
            net = network()
            start = time.perf_counter()
            h = fd.train(net, X, y, client=client, **settings)
            wall = time.perf_counter() - start
        rows.append(dict(who="fastbp.distributed.train", workers=n, wall_s=wall, accuracy=accuracy(net),
                         bytes_per_round=h["bytes_per_round"],
                         round_s=float(np.median(h["round_seconds"])),
                         worker_s=float(np.median(h["worker_seconds"]))))
    return rows


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
                        help="also time the installed peers (PyTorch, JAX, scikit-learn) on "
                             "784-H-10 ReLU/softmax networks: SGD at batch sizes 1, 64 and 200, "
                             "Adam at 200")
    parser.add_argument("--peer-dtype", choices=("float32", "float64"), default="float32",
                        help="the dtype every peer trains in (float64: JAX with x64 enabled); "
                             "predicting is timed in float32 (default float32)")
    parser.add_argument("--peer-hidden", type=int, nargs="+", default=[100, 200], metavar="H",
                        help="the peers' hidden units (default: 100 200)")
    parser.add_argument("--batched", action="store_true",
                        help="also time mini-batch epochs (784-H-10 ReLU/softmax, float32; batch "
                             "64 and 200 SGD, 200 Adam) against their matrix products alone")
    parser.add_argument("--contention", action="store_true",
                        help="also time every mode (CONTENTION_MODES: per-sample, mini-batch and "
                             "full-batch epochs, predict, an estimator's fit; 784-100-10 and 784-H-10 "
                             "ReLU/softmax, each of --dtypes) alone and beside one and two busy "
                             "processes, and two fastbp processes at once against one alone")
    parser.add_argument("--distributed", type=int, metavar="EPOCHS",
                        help="Fashion-MNIST 784-256-10 Adam for this many epochs: net.train against "
                             "fastbp.distributed.train on 1 and 2 local workers (needs fastbp[dask])")
    parser.add_argument("--sparse", type=int, metavar="N_IN",
                        help="also time epochs on sparse rows (CSR) against the same rows dense: "
                             "N_IN features at densities 0.1%%, 1%%, 10%% (N_IN-100-10 ReLU/softmax, "
                             "float32, per-sample SGD and batch-200 Adam, --samples rows)")
    parser.add_argument("--trainers", action="store_true",
                        help="also time the classical trainers against their peers: Levenberg-Marquardt "
                             "against pyrenn, RPROP against FANN 2.2 (libfann-dev), scaled conjugate gradient "
                             "against scikit-learn's lbfgs (fastbp.bench_trainers)")
    parser.add_argument("--peer-samples", type=int, default=12000,
                        help="samples the peers are timed on, scaled to --samples (default 12000)")
    args = parser.parse_args(argv)

    m, ref_m = args.samples, args.reference_samples or args.samples
    print("fastbp %d-%d-10, per-sample SGD (seed 000's network), %d samples, median of %d epochs"
          % (784, args.hidden, m, args.repeats))
    rows, figures = [], {"samples": m, "hidden": args.hidden, "repeats": args.repeats, "processor": processor(),
                         "cpus": os.cpu_count()}
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
    figures["blas_note"] = blas_core_note(blas_libraries())
    if figures["blas_note"]:
        print("note: " + figures["blas_note"])
    ref64 = dict((dtype, ref) for dtype, ref, _ in rows).get("float64")
    print("%-8s %15s %13s %19s %20s" % ("dtype", "reference s/ep", "kernels s/ep",
                                        "vs same-dtype ref", "vs float64 ref"))
    for dtype, _, fast in rows:
        print("%-8s %15.2f %13.3f %18.1fx %19s" % (dtype, ref, fast, ref / fast,
                                                   "%.1fx" % (ref64 / fast) if ref64 else "-"))
        figures[dtype]["speedup_vs_float64_reference"] = ref64 / fast if ref64 else None
    if ref_m != m:
        print("(reference timed on %d samples, scaled to %d)" % (ref_m, m))
    if not args.no_compile:
        compile_times = compile_seconds()
        figures["compile_s"] = {name: {"cold": cold, "cached": cached}
                                for name, (cold, cached) in compile_times.items()}
        print("first call per training mode (float64), fresh interpreters, in this order:")
        for name, (cold, cached) in compile_times.items():
            print("  %-16s %6.2f s compiling, %.2f s from the on-disk cache" % (name, cold, cached))
        fits = first_fit_seconds()
        figures["first_fit_s"] = {name: {"cold": cold, "cached": cached} for name, (cold, cached) in fits.items()}
        print("first fit of each estimator (defaults, one epoch, 1797 x 64), fresh interpreters:")
        for name, (cold, cached) in fits.items():
            print("  %-16s %6.2f s in a new environment, %.2f s with the cache warm" % (name, cold, cached))
    peak = {dtype: fma_peak_gflops(dtype) for dtype in ("float32", "float64")}
    figures["fma_peak_gflops_one_core"] = peak
    flops = per_sample_flops([784, args.hidden, 10]) * m
    print("one core's measured multiply-add peak: %.0f GFLOP/s float32, %.0f float64; at it, "
          "this epoch would take %.3f s (float32), %.3f s (float64)"
          % (peak["float32"], peak["float64"], flops / peak["float32"] / 1e9,
             flops / peak["float64"] / 1e9))
    for dtype, _, fast in rows:
        figures[dtype]["floor_s"] = flops / peak[dtype] / 1e9
        print("  %s kernels: %.2fx the floor" % (dtype, fast / figures[dtype]["floor_s"]))
    if args.contention:
        figures["contention"] = []
        print("\nan epoch of %d samples (predict: 5 calls on them; the estimator: a one-epoch fit), alone "
              "and beside %s busy processes "
              "(median of %d interleaved pairs)" % (m, " and ".join(map(str, COMPETITORS)), args.repeats))
        print("%-20s %-8s %-7s %-17s %5s %9s %9s %13s %14s" % ("mode", "dtype", "hidden", "threads", "busy",
                                                             "alone s", "busy s", "busy / alone", "floor ratio"))
        for mode in CONTENTION_MODES:
            for dtype in args.dtypes.split(","):
                for hidden in sorted({100, args.hidden}):
                    floor = per_sample_flops([784, hidden, 10]) * m / peak[dtype] / 1e9
                    for competitors in COMPETITORS:
                        for name, alone, busy, ratio in contention_table(hidden, dtype, m, args.repeats, mode,
                                                                         competitors):
                            figures["contention"].append(dict(
                                mode=mode, dtype=dtype, hidden=hidden, threads=name, competitors=competitors,
                                alone_s=alone, busy_s=busy, ratio=ratio,
                                floor_s=floor if mode == "per-sample SGD" else None))
                            print("%-20s %-8s %-7d %-17s %5d %9.3f %9.3f %12.2fx %14s"
                                  % (mode, dtype, hidden, name, competitors, alone, busy, ratio,
                                     "%.2fx" % (alone / floor) if mode == "per-sample SGD" else "-"))
        figures["processes"] = []
        for batch_size in (1, 200):
            alone, together, ratio = processes_table(100, "float32", m, args.repeats, batch_size=batch_size)
            figures["processes"].append(dict(processes=2, batch_size=batch_size, alone_samples_per_s=alone,
                                             together_samples_per_s=together, ratio=ratio))
            print("two fastbp processes at once (784-100-10, float32, batch %d, fastbp's thread setting): "
                  "%.0f samples/s together against %.0f alone, %.2fx (median of %d interleaved pairs)"
                  % (batch_size, together, alone, ratio, args.repeats))
    if args.batched:
        figures["batched"] = []
        blas_peak = blas_peak_gflops("float32")
        cores = kernels.threading_info()["threads"]
        figures["blas_peak_gflops_one_core"] = blas_peak
        print("\nmini-batch epochs, 784-%d-10 ReLU/softmax, float32, %d samples, against the "
              "same products alone (medians of %d interleaved pairs)" % (args.hidden, m, args.repeats))
        print("one core's multiply-add peak as BLAS reaches it (square products, one thread): "
              "%.0f GFLOP/s float32; times the %d cores in use: %.0f" % (blas_peak, cores, blas_peak * cores))
        print("%-6s %-5s %9s %8s %12s %11s %15s" % ("batch", "rule", "epoch s", "GFLOP/s",
                                                 "GEMM-only s", "GEMM GFLOP/s", "epoch / GEMM"))
        for row in batched_table(args.hidden, m, args.repeats):
            figures["batched"].append(dict(zip(("batch_size", "rule", "epoch_s", "gflops", "gemm_s",
                                                "gemm_gflops", "ratio"), row)))
            print("%-6d %-5s %9.3f %8.1f %12.3f %11.1f %14.2fx   (epoch %.0f%%, products %.0f%% of the peak)"
                  % (row + (100 * row[3] / (blas_peak * cores), 100 * row[5] / (blas_peak * cores))))
        figures["batched_pieces"] = batched_breakdown(args.hidden, m, repeats=args.repeats)
        print("an SGD epoch's pieces at batch 200, each timed alone (s): " + ", ".join(
            "%s %.3f" % item for item in figures["batched_pieces"].items()))
    if args.peers:
        figures["peers"] = []
        for hidden in args.peer_hidden:
            rows = peer_table(args.peer_samples, hidden, args.repeats, scale_to=m, dtype=args.peer_dtype)
            figures["peers"] += [dict(hidden=hidden, batch_size=b, rule=rule, who=who, seconds=sec, ratio=r,
                                      dtype=args.peer_dtype) for b, rule, who, sec, r in rows]
            print("\npeers: 784-%d-10, ReLU + softmax + cross-entropy, %s, SGD lr %g or Adam "
                  "lr %g; timed on %d samples, scaled to %d; ratio: median of interleaved pairs"
                  % (hidden, args.peer_dtype, PEER_LR, PEER_ADAM_LR, args.peer_samples, m))
            print("%-6s %-5s %-28s %10s %14s" % ("batch", "rule", "", "s/epoch", "time / fastbp"))
            for batch_size, rule, who, seconds, ratio in rows:
                print("%-6d %-5s %-28s %10.3f %13.2fx" % (batch_size, rule, who, seconds, ratio))
            predicting = predict_table(hidden, args.repeats)
            figures["peers"] += [dict(hidden=hidden, batch_size=PREDICT_ROWS, rule="predict", who=who,
                                      seconds=sec, ratio=r, dtype="float32") for who, sec, r in predicting]
            print("predicting %d rows, float32 (medians of %d calls):" % (PREDICT_ROWS, PREDICT_CALLS))
            for who, seconds, ratio in predicting:
                print("%-6s %-5s %-28s %10.4f %13.2fx" % ("", "", who, seconds, ratio))
        missing = sorted(set(PEERS) - set(installed_peers()))
        if missing:
            print("not installed: %s (pip install 'fastbp[peers]')" % ", ".join(missing))
    if args.distributed:
        figures["distributed"] = distributed_table(args.distributed)
        print("\nFashion-MNIST, 784-256-10 ReLU/softmax, Adam lr 0.001, batches of 200, float32, "
              "%d epochs; per round (one epoch): bytes sent, seconds, the slowest worker's training seconds"
              % args.distributed)
        print("%-26s %8s %8s %9s %14s %9s %10s" % ("", "workers", "wall s", "accuracy", "bytes/round",
                                                 "round s", "worker s"))
        for r in figures["distributed"]:
            print("%-26s %8s %8.2f %9.4f %14s %9s %10s" % (
                r["who"], r["workers"] or "-", r["wall_s"], r["accuracy"], r["bytes_per_round"] or "-",
                "%.3f" % r["round_s"] if r["round_s"] else "-", "%.3f" % r["worker_s"] if r["worker_s"] else "-"))
    if args.sparse:
        rows = sparse_table(m, args.sparse, (0.001, 0.01, 0.1), args.repeats)
        figures["sparse"] = [dict(zip(("density", "mode", "dense_s", "sparse_s", "ratio"), r)) for r in rows]
        print("\nsparse rows (CSR) against the same rows dense, %d-100-10 ReLU/softmax, float32, %d samples, "
              "L2 1e-4 (medians of %d interleaved pairs)" % (args.sparse, m, args.repeats))
        print("%-8s %-16s %9s %9s %15s" % ("density", "mode", "dense s", "sparse s", "dense / sparse"))
        for density, mode, dense, sparse, ratio in rows:
            print("%-8g %-16s %9.3f %9.3f %14.1fx" % (density, mode, dense, sparse, ratio))
    if args.trainers:
        from .bench_trainers import report
        print()
        figures["trainers"] = report(args.repeats)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    return figures


if __name__ == "__main__":
    main()
