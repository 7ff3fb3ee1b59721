"""A finite-difference check holds the reference (and the kernels) to the mathematics."""
import numpy as np
from conftest import HIDDEN_ACTIVATIONS, OUTPUT_LOSS, make_problem
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from fastbp import functions, kernels, reference
from fastbp.functions import ACTIVATIONS


def numerical_gradient(net, X, T, params, h=1e-6):
    """Central differences of net.loss, and the size of their rounding error: each loss is
    rounded to about eps |E|, which the difference divides by 2h (with an exp output the
    loss can be 1e6, and that error 1e-4). Log-loss adds eps / (1 - o) for log(1 - o): an
    output at 1 - 4e-7 makes that 3e-10, and the difference's error 1e-4."""
    grads = []
    O = net.predict(X, backend="numpy")
    largest = float(np.max(1.0 / (1.0 - O))) if net.loss_name == "binary_cross_entropy" else 0.0
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
# an output at 1 - 4e-7 under log-loss (see numerical_gradient)
@example(dict(sizes=[2, 3, 2], activation=["relu"], output="sigmoid", loss="binary_cross_entropy", bias=False,
              m=1, seed=3))
def test_gradients_match_finite_differences(case):
    net, X, T = make_problem(**case)
    weights, biases = net._params()
    A = reference.forward(weights, biases, net.activations, X)
    # a kink (functions.ACTIVATIONS[...].kinks): a finite difference across it measures nothing
    for l, name in enumerate(net.activations[:-1] + [net.output]):
        for kink in ACTIVATIONS[name].kinks:
            Z = A[l] @ weights[l].T + (biases[l] if biases else 0)
            assume(np.abs(Z - kink).min() > 1e-4)
    params = net.weights + (net.biases if net.bias else [])
    expected, rounding = numerical_gradient(net, X, T, params)
    for backend in ("numpy", "numba"):
        dW, db = net.gradients(X, T, backend=backend)
        assert (db is None) == (not net.bias)
        for got, want in zip(dW + (db or []), expected):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7 + 4 * rounding,
                                       err_msg="%s backend, %r" % (backend, case))


