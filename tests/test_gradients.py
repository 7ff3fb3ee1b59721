"""A finite-difference check holds the reference (and the kernels) to the mathematics."""
import numpy as np
from conftest import HIDDEN_ACTIVATIONS, OUTPUT_LOSS, make_problem
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from fastbp import reference


def numerical_gradient(net, X, T, params, h=1e-6):
    """Central differences of net.loss, and the size of their rounding error: each loss is
    rounded to about eps |E|, which the difference divides by 2h (with an exp output the
    loss can be 1e6, and that error 1e-4)."""
    grads = []
    largest = 0.0
    for P in params:
        G = np.zeros_like(P)
        for index in np.ndindex(P.shape):
            saved = P[index]
            P[index] = saved + h
            up = net.loss(X, T, backend="numpy")
            P[index] = saved - h
            down = net.loss(X, T, backend="numpy")
            P[index] = saved
            G[index] = (up - down) / (2 * h)
            largest = max(largest, abs(up), abs(down))
        grads.append(G)
    return grads, np.finfo(float).eps * largest / h


@st.composite
def networks(draw):
    hidden = draw(st.lists(st.integers(1, 5), min_size=0, max_size=3))
    sizes = [draw(st.integers(1, 4))] + hidden + [draw(st.integers(1, 4))]
    activation = [draw(st.sampled_from(HIDDEN_ACTIVATIONS)) for _ in hidden]
    output, loss = draw(st.sampled_from(OUTPUT_LOSS))
    return dict(sizes=sizes, activation=activation, output=output, loss=loss,
                bias=draw(st.booleans()), m=draw(st.integers(1, 5)),
                seed=draw(st.integers(0, 2 ** 32 - 1)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(networks())
# a loss of 1.9e6 (an exp output): the differences' rounding is 4e-4 there (it failed CI once)
@example(dict(sizes=[2, 3], activation=[], output="exp", loss="mse", bias=False, m=1, seed=3))
def test_gradients_match_finite_differences(case):
    net, X, T = make_problem(**case)
    weights, biases = net._params()
    A = reference.forward(weights, biases, net.activations, X)
    # relu's kink: a finite difference across it measures nothing
    for l, name in enumerate(net.activations[:-1] + [net.output]):
        if name == "relu":
            Z = A[l] @ weights[l].T + (biases[l] if biases else 0)
            assume(np.abs(Z).min() > 1e-4)
    params = net.weights + (net.biases if net.bias else [])
    expected, rounding = numerical_gradient(net, X, T, params)
    for backend in ("numpy", "numba"):
        dW, db = net.gradients(X, T, backend=backend)
        assert (db is None) == (not net.bias)
        for got, want in zip(dW + (db or []), expected):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7 + 4 * rounding,
                                       err_msg="%s backend, %r" % (backend, case))
