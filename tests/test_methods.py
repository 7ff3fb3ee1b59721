"""The full-batch methods with a step of their own (methods.py): the Jacobian held to
finite differences, Levenberg-Marquardt, Bayesian regularisation and scaled conjugate
gradient by both backends, and each against the outside world (pyrenn, SciPy's MINPACK,
gradient descent with momentum)."""
import contextlib
import io
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import make_problem
from sklearn.datasets import load_diabetes, load_digits

import fastbp
from fastbp import methods
from fastbp.cases import FULL_BATCH_CASES, METHOD_NETWORKS, METHOD_RULES, case_id
from fastbp.estimators import ConvergenceWarning

FULL_BATCH_RULES = tuple(FULL_BATCH_CASES)


def noisy_sine(m=200, seed=0, noise=0.1):
    rng = np.random.default_rng(seed)
    x = np.linspace(-1, 1, m)[:, None]
    return x, 0.8 * np.sin(3 * x) + noise * rng.normal(size=x.shape)


def diabetes():
    X, y = load_diabetes(return_X_y=True)
    X = X / np.abs(X).max(axis=0)                          # inputs in [-1, 1], as initnw expects
    return X, ((y - y.min()) / (y.max() - y.min()) * 2 - 1)[:, None]


# ---------------------------------------------------------------- the Jacobian

@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("spec", METHOD_NETWORKS + [([4, 5, 3], "relu", "softmax", "cross_entropy")], ids=case_id)
def test_the_jacobian_is_held_to_finite_differences(spec, backend):
    for bias in (True, False):
        net, X, T = make_problem(*spec, 9, seed=4, bias=bias)
        J = net.jacobian(X, backend=backend)
        theta = net.parameter_vector()
        assert J.shape == (9, spec[0][-1], theta.size) == (9, spec[0][-1], sum(net.n_parameters) if bias
                                                            else net.n_parameters[0])
        h, numeric = 1e-6, np.empty_like(J)
        for p in range(theta.size):
            outputs = []
            for step in (h, -h):
                moved = theta.copy()
                moved[p] += step
                net.set_parameter_vector(moved)
                outputs.append(net.predict(X))
            numeric[:, :, p] = (outputs[0] - outputs[1]) / (2 * h)
        net.set_parameter_vector(theta)
        np.testing.assert_allclose(J, numeric, rtol=0, atol=1e-7)
        np.testing.assert_allclose(net.jacobian(X, T, backend=backend), -J)     # of the errors t - o


