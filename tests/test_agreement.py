"""The kernels agree with the NumPy reference: same seed, same sample order, same weights."""
import numba
import numpy as np
import pytest
from conftest import make_problem

import fastbp
from fastbp.cases import DTYPES, MODES, NETWORKS, REGULARISERS, TOLERANCE, case_id
from fastbp.functions import exponential, hyperbolic_tangent


def trained_pair(spec, batch_size, dtype, bias, propagate, regularise, weighted=False, epochs=3, m=43,
                 shuffle=True):
    sizes, activation, output, loss = spec
    results = []
    # weights 0, 0.5, 1, 1.5: some samples take no step, some count more than others
    sample_weight = np.arange(m) % 4 * 0.5 if weighted else None
    for backend in ("numpy", "numba"):
        net, X, T = make_problem(sizes, activation, output, loss, m, seed=7, dtype=dtype,
                                 bias=bias, propagate=propagate)
        # wide layers amplify rounding differences chaotically at large steps
        lr = 0.2 if max(sizes) < 100 else 0.02
        history = net.train(X, T, epochs=epochs, lr=lr, batch_size=batch_size, shuffle=shuffle,
                            backend=backend, sample_weight=sample_weight, **regularise)
        results.append((net, history))
    return results


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("spec", NETWORKS, ids=case_id)
def test_training_agrees(spec, mode, dtype):
    # (in order, the batched kernel reads each batch's rows where they are, ungathered; with
    # the error rule, ELU's deep net diverged in order at this lr, in both backends)
    # (the regularisers of fastbp.cases: penalties, max-norm, dropout, input noise; "all"
    # trains per-sample SGD in the mini-batch kernel, so "l2" keeps the per-sample one's)
    for bias, propagate, regularise, weighted, shuffle in [(True, "delta", "none", False, False),
                                                           (False, "error", "l2", False, True),
                                                           (True, "delta", "l2", True, True),
                                                           (True, "delta", "all", True, True)]:
        (ref, h_ref), (fast, h_fast) = trained_pair(spec, MODES[mode], dtype, bias, propagate,
                                                    REGULARISERS[regularise], weighted, shuffle=shuffle)
        tol = TOLERANCE[dtype]
        for a, b in zip(ref.weights, fast.weights):
            assert a.dtype == b.dtype == np.dtype(dtype)
            np.testing.assert_allclose(b, a, rtol=tol, atol=tol)
        if bias:
            for a, b in zip(ref.biases, fast.biases):
                np.testing.assert_allclose(b, a, rtol=tol, atol=tol)
        np.testing.assert_allclose(h_fast["loss"], h_ref["loss"], rtol=tol, atol=tol)
        # and training moved the weights: agreement is not two unchanged copies
        start, _, _ = make_problem(spec[0], *spec[1:], 43, seed=7, dtype=dtype, bias=bias)
        assert max(np.abs(w - w0).max() for w, w0 in zip(fast.weights, start.weights)) > 1e-3


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_forward_and_loss_agree(dtype):
    net, X, T = make_problem([12, 200, 200, 3], ["relu", "tanh"], "softmax", "cross_entropy",
                             50, seed=1, dtype=dtype)
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(net.predict(X), net.predict(X, backend="numpy"), rtol=tol, atol=tol)
    assert net.loss(X, T) == pytest.approx(net.loss(X, T, backend="numpy"), rel=tol)


def test_progress_slices_do_not_change_training():
    """The CLI's progress bar trains an epoch in slices; the result is the same."""
    nets = []
    seen = []
    for progress in (None, lambda n, loss: seen.append((n, loss))):
        net, X, T = make_problem([30, 20, 3], "sigmoid", "sigmoid", "mse", 500, seed=3)
        net.train(X, T, epochs=2, lr=0.1, batch_size=3, progress=progress)
        nets.append(net)
    assert sum(n for n, _ in seen) == 1000 and len(seen) > 10
    for a, b in zip(nets[0].weights, nets[1].weights):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_same_seed_same_run_and_different_seed_differs():
    def run(seed, backend="numba"):
        rng = np.random.default_rng(0)
        X, T = rng.random((60, 5)), rng.random((60, 2))
        net = fastbp.Network([5, 4, 2], seed=seed)
        h = net.train(X, T, epochs=2, lr=0.5, backend=backend)
        return np.concatenate([w.ravel() for w in net.weights]), h["loss"]

    w1, l1 = run(11)
    w2, l2 = run(11)
    w3, _ = run(12)
    np.testing.assert_array_equal(w1, w2)
    assert l1 == l2
    assert not np.allclose(w1, w3)
    # a Generator works as a seed too, and gives the int seed's run
    w4, _ = run(np.random.default_rng(11))
    np.testing.assert_array_equal(w1, w4)



