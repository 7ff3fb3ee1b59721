"""Each kernel and each training mode: time_ for both backends, track_speedup_ (the
NumPy reference's time over the Numba kernels', measured in the same process) and, for
the batched ones, track_over_gemm_ (the kernels' time over that of their matrix products
alone, fastbp.bench.gemm_floor)."""
import functools
import subprocess
import sys

import numba
import numpy as np

import fastbp
from fastbp import kernels
from fastbp.bench import SPARSE_MODES, sparse_data
from fastbp.cases import FULL_BATCH_CASES, REGULARISERS, problem
from fastbp.optimizers import RULE_CODES

from .common import (
    BACKENDS,
    DTYPES,
    FUNCTIONS,
    NETWORKS,
    SAMPLES,
    WARM_ROWS,
    make,
    make_function_case,
    median_seconds,
    over_gemm,
    speedup,
    warm,
)


def per_network_and_dtype(track):
    """A track_speedup_ method runs both backends itself: no backend parameter."""
    track.params = [list(NETWORKS), DTYPES]
    track.param_names = ["network", "dtype"]
    track.unit = "x vs NumPy"
    return track


def over_its_products(track):
    """A track_over_gemm_ method: the kernels only (no backend parameter), over the time
    of the same matrix products alone."""
    track.params = [list(NETWORKS), DTYPES]
    track.param_names = ["network", "dtype"]
    track.unit = "x its products' time"
    return track


class _Kernel:
    params = [list(NETWORKS), DTYPES, BACKENDS]
    param_names = ["network", "dtype", "backend"]
    batch_size = 1                     # the training mode's batch size (None: the full batch)
    train = {}                         # its other settings (net.train's keywords)
    samples = SAMPLES["batched"]
    products = None                    # a batched call's products (fastbp.bench.GEMM_PRODUCTS)
    number = 1
    repeat = (1, 3, 60.0)
    warmup_time = 0.0
    timeout = 600

    def setup(self, network, dtype, *backend):
        self.net, self.X, self.Y = make(network, dtype, self.samples)
        if backend != ("numpy",):                        # (the reference compiles nothing)
            warm(self.net, lambda: self.run("numba", slice(WARM_ROWS)), batched=self.products == "step")

    def run(self, backend, rows=slice(None)):
        """One training epoch on X[rows], without the per-epoch diagnostics (training alone
        is timed)."""
        self.net.train(self.X[rows], self.Y[rows], epochs=1, lr=0.01, backend=backend, diagnostics=False,
                       batch_size=self.batch_size, **self.train)

    def over_gemm(self):
        """The kernels' time over their products' (a batch of all the samples, unless the
        mode's batches are smaller)."""
        return over_gemm(lambda: self.run("numba"), self.net.sizes, self.samples, self.batch_size or self.samples,
                         self.net.dtype, self.products)


class Forward(_Kernel):
    """The batched forward pass (net.predict), 4096 samples."""
    batch_size, products = None, "forward"

    def run(self, backend, rows=slice(None)):
        self.net.predict(self.X[rows], backend=backend)

    def time_forward(self, network, dtype, backend):
        self.run(backend)

    def peakmem_forward(self, network, dtype, backend):
        self.run(backend)

    @per_network_and_dtype
    def track_speedup_forward(self, network, dtype):
        return speedup(self.run)

    @over_its_products
    def track_over_gemm_forward(self, network, dtype):
        return self.over_gemm()


class DeltaPropagation(_Kernel):
    """The forward pass and every layer's error terms (net.deltas), 4096 samples."""
    batch_size, products = None, "deltas"

    def run(self, backend, rows=slice(None)):
        self.net.deltas(self.X[rows], self.Y[rows], backend=backend)

    def time_delta_propagation(self, network, dtype, backend):
        self.run(backend)

    @per_network_and_dtype
    def track_speedup_delta_propagation(self, network, dtype):
        return speedup(self.run)

    @over_its_products
    def track_over_gemm_delta_propagation(self, network, dtype):
        return self.over_gemm()


class PerSampleEpoch(_Kernel):
    """A per-sample SGD epoch (seeds 000, 002, 004) over 1000 samples."""
    samples = SAMPLES["per-sample"]

    def time_per_sample_epoch(self, network, dtype, backend):
        self.run(backend)

    @per_network_and_dtype
    def track_speedup_per_sample_epoch(self, network, dtype):
        return speedup(self.run)