@pytest.mark.parametrize("weighted", [False, True])
def test_the_jacobian_products_are_those_of_the_jacobian_whatever_the_blocks(weighted):
    net, X, T = make_problem([6, 7, 4, 2], ["tanh", "sigmoid"], "identity", "mse", 37, seed=1)
    S = np.random.default_rng(0).random(37) if weighted else None
    J = net.jacobian(X).reshape(37 * 2, -1)
    r = (net.predict(X) - T).reshape(-1)
    s = np.ones(74) if S is None else np.repeat(S, 2)
    for backend in ("numpy", "numba"):
        JtJ, Jtr, sse = methods.jacobian_products(net, X, T, S, backend)
        np.testing.assert_allclose(JtJ, J.T @ (J * s[:, None]), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(Jtr, J.T @ (s * r), rtol=1e-12, atol=1e-12)
        assert sse == pytest.approx(float(r @ (s * r)), rel=1e-12)
    blocks = [J for J, _ in net.jacobian_blocks(X, "numba", block=5)]
    assert [b.shape[0] for b in blocks] == [10] * 7 + [4]           # 5 samples of 2 outputs a block


# ---------------------------------------------------------------- the two backends

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("method", METHOD_RULES)
@pytest.mark.parametrize("spec", METHOD_NETWORKS, ids=case_id)
def test_the_kernels_agree_with_the_reference(spec, method, dtype):
    for weighted in (False, True):
        runs = []
        for backend in ("numpy", "numba"):
            net, X, T = make_problem(*spec, 41, seed=3, dtype=dtype)
            S = np.random.default_rng(1).integers(0, 3, 41).astype(dtype) if weighted else None
            opt = fastbp.Optimizer(method)
            h = net.train(X, T, epochs=5, optimizer=opt, backend=backend, sample_weight=S,
                          l2=0.001 if method != "br" else 0.0, diagnostics=False)
            runs.append((net, h, opt))
        (ref, h_ref, o_ref), (fast, h_fast, o_fast) = runs
        tol = 1e-10 if dtype == "float64" else 2e-3
        if dtype == "float32" and method == "scg":
            # SCG's curvature is the difference of two gradients sigma / |p| apart (5e-5):
            # in float32 it keeps about three digits, and the backends part at 1e-2
            tol = 2e-2
        for a, b in zip(ref.weights + ref.biases, fast.weights + fast.biases):
            np.testing.assert_allclose(b, a, rtol=tol, atol=tol)
        np.testing.assert_allclose(h_fast["loss"], h_ref["loss"], rtol=tol)
        for key in fastbp.optimizers.RULES[method].reports if dtype == "float64" else ():
            np.testing.assert_allclose(h_fast[key], h_ref[key], rtol=1e-6)
        assert o_fast.t == o_ref.t == 5
        assert h_fast["loss"][-1] < h_fast["loss"][0]


# ---------------------------------------------------------------- Levenberg-Marquardt

def test_lm_moves_mu_as_trainlm_does():
    """mu falls by mu_dec after every kept step; a step that does not lower the error is
    retried with mu raised by mu_inc: from one epoch to the next mu moves by 10^k / 10,
    k >= 0 the refused tries, and the error falls every epoch. At a minimum every try
    fails: mu climbs past mu_max and the run stops, keeping its weights."""
    x, y = noisy_sine()
    net = fastbp.Network([1, 10, 1], activation="tanh", output="identity", init="nguyen_widrow", seed=0)
    h = net.train(x, y, epochs=20, optimizer="lm", diagnostics=False)
    steps = np.log10(np.array(h["mu"]) / np.array([0.001] + h["mu"][:-1]))
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)
    assert steps.min() == pytest.approx(-1) and steps.max() >= 0        # kept at once, and after refusals
    assert all(b < a for a, b in zip(h["loss"], h["loss"][1:]))
    opt = fastbp.Optimizer("lm", mu=1.0, mu_max=1e3)
    net = fastbp.Network([1, 1], output="identity", seed=0)
    X = np.array([[0.0], [1.0]])
    net.weights, net.biases = [np.array([[2.0]])], [np.array([1.0])]   # exactly y = 2x + 1
    h = net.train(X, 2 * X + 1, epochs=10, optimizer=opt, diagnostics=False)
    assert h["stopped"] == "mu at mu_max" and len(h["loss"]) == 1       # 10, 100, 1000, 10000: past mu_max
    assert h["mu"] == [10000.0]
    assert net.weights[0][0, 0] == 2.0 and net.biases[0][0] == 1.0


@pytest.mark.parametrize("problem", ["sine", "diabetes"])
def test_lm_follows_pyrenns_lm_from_the_same_start(problem):
    """pyrenn's LM (pure NumPy; mu from 3, by 10 either way) and fastbp's with the same
    settings, from the same weights: the same sum of squared errors epoch by epoch, and
    so as low an error in as many epochs. (pyrenn's layout: each layer's W by columns,
    then its b; inputs and targets inside [-1, 1], which its scaling leaves alone.)"""
    import pyrenn
    X, Y = noisy_sine() if problem == "sine" else diabetes()
    sizes = [1, 10, 1] if problem == "sine" else [10, 20, 1]
    epochs = 30
    net = fastbp.Network(sizes, activation="tanh", output="identity", init="nguyen_widrow", seed=0)
    peer = pyrenn.CreateNN(sizes)
    peer["w0"] = np.concatenate([np.concatenate([W.T.ravel(), b]) for W, b in zip(net.weights, net.biases)])
    peer["w"] = peer["w0"].copy()
    with contextlib.redirect_stdout(io.StringIO()):
        peer = pyrenn.train_LM(X.T, Y.T, peer, k_max=epochs, E_stop=0.0, dampfac=3.0, dampconst=10.0)
    h = net.train(X, Y, epochs=epochs, optimizer=fastbp.Optimizer("lm", mu=3.0, mu_dec=0.1, mu_inc=10.0),
                  diagnostics=False)
    ours = 2 * len(X) * np.array(h["loss"])                  # the loss is E_D / (2 m)
    np.testing.assert_allclose(ours, peer["ErrorHistory"], rtol=1e-8)
    final = float(np.sum((pyrenn.NNOut(X.T, peer).reshape(Y.shape) - Y) ** 2))
    assert float(np.sum((net.predict(X) - Y) ** 2)) == pytest.approx(final, rel=1e-8)