def _compiled_loop(f):
    """A compiled loop that calls f, as the kernels call it, on each number of x."""
    @numba.njit
    def loop(x, out):
        for i in range(x.size):
            out[i] = f(x[i])
    return loop


_exponentials, _hyperbolic_tangents = _compiled_loop(exponential), _compiled_loop(hyperbolic_tangent)


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-15), ("float32", 2e-7)])
def test_the_kernels_exponential_is_nps(dtype, rtol):
    """kernels.py's own exponential, which the kernels compile in for functions.exponential
    (the sigmoid's, SiLU's, the exp output's and softmax's), against np.exp over the
    dtype's whole range, and at its ends: 0 below, inf above, NaN through."""
    from fastbp import kernels
    info = np.finfo(dtype)
    top = float(np.log(info.max))
    x = np.concatenate([np.linspace(-top * 1.2, top * 1.02, 400_001),
                        [np.nan, np.inf, -np.inf, 0.0, -0.0]]).astype(dtype)
    got = np.empty_like(x)
    _exponentials(x, got)
    with np.errstate(over="ignore"):
        exact = np.exp(x.astype(np.float64))
    normal = (exact < info.max) & (exact >= info.tiny)
    np.testing.assert_allclose(got[normal], exact[normal], rtol=rtol, atol=0)
    below = exact < info.tiny                          # subnormal or 0: within the smallest step
    assert np.all(np.abs(got[below] - exact[below]) <= info.smallest_subnormal)
    assert np.all(np.isinf(got[exact > float(info.max) * 1.0001]))
    assert np.isnan(got[-5]) and got[-4] == np.inf and got[-3] == 0.0 and got[-2] == got[-1] == 1.0
    # and in a compiled loop of sigmoids (the vectorised one), against the reference's
    a = x[:-5].copy()
    kernels._activate_inplace(kernels.SIGMOID, 0.0, a)
    with np.errstate(over="ignore"):
        sigmoid = fastbp.functions.sigmoid(x[:-5].astype(np.float64))
    np.testing.assert_allclose(a[sigmoid >= info.tiny], sigmoid[sigmoid >= info.tiny], rtol=2 * rtol, atol=0)
    assert np.all(a[sigmoid < info.tiny] <= info.tiny)


@pytest.mark.parametrize("dtype, rtol", [("float64", 2e-15), ("float32", 4e-7)])
def test_the_kernels_hyperbolic_tangent_is_nps(dtype, rtol):
    """kernels.py's own tanh, which the kernels compile in for functions.hyperbolic_tangent
    (tanh's and GELU's), against np.tanh: relative error, near 0 (its series) and across
    the switch to the exponential's form; -0, the infinities and NaN; and in a compiled
    loop of tanh (the vectorised one) against the reference's."""
    from fastbp import kernels
    tiny = np.geomspace(np.finfo(dtype).tiny, 1.0, 20_001)
    x = np.concatenate([np.linspace(-30.0, 30.0, 400_001), tiny, -tiny,
                        [np.nan, np.inf, -np.inf, 0.0, -0.0]]).astype(dtype)
    got = np.empty_like(x)
    _hyperbolic_tangents(x, got)
    exact = np.tanh(x[:-5].astype(np.float64))
    np.testing.assert_allclose(got[:-5], exact, rtol=rtol, atol=0)
    assert np.isnan(got[-5]) and got[-4] == 1.0 and got[-3] == -1.0
    assert got[-2] == 0.0 and not np.signbit(got[-2]) and np.signbit(got[-1])
    a = x[:-5].copy()
    kernels._activate_inplace(fastbp.functions.ACTIVATION_CODES["tanh"], 0.0, a)
    np.testing.assert_allclose(a, exact, rtol=rtol, atol=0)