class MiniBatchEpoch(_Kernel):
    """A mini-batch SGD epoch, batches of 64 (seed 001's mode), 4096 samples."""
    batch_size, products = 64, "step"

    def time_mini_batch_epoch(self, network, dtype, backend):
        self.run(backend)

    @per_network_and_dtype
    def track_speedup_mini_batch_epoch(self, network, dtype):
        return speedup(self.run)

    @over_its_products
    def track_over_gemm_mini_batch_epoch(self, network, dtype):
        return self.over_gemm()


class AdamEpoch(_Kernel):
    """A mini-batch epoch with Adam and an L2 penalty (the estimators' default optimizer),
    batches of 64, 4096 samples: the optimizer's update inside the compiled loop."""
    batch_size, products, train = 64, "step", {"optimizer": "adam", "l2": 1e-4}

    def time_adam_epoch(self, network, dtype, backend):
        self.run(backend)

    @per_network_and_dtype
    def track_speedup_adam_epoch(self, network, dtype):
        return speedup(self.run)

    @over_its_products
    def track_over_gemm_adam_epoch(self, network, dtype):
        return self.over_gemm()


class FullBatchStep(_Kernel):
    """One full-batch gradient-descent step (seed 003) on 4096 samples."""
    batch_size, products = None, "step"

    def time_full_batch_step(self, network, dtype, backend):
        self.run(backend)

    def peakmem_full_batch_step(self, network, dtype, backend):
        self.run(backend)

    @per_network_and_dtype
    def track_speedup_full_batch_step(self, network, dtype):
        return speedup(self.run)

    @over_its_products
    def track_over_gemm_full_batch_step(self, network, dtype):
        return self.over_gemm()


class _EpochPerCase:
    """asv's timing for cases of one epoch each: once per sample, 1-3 samples, no warm-up
    (setup warms the kernels)."""
    number = 1
    repeat = (1, 3, 30.0)
    warmup_time = 0.0
    timeout = 300


class Functions(_EpochPerCase):
    """Every activation, and every output with each loss it pairs with (fastbp.cases, from
    the tables in functions.py): a mini-batch epoch (batches of 64, 4096 samples) on a
    64-48-8 network, so that a new table entry is benchmarked as soon as it exists."""
    params = [FUNCTIONS, DTYPES]
    param_names = ["function", "dtype"]

    def setup(self, function, dtype):
        self.net, self.X, self.Y = make_function_case(function, dtype, SAMPLES["batched"])
        warm(self.net, lambda: self.run(slice(WARM_ROWS)), batched=True)

    def run(self, rows=slice(None)):
        self.net.train(self.X[rows], self.Y[rows], epochs=1, lr=0.001, batch_size=64, diagnostics=False)

    def time_mini_batch_epoch(self, function, dtype):
        self.run()


class Regularisers(_EpochPerCase):
    """A mini-batch Adam epoch (batches of 64, 4096 samples) on 784-200-10, ReLU, softmax,
    cross-entropy, with each regulariser of fastbp.cases (penalties, max-norm, dropout,
    input noise), and track_cost_: its epoch over the plain one's, interleaved."""
    params = [list(REGULARISERS), DTYPES]
    param_names = ["regulariser", "dtype"]

    def setup(self, regulariser, dtype):
        self.net, self.X, self.Y = make("784-200-10-relu-softmax-ce", dtype, SAMPLES["batched"])
        for name in ("none", regulariser):        # (each regulariser's kernel path loaded outside)
            warm(self.net, functools.partial(self.epoch, name), batched=True)

    def epoch(self, regulariser):
        self.net.train(self.X, self.Y, epochs=1, batch_size=64, optimizer="adam", diagnostics=False,
                       **REGULARISERS[regulariser])

    def time_regularised_epoch(self, regulariser, dtype):
        self.epoch(regulariser)

    def track_cost_over_plain(self, regulariser, dtype):
        ratios = []
        for _ in range(3):
            plain = median_seconds(lambda: self.epoch("none"), 1)
            ratios.append(median_seconds(lambda: self.epoch(regulariser), 1) / plain)
        return sorted(ratios)[1]
    track_cost_over_plain.unit = "x the plain epoch"


