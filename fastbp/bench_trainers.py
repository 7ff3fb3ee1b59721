"""``fastbp bench --trainers``: the classical trainers against their peers, per epoch.

  - Levenberg-Marquardt against pyrenn's (pure NumPy) at 1-10-1 on a noisy sine (200
    samples), 10-20-1 on scikit-learn's diabetes, 13-20-1 on 400 samples and 64-30-10 on
    its digits, both from the same start with pyrenn's mu (3, by 10);
  - RPROP (iRPROP-) against FANN 2.2's (Debian's libfann-dev, loaded with ctypes) at
    784-100-10, tanh hidden and sigmoid outputs on the squared error, 20,000 samples, in
    float32 (libfloatfann) and float64 (libdoublefann);
  - scaled conjugate gradient against scikit-learn's L-BFGS, 64-32-10 softmax on digits,
    the same iterations: seconds and the training loss each reaches.

Every pair is timed interleaved (fastbp, peer, fastbp, peer, ...); the ratio is the median
of the pairwise ratios. A peer that is not installed gets a line saying how to install it.
"""
import contextlib
import ctypes
import ctypes.util
import io
import statistics
import time
import warnings

import numpy as np

# name -> (sizes, samples or the data set's name)
LM_CASES = {"1-10-1, sine, 200 samples": ([1, 10, 1], 200), "10-20-1, diabetes": ([10, 20, 1], "diabetes"),
            "13-20-1, 400 samples": ([13, 20, 1], 400), "64-30-10, digits": ([64, 30, 10], "digits")}
RPROP_SIZES, RPROP_SAMPLES = [784, 100, 10], 20000


def _lm_problem(sizes, m, seed=0):
    """Inputs and targets in [-1, 1] (pyrenn's scaling then leaves them alone)."""
    if m == "digits":
        from sklearn.datasets import load_digits
        X, y = load_digits(return_X_y=True)
        return X / 8.0 - 1.0, np.eye(10)[y] * 2.0 - 1.0
    if m == "diabetes":
        from sklearn.datasets import load_diabetes
        X, y = load_diabetes(return_X_y=True)
        return X / np.abs(X).max(axis=0), ((y - y.min()) / (y.max() - y.min()) * 2 - 1)[:, None]
    rng = np.random.default_rng(seed)
    if sizes[0] == 1:
        x = np.linspace(-1, 1, m)[:, None]
        return x, 0.8 * np.sin(3 * x) + 0.1 * rng.normal(size=x.shape)
    X = rng.uniform(-1, 1, (m, sizes[0]))
    y = np.tanh(X @ rng.normal(size=sizes[0]) / np.sqrt(sizes[0]))[:, None] * 0.8
    return X, y + 0.05 * rng.normal(size=y.shape)


def lm_table(epochs=3, repeats=3):
    """Rows (case, fastbp s/epoch, pyrenn s/epoch, pyrenn / fastbp), or None without
    pyrenn."""
    try:
        import pyrenn  # noqa: F401
    except ImportError:
        return None
    return [(name,) + _lm_pair(sizes, m, epochs, repeats) for name, (sizes, m) in LM_CASES.items()]


def _lm_pair(sizes, m, epochs, repeats):
    """(fastbp s/epoch, pyrenn s/epoch, the median ratio) of interleaved runs from one start."""
    import pyrenn

    import fastbp
    X, Y = _lm_problem(sizes, m)
    net = fastbp.Network(sizes, activation="tanh", output="identity", init="nguyen_widrow", seed=0)
    start = net.parameter_vector()
    peer_epochs = 1 if m == "digits" else epochs             # (pyrenn takes seconds an epoch on digits)

    def ours():
        net.set_parameter_vector(start)
        began = time.perf_counter()
        net.train(X, Y, epochs=epochs, optimizer=fastbp.Optimizer("lm", mu=3.0), diagnostics=False)
        return (time.perf_counter() - began) / epochs

    def theirs():
        peer = pyrenn.CreateNN(sizes)
        peer["w0"] = np.concatenate([np.concatenate([W.T.ravel(), b]) for W, b in zip(net.weights, net.biases)])
        peer["w"] = peer["w0"].copy()
        began = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            pyrenn.train_LM(X.T, Y.T, peer, k_max=peer_epochs, E_stop=0.0)
        return (time.perf_counter() - began) / peer_epochs

    ours()                                                   # (the Jacobian kernel compiled)
    a, b = [], []
    for _ in range(repeats):
        a.append(ours())
        b.append(theirs())
    return statistics.median(a), statistics.median(b), statistics.median(y / x for x, y in zip(a, b))