@pytest.mark.parametrize("hidden, seed", [(3, 0), (4, 1)])
def test_lm_ends_where_minpack_does(hidden, seed):
    """scipy.optimize.least_squares(method='lm') on the same residuals from the same start:
    the final sums of squared errors agree to 1%."""
    from scipy.optimize import least_squares
    X, Y = noisy_sine(m=100 if hidden == 3 else 200, seed=1)
    net = fastbp.Network([1, hidden, 1], activation="tanh", output="identity", init="nguyen_widrow", seed=seed)
    start = net.parameter_vector()

    def residuals(theta):
        net.set_parameter_vector(theta)
        return (net.predict(X) - Y).ravel()

    def jacobian(theta):
        net.set_parameter_vector(theta)
        return net.jacobian(X).reshape(len(X), -1)

    minpack = least_squares(residuals, start, jac=jacobian, method="lm")
    net.set_parameter_vector(start)
    net.train(X, Y, epochs=300, optimizer="lm", diagnostics=False)
    ours = float(np.sum(residuals(net.parameter_vector()) ** 2))
    assert ours == pytest.approx(2 * minpack.cost, rel=0.01)


def test_lm_refuses_other_losses_other_settings_and_too_large_systems():
    net, X, T = make_problem([4, 3, 3], "tanh", "softmax", "cross_entropy", 10, seed=0)
    before = net.parameter_vector()
    for method in ("lm", "br"):
        with pytest.raises(ValueError, match="optimizer '%s' minimises the sum of squared errors: it needs "
                                             "loss='mse', not 'cross_entropy'" % method):
            net.train(X, T, optimizer=method)
    for settings, message in [(dict(l1=0.1), "takes no l1"), (dict(dropout=0.5), "takes no dropout"),
                              (dict(clip=1.0), "takes no clip"), (dict(batch_size=4), "leave batch_size unset")]:
        with pytest.raises(ValueError, match=message):
            net.train(X, T, optimizer="scg", **settings)
    with pytest.raises(ValueError, match=r"takes no l2 \(it sets its own regularisation\)"):
        net.train(X, T, optimizer="br", l2=0.01)
    np.testing.assert_array_equal(net.parameter_vector(), before)
    big = fastbp.Network([2000, 500, 1], output="identity", seed=0)   # P = 1,001,001: 8 TB a system
    with pytest.raises(ValueError, match=r"this network has 1001001 parameters: Levenberg-Marquardt's "
                                         r"1001001 x 1001001 system needs about [0-9.e+]+ GiB"):
        big.train(np.zeros((2, 2000)), np.zeros((2, 1)), optimizer="lm")