class FullBatchRules(_EpochPerCase):
    """Every full-batch rule of optimizers.RULES (RPROP, iRPROP+, and the methods with a
    step of their own: Levenberg-Marquardt, Bayesian regularisation, scaled conjugate
    gradient) on its case (fastbp.cases.FULL_BATCH_CASES), float64: the first epoch of a
    run (its setup included), by each backend, and track_speedup_."""
    params = [list(FULL_BATCH_CASES), BACKENDS]
    param_names = ["rule", "backend"]

    def setup(self, rule, *backend):
        network, m = FULL_BATCH_CASES[rule]
        self.net, self.X, self.Y = problem(*network, m, seed=0)
        self.rule = rule
        for name in BACKENDS:
            self.run(name)                       # (compiled outside the timing)

    def run(self, backend):
        self.net.train(self.X, self.Y, epochs=1, optimizer=self.rule, backend=backend, diagnostics=False)

    def time_epoch(self, rule, backend):
        self.run(backend)

    def track_speedup_epoch(self, rule):
        return speedup(self.run)
    track_speedup_epoch.params = [list(FULL_BATCH_CASES)]        # (it runs both backends itself)
    track_speedup_epoch.param_names = ["rule"]
    track_speedup_epoch.unit = "x vs NumPy"


class SparseInput:
    """Epochs on sparse rows (scipy CSR: the kernels read the non-zeros) against the same
    rows dense: 2000-100-10 ReLU/softmax, float32, 2000 samples, at two densities, per-sample
    SGD and batch-200 Adam (fastbp.bench.sparse_data, SPARSE_MODES)."""
    params = [[0.001, 0.01], list(SPARSE_MODES), ["dense", "csr"]]
    param_names = ["density", "mode", "input"]
    number = 1
    repeat = (1, 3, 30.0)
    warmup_time = 0.0
    timeout = 300

    def setup(self, density, mode, *inputs):
        X, Xs, self.y = sparse_data(2000, 2000, density)
        self.data = {"dense": X, "csr": Xs}
        self.batch_size, self.rule = SPARSE_MODES[mode]
        self.net = fastbp.Network([2000, 100, 10], activation="relu", output="softmax", loss="cross_entropy",
                                  init="he", seed=0, dtype="float32")
        for data in self.data.values():                  # compile (or load) both paths, untimed
            self.net.train(data[:8], self.y[:8], batch_size=min(self.batch_size, 8), optimizer=self.rule)

    def run(self, inputs):
        self.net.train(self.data[inputs], self.y, epochs=1, lr=0.001, batch_size=self.batch_size,
                       optimizer=self.rule, l2=1e-4, diagnostics=False)

    def time_epoch(self, density, mode, inputs):
        self.run(inputs)

    def track_dense_over_sparse(self, density, mode):
        return median_seconds(lambda: self.run("dense")) / median_seconds(lambda: self.run("csr"))

    track_dense_over_sparse.params = params[:2]
    track_dense_over_sparse.param_names = param_names[:2]
    track_dense_over_sparse.unit = "x (dense s / sparse s)"


_LAYER = """
import fastbp
from fastbp import kernels
net = fastbp.Network([784, 200, 10], seed=0)
net.warm_up(1)       # per-sample SGD on a layer this wide runs a parallel region: the layer is chosen
print(kernels.threading_info()["threading_layer"])
"""


def _threading_layer():
    """The threading layer Numba chooses here, asked of another interpreter: asv forks
    every benchmark from a process that has imported this module (asv.conf.json,
    launch_method), and a fork after OpenMP's threads have started is unsafe, so this
    module starts none."""
    done = subprocess.run([sys.executable, "-c", _LAYER], capture_output=True, text=True, check=True)
    return done.stdout.split()[-1]


class Threads:
    """The Numba threading layer (the parameter) and thread count (the value), recorded
    with every run so that results are compared like with like."""
    params = [[_threading_layer()]]
    param_names = ["threading_layer"]
    unit = "threads"

    def track_numba_threads(self, layer):
        return numba.get_num_threads()