# ---------------------------------------------------------------- FANN

FANN_SIGMOID, FANN_SIGMOID_SYMMETRIC, FANN_TRAIN_RPROP, FANN_ERRORFUNC_LINEAR = 3, 5, 2, 0


class _TrainData(ctypes.Structure):
    """FANN 2.2's struct fann_train_data (fann_train.h)."""
    _fields_ = [("errno_f", ctypes.c_int), ("error_log", ctypes.c_void_p), ("errstr", ctypes.c_char_p),
                ("num_data", ctypes.c_uint), ("num_input", ctypes.c_uint), ("num_output", ctypes.c_uint),
                ("input", ctypes.POINTER(ctypes.c_void_p)), ("output", ctypes.POINTER(ctypes.c_void_p))]


def fann_library(dtype):
    """FANN's float or double library, or None."""
    path = ctypes.util.find_library("floatfann" if dtype == "float32" else "doublefann")
    return ctypes.CDLL(path) if path else None


class FannRprop:
    """A FANN network trained by its iRPROP- (FANN_TRAIN_RPROP), on the squared error, one
    fann_train_epoch a call: tanh (FANN's symmetric sigmoid, steepness 1) hidden, sigmoid
    outputs (steepness 0.5: 1 / (1 + exp(-z)))."""

    def __init__(self, lib, sizes, X, Y, dtype):
        self.lib, ctype = lib, ctypes.c_float if dtype == "float32" else ctypes.c_double
        lib.fann_create_standard.restype = ctypes.c_void_p
        lib.fann_create_train.restype = ctypes.POINTER(_TrainData)
        lib.fann_train_epoch.restype = ctypes.c_float
        lib.fann_train_epoch.argtypes = [ctypes.c_void_p, ctypes.POINTER(_TrainData)]
        for name in ("fann_set_activation_steepness_hidden", "fann_set_activation_steepness_output"):
            getattr(lib, name).argtypes = [ctypes.c_void_p, ctype]
        self.ann = lib.fann_create_standard(len(sizes), *[ctypes.c_uint(n) for n in sizes])
        lib.fann_set_training_algorithm(ctypes.c_void_p(self.ann), FANN_TRAIN_RPROP)
        lib.fann_set_train_error_function(ctypes.c_void_p(self.ann), FANN_ERRORFUNC_LINEAR)
        lib.fann_set_activation_function_hidden(ctypes.c_void_p(self.ann), FANN_SIGMOID_SYMMETRIC)
        lib.fann_set_activation_function_output(ctypes.c_void_p(self.ann), FANN_SIGMOID)
        lib.fann_set_activation_steepness_hidden(ctypes.c_void_p(self.ann), ctype(1.0))
        lib.fann_set_activation_steepness_output(ctypes.c_void_p(self.ann), ctype(0.5))
        self.data = lib.fann_create_train(len(X), sizes[0], sizes[-1])
        for field, values in (("input", X), ("output", Y)):   # (fann_create_train's rows are one block)
            block = np.ascontiguousarray(values, dtype)
            ctypes.memmove(getattr(self.data.contents, field)[0], block.ctypes.data, block.nbytes)

    def epoch(self):
        return self.lib.fann_train_epoch(ctypes.c_void_p(self.ann), self.data)

    def close(self):
        self.lib.fann_destroy_train(self.data)
        self.lib.fann_destroy(ctypes.c_void_p(self.ann))