def test_lm_solves_on_the_blas_threads_the_load_leaves(monkeypatch):
    """From BLAS_THREADS_FROM parameters, the P x P products and solves take the thread
    count of batched epochs (threads.LoadChooser: the CPUs other processes leave free),
    under it one thread; FASTBP_THREADS=N fixes it."""
    import threadpoolctl

    from fastbp import threads
    seen, real = [], methods._damped_solve

    def spy(*args):
        seen.append(min(lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"))
        return real(*args)
    monkeypatch.setattr(methods, "_damped_solve", spy)
    monkeypatch.delenv("FASTBP_THREADS", raising=False)
    rng = np.random.default_rng(0)
    X, T = rng.normal(size=(30, 20)), rng.normal(size=(30, 1))
    big = fastbp.Network([20, 60, 1], activation="tanh", output="identity", seed=0)      # P = 1,321
    small = fastbp.Network([20, 5, 1], activation="tanh", output="identity", seed=0)     # P = 111
    assert small.n_trainable < methods.BLAS_THREADS_FROM <= big.n_trainable
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        for free in (2, 1):
            monkeypatch.setattr(threads.LoadChooser, "threads", lambda self, step=0, n=free: n)
            for net in (big, small):
                seen.clear()
                net.train(X, T, epochs=1, optimizer="lm", diagnostics=False)
                assert seen and set(seen) == {free if net is big else 1}
        monkeypatch.undo()
        monkeypatch.setattr(methods, "_damped_solve", spy)
        monkeypatch.setenv("FASTBP_THREADS", "1")
        seen.clear()
        big.train(X, T, epochs=1, optimizer="lm", diagnostics=False)
        assert set(seen) == {1}


def test_scg_runs_on_the_blas_threads_the_load_leaves(monkeypatch):
    """SCG's full-batch products of at least threads.LOOK_FROM rows x weights take
    LoadChooser.products threads (a training run holds BLAS to one otherwise); smaller
    ones stay on one."""
    import threadpoolctl

    from fastbp import threads
    seen, real = [], methods._gradient

    def spy(*args):
        seen.append(min(lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"))
        return real(*args)
    monkeypatch.setattr(methods, "_gradient", spy)
    monkeypatch.setattr(threads.LoadChooser, "products", lambda self, step: 2)
    rng = np.random.default_rng(0)
    net = fastbp.Network([30, 20, 3], activation="tanh", output="softmax", loss="cross_entropy", seed=0)
    big = threads.LOOK_FROM // net.n_parameters[0] + 1
    X, y = rng.random((big, 30)), rng.integers(0, 3, big)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        net.train(X, y, epochs=1, optimizer="scg", diagnostics=False)
        assert seen and set(seen) == {2}
        seen.clear()
        net.train(X[:big - 2], y[:big - 2], epochs=1, optimizer="scg", diagnostics=False)
        assert seen and set(seen) == {1}

# ---------------------------------------------------------------- Bayesian regularisation

def test_br_generalises_better_than_lm_on_noisy_data():
    """Many hidden units, few noisy samples: LM without regularisation fits the noise,
    BR's test error is lower and its effective number of parameters well below P."""
    x, y = noisy_sine(m=40, seed=3, noise=0.2)
    grid = np.linspace(-1, 1, 400)[:, None]
    truth = 0.8 * np.sin(3 * grid)
    errors = {}
    for method in ("lm", "br"):
        net = fastbp.Network([1, 30, 1], activation="tanh", output="identity", init="nguyen_widrow", seed=1)
        h = net.train(x, y, epochs=150, optimizer=method, diagnostics=False)
        errors[method] = float(np.mean((net.predict(grid) - truth) ** 2))
        if method == "br":
            P = net.parameter_vector().size
            assert len(h["gamma"]) == len(h["alpha"]) == len(h["beta"]) == len(h["loss"])
            assert 0 < h["gamma"][-1] < 0.5 * P and h["alpha"][-1] > 0 and h["beta"][-1] > 0
    assert errors["br"] < errors["lm"], errors



@pytest.mark.parametrize("order", ["C", "F"])
def test_brs_effective_parameters_take_the_trace_of_the_inverse(order):
    """gamma = P - alpha tr((beta J^T J + alpha I)^-1): the trace from the Cholesky
    factor's triangular inverse is the inverse's own, for J^T J of full rank or not; a
    matrix with NaN is refused by name."""
    rng = np.random.default_rng(0)
    for rows in (40, 5):                                   # full rank; rank 5 of 12
        J = rng.normal(size=(rows, 12))
        JtJ = np.array(J.T @ J, order=order)
        for beta, alpha in ((1.0, 0.5), (30.0, 1e-3)):
            expected = np.trace(np.linalg.inv(beta * JtJ + alpha * np.eye(12)))
            np.testing.assert_allclose(methods._inverse_trace(beta * JtJ, alpha), expected, rtol=1e-10)
    bad = np.eye(3)
    bad[1, 1] = np.nan
    with pytest.raises(np.linalg.LinAlgError, match="beta J\\^T J \\+ alpha I is not positive definite"):
        methods._inverse_trace(bad, 1.0)

# ---------------------------------------------------------------- scaled conjugate gradient

def test_scg_beats_momentum_for_the_same_gradient_evaluations():
    """Digits, 64-32-10, softmax and cross-entropy: SCG's training loss after its
    gradient evaluations is below full-batch gradient descent with momentum's after as
    many."""
    X, y = load_digits(return_X_y=True)
    X = X / 16
    net = fastbp.Network([64, 32, 10], activation="tanh", output="softmax", loss="cross_entropy", init="glorot",
                         seed=0)
    h = net.train(X, y, epochs=100, optimizer="scg", diagnostics=False)
    evaluations = int(h["gradients"][-1])
    scg_loss = net.loss(X, y)
    assert 100 <= evaluations <= 2 * 100 + 1               # two a kept step, and the first
    momentum = fastbp.Network([64, 32, 10], activation="tanh", output="softmax", loss="cross_entropy", init="glorot",
                              seed=0)
    best = min(_momentum_loss(momentum, X, y, lr, evaluations) for lr in (0.1, 0.3, 1.0, 3.0))
    assert scg_loss < best, (scg_loss, best)


def _momentum_loss(start, X, y, lr, evaluations):
    net = fastbp.Network([64, 32, 10], activation="tanh", output="softmax", loss="cross_entropy", init="glorot",
                         seed=0)
    net.restore(start.snapshot())
    try:
        net.train(X, y, epochs=evaluations, batch_size=None, optimizer=fastbp.Optimizer("momentum", lr=lr),
                  diagnostics=False)
    except fastbp.TrainingDiverged:
        return np.inf
    return net.loss(X, y)


# ---------------------------------------------------------------- everywhere the rules are

@pytest.mark.parametrize("method", FULL_BATCH_RULES)
def test_a_full_batch_run_resumes_exactly(tmp_path, method):
    """Its state (RPROP's step sizes and, for iRPROP+, the last loss; LM's mu, BR's alpha
    and beta, SCG's direction and lambda) is in the checkpoint."""
    X, Y = noisy_sine(m=60)
    path = tmp_path / "run.ckpt"
    whole = fastbp.Network([1, 8, 1], activation="tanh", output="identity", seed=4)
    h_whole = whole.train(X, Y, epochs=6, optimizer=fastbp.Optimizer(method, lr=0.5), diagnostics=False)
    part = fastbp.Network([1, 8, 1], activation="tanh", output="identity", seed=4)
    part.train(X, Y, epochs=3, optimizer=fastbp.Optimizer(method, lr=0.5), diagnostics=False, checkpoint=path)
    resumed, h = fastbp.resume(path, X, Y, epochs=6)
    np.testing.assert_array_equal(resumed.parameter_vector(), whole.parameter_vector())
    assert h["loss"] == h_whole["loss"]
    for key in fastbp.optimizers.RULES[method].reports:
        assert h[key] == h_whole[key]
    if method == "irprop+":                                  # (it took steps back: the last loss mattered)
        assert any(b > a for a, b in zip(h["loss"], h["loss"][1:]))


@pytest.mark.parametrize("solver", METHOD_RULES)
def test_the_methods_as_solvers(solver):
    X, y = diabetes()
    reg = fastbp.MLPRegressor(hidden_layer_sizes=(10,), solver=solver, max_iter=30, random_state=0,
                              init="nguyen_widrow")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, y.ravel())
    assert reg.score(X, y.ravel()) > 0.45
    Xd, yd = load_digits(return_X_y=True)
    clf = fastbp.MLPClassifier(hidden_layer_sizes=(16,), solver=solver, max_iter=15, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(Xd[:400] / 16, yd[:400])
    assert clf.net_.loss_name == ("mse" if solver in ("lm", "br") else "cross_entropy")   # patternnet's
    assert clf.score(Xd[:400] / 16, yd[:400]) > 0.8


@pytest.mark.parametrize("method", METHOD_RULES)
def test_a_method_never_keeps_non_finite_weights(method):
    """Inputs so large that the errors overflow: the divergence guard undoes the epoch,
    and TrainingDiverged leaves the weights as they were. A step whose error is NaN is
    never kept by LM and BR (NaN is never lower): from a finite start they stop at
    mu_max instead."""
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(20, 3)) * 1e154, rng.normal(size=(20, 1))
    net = fastbp.Network([3, 4, 1], activation="identity", output="identity", seed=0)
    before = net.parameter_vector()
    with pytest.raises(fastbp.TrainingDiverged):
        net.train(X, Y, epochs=5, optimizer=method, diagnostics=False)
    np.testing.assert_array_equal(net.parameter_vector(), before)
    if method != "scg":
        X = rng.normal(size=(20, 3)) * 1e75                     # finite errors, overflowing steps
        h = net.train(X, Y, epochs=50, optimizer=fastbp.Optimizer(method, mu_max=1e30), diagnostics=False)
        assert net.is_finite() and all(np.isfinite(h["loss"]))


@pytest.mark.slow
def test_warm_up_compiles_what_a_method_calls(tmp_path):
    """In a fresh Numba cache, warm_up(optimizer='lm') leaves nothing for an LM run to
    compile (a process of its own, so that nothing is in memory already)."""
    code = ("import numpy as np, fastbp; from fastbp import kernels\n"
            "x = np.linspace(-1, 1, 30)[:, None]; y = np.sin(3 * x)\n"
            "net = fastbp.Network([1, 5, 1], activation='tanh', output='identity', seed=0)\n"
            "net.warm_up(None, optimizer='lm')\n"
            "with kernels.refusing_compiles():\n"
            "    net.train(x, y, epochs=2, optimizer='lm', diagnostics=False); net.jacobian(x)\n"
            "print('ok')\n")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