# Written down from PyTorch 2.13 (torch.nn.functional, float64; the derivatives by autograd)
# at these points, kinks included: (name, parameter) -> (g(z), g'(z)).
POINTS = [-25.0, -5.0, -3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0, 5.0, 25.0]
PYTORCH = {
    ("leaky_relu", None): ([-0.25, -0.05, -0.03, -0.01, -0.005, 0.0, 0.5, 1.0, 3.0, 5.0, 25.0],
                           [0.01] * 6 + [1.0] * 5),
    ("leaky_relu", 0.2): ([-5.0, -1.0, -0.6000000000000001, -0.2, -0.1, 0.0, 0.5, 1.0, 3.0, 5.0, 25.0],
                          [0.2] * 6 + [1.0] * 5),
    ("elu", None): ([-0.9999999999861121, -0.9932620530009145, -0.950212931632136, -0.6321205588285577,
                     -0.3934693402873666, 0.0, 0.5, 1.0, 3.0, 5.0, 25.0],
                    [1.3887943864964021e-11, 0.006737946999085467, 0.049787068367863944, 0.36787944117144233,
                     0.6065306597126334, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]),
    ("elu", 0.5): ([-0.49999999999305605, -0.49663102650045726, -0.475106465816068, -0.31606027941427883,
                    -0.1967346701436833, 0.0, 0.5, 1.0, 3.0, 5.0, 25.0],
                   [6.9439719324820104e-12, 0.0033689734995427335, 0.024893534183931972, 0.18393972058572117,
                    0.3032653298563167, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0]),
    ("softplus", None): ([1.3887943864867583e-11, 0.006715348489118068, 0.04858735157374206, 0.31326168751822286,
                          0.4740769841801067, 0.6931471805599453, 0.9740769841801067, 1.3132616875182228,
                          3.048587351573742, 5.006715348489118, 25.0],
                         [1.3887943864771146e-11, 0.006692850924284856, 0.04742587317756679, 0.2689414213699951,
                          0.37754066879814546, 0.5, 0.6224593312018546, 0.7310585786300049, 0.9525741268224333,
                          0.9933071490757152, 1.0]),
    ("gelu", None): ([-0.0, -2.2917961972623857e-07, -0.0036373920817729943, -0.1588080093917233,
                      -0.15428599017485606, 0.0, 0.34571400982514394, 0.8411919906082768, 2.996362607918227,
                      4.999999770820381, 25.0],
                     [0.0, -1.5463619879596227e-06, -0.011584166630969648, -0.08296408384578258,
                      0.13263009646535764, 0.5, 0.8673699035346424, 1.0829640838457826, 1.0115841666309695,
                      1.000001546361988, 1.0]),
    # (PyTorch's float64 backward multiplies by 1/6 rounded to float32: 3e-8 off)
    ("hard_sigmoid", None): ([0.0, 0.0, 0.0, 0.3333333333333333, 0.4166666666666667, 0.5, 0.5833333333333334,
                              0.6666666666666666, 1.0, 1.0, 1.0],
                             [0.0, 0.0, 0.0] + [0.1666666716337204] * 5 + [0.0, 0.0, 0.0]),
    ("silu", None): ([-3.4719859661927863e-10, -0.03346425462142428, -0.14227761953270035, -0.2689414213699951,
                      -0.1887703343990727, 0.0, 0.3112296656009273, 0.7310585786300049, 2.8577223804672998,
                      4.966535745378576, 24.9999999996528],
                     [-3.3331065274968563e-10, -0.026547432429665917, -0.08810410601516962, 0.07232948812851325,
                      0.2600388126973482, 0.5, 0.7399611873026519, 0.9276705118714869, 1.0881041060151693,
                      1.0265474324296655, 1.000000000333312]),
    ("relu", None): ([0.0] * 6 + [0.5, 1.0, 3.0, 5.0, 25.0], [0.0] * 6 + [1.0] * 5),
    ("sigmoid", None): ([1.3887943864771144e-11, 0.0066928509242848554, 0.04742587317756678, 0.2689414213699951,
                         0.3775406687981454, 0.5, 0.6224593312018546, 0.7310585786300049, 0.9525741268224334,
                         0.9933071490757153, 0.999999999986112],
                        [1.388794386457827e-11, 0.006648056670790155, 0.04517665973091214, 0.19661193324148185,
                         0.2350037122015945, 0.25, 0.2350037122015945, 0.19661193324148185, 0.045176659730912,
                         0.006648056670790033, 1.3888001859448131e-11]),
    ("tanh", None): ([-1.0, -0.9999092042625951, -0.9950547536867305, -0.7615941559557649, -0.46211715726000974,
                      0.0, 0.46211715726000974, 0.7615941559557649, 0.9950547536867305, 0.9999092042625951, 1.0],
                     [0.0, 0.00018158323094385266, 0.009866037165440166, 0.41997434161402614, 0.7864477329659274,
                      1.0, 0.7864477329659274, 0.41997434161402614, 0.009866037165440166, 0.00018158323094385266,
                      0.0]),
}


def test_every_hidden_activation_is_checked_against_pytorch():
    assert {name for name, _ in PYTORCH} >= set(functions.HIDDEN_ACTIVATIONS) - {"identity"}


def test_activations_match_pytorchs():
    """The reference's and the kernels' g and g' equal PyTorch's, at the kinks too.
    (softplus: PyTorch returns z itself above z = 20, 1.4e-11 off at 25; GELU's tanh
    form and SiLU in sums of roundings: 1e-12.)"""
    z = np.array(POINTS)
    for (name, parameter), (values, slopes) in PYTORCH.items():
        code = functions.ACTIVATION_CODES[name]
        a = functions.activate(name, z, parameter)
        rtol = {"hard_sigmoid": 4e-8, "softplus": 2e-11}.get(name, 1e-12)
        np.testing.assert_allclose(a, values, rtol=2e-11 if name == "softplus" else 1e-12, atol=1e-15, err_msg=name)
        np.testing.assert_allclose(functions.derivative(name, z, a, parameter), slopes, rtol=rtol, atol=1e-15,
                                   err_msg=name)
        p = functions.parameter_of(name, {} if parameter is None else {ACTIVATIONS[name].parameter.name: parameter})
        compiled = [kernels._activate(code, p or 0.0, x) for x in z]
        np.testing.assert_allclose(compiled, a, rtol=1e-13, atol=1e-15, err_msg=name + " (kernels)")
        np.testing.assert_allclose([kernels._derivative(code, p or 0.0, x, y) for x, y in zip(z, compiled)],
                                   slopes, rtol=rtol, atol=1e-15, err_msg=name + " (kernels)")