def rprop_table(repeats=3, samples=RPROP_SAMPLES):
    """Rows (dtype, fastbp s/epoch, FANN s/epoch, FANN / fastbp); None without FANN."""
    import fastbp
    rng = np.random.default_rng(0)
    X = rng.random((samples, RPROP_SIZES[0]))
    Y = np.eye(RPROP_SIZES[-1])[rng.integers(0, RPROP_SIZES[-1], samples)]
    rows = []
    for dtype in ("float32", "float64"):
        lib = fann_library(dtype)
        if lib is None:
            return None
        peer = FannRprop(lib, RPROP_SIZES, X, Y, dtype)
        net = fastbp.Network(RPROP_SIZES, activation="tanh", output="sigmoid", seed=0, dtype=dtype)
        Xd = X.astype(dtype)
        optimizer = fastbp.Optimizer("rprop", lr=0.1)        # (FANN's first step size, delta_zero)
        net.train(Xd, Y, epochs=1, optimizer=optimizer, diagnostics=False)     # (compiled)
        a, b = [], []
        for _ in range(repeats):
            a.append(net.train(Xd, Y, epochs=1, optimizer=optimizer, diagnostics=False)["seconds"][0])
            began = time.perf_counter()
            peer.epoch()
            b.append(time.perf_counter() - began)
        peer.close()
        rows.append((dtype, statistics.median(a), statistics.median(b), statistics.median(y / x for x, y in zip(a, b))))
    return rows


# ---------------------------------------------------------------- SCG and L-BFGS

def scg_table(iterations=100, repeats=3):
    """Rows (who, seconds for `iterations` iterations, the training loss reached): fastbp's
    SCG and scikit-learn's lbfgs (max_iter=iterations, its own tolerances switched off) on
    digits, 64-32-10 tanh/softmax/cross-entropy, float64, no penalty, from Glorot starts."""
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    import fastbp
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    fast, peer, losses = [], [], {}
    for _ in range(repeats):
        net = fastbp.Network([64, 32, 10], activation="tanh", output="softmax", loss="cross_entropy",
                             init="glorot", seed=0)
        net.train(X, y, epochs=1, optimizer="scg", diagnostics=False)      # (compiled)
        net = fastbp.Network([64, 32, 10], activation="tanh", output="softmax", loss="cross_entropy",
                             init="glorot", seed=0)
        began = time.perf_counter()
        net.train(X, y, epochs=iterations, optimizer="scg", diagnostics=False)
        fast.append(time.perf_counter() - began)
        losses["fastbp scg"] = net.loss(X, y)
        clf = MLPClassifier((32,), activation="tanh", solver="lbfgs", alpha=0.0, max_iter=iterations, tol=0.0,
                            max_fun=10 ** 9, random_state=0)
        began = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(X, y)
        peer.append(time.perf_counter() - began)
        losses["scikit-learn lbfgs"] = clf.loss_
    return [("fastbp scg", statistics.median(fast), losses["fastbp scg"]),
            ("scikit-learn lbfgs", statistics.median(peer), losses["scikit-learn lbfgs"])]


def report(repeats=3):
    """Print the three tables; returns their figures (for --json)."""
    figures = {}
    lm = lm_table(repeats=repeats)
    if lm is None:
        print("LM against pyrenn: pyrenn is not installed (pip install pyrenn)")
    else:
        figures["lm"] = [dict(zip(("case", "fastbp_s", "pyrenn_s", "ratio"), row)) for row in lm]
        print("Levenberg-Marquardt epochs, tanh/identity, from the same start (median of %d interleaved pairs)"
              % repeats)
        print("%-24s %12s %12s %15s" % ("", "fastbp s", "pyrenn s", "pyrenn / fastbp"))
        for row in lm:
            print("%-24s %12.5f %12.4f %14.0fx" % row)
    rprop = rprop_table(repeats=repeats)
    if rprop is None:
        print("RPROP against FANN: FANN is not installed (bash .ci/debian-packages fann, or apt-get install "
              "libfann-dev)")
    else:
        figures["rprop"] = [dict(zip(("dtype", "fastbp_s", "fann_s", "ratio"), row)) for row in rprop]
        print("iRPROP- epochs, 784-100-10 tanh/sigmoid/squared error, %d samples (median of %d interleaved pairs)"
              % (RPROP_SAMPLES, repeats))
        print("%-24s %12s %12s %15s" % ("", "fastbp s", "FANN s", "FANN / fastbp"))
        for row in rprop:
            print("%-24s %12.4f %12.4f %14.1fx" % row)
    scg = scg_table(repeats=repeats)
    figures["scg"] = [dict(zip(("who", "seconds", "loss"), row)) for row in scg]
    print("100 iterations on digits, 64-32-10 tanh/softmax/cross-entropy (median of %d)" % repeats)
    for who, seconds, loss in scg:
        print("%-24s %9.3f s, training loss %.3g" % (who, seconds, loss))
    return figures