class Compile:
    """First-call time of each training mode's kernel, and of MLPClassifier's first fit,
    in a fresh interpreter: cold (an empty Numba cache, so compiling) and from the
    on-disk cache. A kernel that grows shows here as a slower cold compile. The
    network (sigmoid) and SGD take the training kernels' common build, RMSprop the full
    one (kernels.py, "builds").

    Each call has a cache directory of its own, under one named for the sources
    (every fastbp module, Python's and Numba's versions): the cold timing empties it
    first and leaves what it compiled there, and the cached one, which asv runs after it
    (benchmarks run in the order of their names), reads it, filling it from another
    interpreter, untimed, only where no cold run of the same sources did (so each call
    compiles once per run: asv_benchmarks/README.md, "How long")."""
    number = 1
    repeat = (1, 3, 120.0)
    timeout = 600
    params = ["per-sample SGD", "mini-batch SGD", "mini-batch, parallel build", "mini-batch RMSprop, full build",
              "MLPClassifier fit"]
    param_names = ["first call"]
    _calls = {
        "per-sample SGD": "net.train(X, Y, diagnostics=False)",
        "mini-batch SGD": "net.train(X, Y, batch_size=2, diagnostics=False)",      # (a short run: one thread)
        "mini-batch, parallel build": "os.environ['FASTBP_THREADS'] = '2'; "        # (a fixed count: at once)
                                      "net.train(X, Y, batch_size=2, diagnostics=False)",
        "mini-batch RMSprop, full build": "net.train(X, Y, batch_size=2, optimizer='rmsprop', diagnostics=False)",
        "MLPClassifier fit": "fastbp.MLPClassifier(max_iter=1).fit(X, Y.argmax(axis=1))",
    }
    _setup = """
import glob, hashlib, importlib.metadata, importlib.util, os, shutil, subprocess, sys, tempfile, warnings
warnings.simplefilter("ignore")
call, cold = {call!r}, {cold!r}
sources = hashlib.sha256(("%s %s" % (sys.version, importlib.metadata.version("numba"))).encode())
package = os.path.dirname(importlib.util.find_spec("fastbp").origin)
for name in sorted(glob.glob(os.path.join(package, "*.py"))):
    sources.update(open(name, "rb").read())
root = os.path.join(tempfile.gettempdir(), "fastbp-asv-numba-cache")
here = os.path.join(root, sources.hexdigest()[:16])
cache = os.path.join(here, hashlib.sha256(call.encode()).hexdigest()[:16])
filled = os.path.join(cache, "filled")
for other in glob.glob(os.path.join(root, "*")):          # (other sources' caches)
    if other != here:
        shutil.rmtree(other, True)
if cold:
    shutil.rmtree(cache, True)
os.makedirs(cache, exist_ok=True)
os.environ["NUMBA_CACHE_DIR"] = cache
prime = ("import os, warnings; warnings.simplefilter('ignore'); import fastbp; "
         "from fastbp.bench import seed000_network, synthetic_data; X, Y = synthetic_data(8); net = seed000_network();")
if not cold and not os.path.exists(filled):                # fill it from another interpreter, untimed
    subprocess.run([sys.executable, "-c", prime + call], check=True)
    open(filled, "w").close()
import atexit
if cold:
    atexit.register(lambda: open(filled, "w").close())    # (after the timed call: what it compiled is kept)
import fastbp
from fastbp.bench import seed000_network, synthetic_data
net = seed000_network()
X, Y = synthetic_data(8)
"""

    def timeraw_compile_cold(self, call):
        return self._calls[call], self._setup.format(call=self._calls[call], cold=True)

    def timeraw_compile_from_cache(self, call):
        return self._calls[call], self._setup.format(call=self._calls[call], cold=False)


class UpdateRules:
    """One step of each elementwise gradient rule (kernels.optimizer_step: the rules of
    kernels.STEPS) on the 79,510 weights and biases of 784-100-10, in each dtype: the
    update alone, in its own process. Where the arrays happened to lie in a process made
    Adam's step 2.5x as slow until the rules kept what they store in locals
    (asv_benchmarks/README.md, "The rules keep what they store in locals")."""
    params = [[rule for rules in kernels.STEPS for rule in rules], DTYPES]
    param_names = ["rule", "dtype"]

    def setup(self, rule, dtype):
        net = fastbp.Network([784, 100, 10], seed=0, dtype=dtype)
        optimizer = fastbp.Optimizer(rule, lr=1e-3).bind(net)
        rng = np.random.default_rng(0)
        dw, db = (rng.standard_normal(a.size).astype(dtype) * 1e-3 for a in (net._w, net._b))
        self.step = (RULE_CODES[rule], net._w, net._b, dw, db, True, optimizer.hyper(1e-3, 0.0, None, net.dtype),
                     optimizer.state["w"], optimizer.state["b"])
        kernels.optimizer_step(*self.step, 1, 200.0, False)          # (compiled or loaded here)

    def time_step(self, rule, dtype):
        kernels.optimizer_step(*self.step, 2, 200.0, False)
