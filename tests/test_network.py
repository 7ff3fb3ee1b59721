"""The public contract of fastbp.Network, and clear errors for bad input."""
import numpy as np
import pytest

import fastbp
from fastbp.checks import FAST_FINITE_MIN, check_finite


@pytest.fixture
def net():
    return fastbp.Network([4, 3, 2], seed=0)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.random((10, 4)), rng.random((10, 2))


@pytest.mark.parametrize("kwargs, message", [
    (dict(sizes=[4]), "at least two"),
    (dict(sizes=[4, 0, 2]), "every layer size"),
    (dict(sizes=[4, 2.5, 2]), "every layer size"),
    (dict(sizes="42"), "sizes must be a list"),
    (dict(sizes=[4, 3, 2], activation="swish"), "unknown activation 'swish'"),
    (dict(sizes=[4, 3, 3, 2], activation=["tanh"]), "activation lists 1 names but sizes"),
    (dict(sizes=[4, 3, 2], activation="softmax"), "unknown activation 'softmax'"),
    (dict(sizes=[4, 3, 2], output="swish"), "unknown output 'swish'"),
    (dict(sizes=[4, 3, 2], activation="leaky_relu", activation_parameters={"slope": 0.1}),
     "unknown parameter 'slope'; the activations' parameters are 'negative_slope' \\(leaky_relu\\)"),
    (dict(sizes=[4, 3, 2], activation_parameters={"alpha": 0.5}), "'alpha' is elu's parameter, and no layer uses elu"),
    (dict(sizes=[4, 3, 2], activation="leaky_relu", activation_parameters={"negative_slope": -0.1}),
     "'negative_slope' must be finite and >= 0, got -0.1"),
    (dict(sizes=[4, 3, 2], activation="elu", activation_parameters={"alpha": float("nan")}),
     "'alpha' must be finite and > 0"),
    (dict(sizes=[4, 3, 2], activation="elu", activation_parameters={"alpha": "big"}), "'alpha' must be a number"),
    (dict(sizes=[4, 3, 2], activation="elu", activation_parameters=[("alpha", 1.0)]), "must be a dict"),
    (dict(sizes=[4, 3, 2], loss="hinge"), "unknown loss 'hinge'"),
    (dict(sizes=[4, 3, 2], output="sigmoid", loss="cross_entropy"), "needs a softmax output"),
    (dict(sizes=[4, 3, 2], output="softmax", loss="binary_cross_entropy"), "needs a sigmoid output"),
    (dict(sizes=[4, 3, 2], init="zeros"), "unknown init 'zeros'"),
    (dict(sizes=[4, 3, 2], propagate="both"), "unknown propagate 'both'"),
    (dict(sizes=[4, 3, 2], dtype="float16"), "unknown dtype 'float16'"),
    (dict(sizes=[4, 3, 2], dtype="complex"), "unknown dtype 'complex128'"),
])
def test_bad_construction_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        fastbp.Network(**kwargs)


@pytest.mark.parametrize("blas", ["scipy", "numpy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("order", ["C", "F"])
def test_check_finite_finds_every_nan_and_inf_and_no_more(dtype, order, blas):
    """The fast test (a product with ones) and the element-wise one agree: every NaN, inf
    and -inf is found in its row, also inf and -inf together (their sum is NaN); finite
    values whose row sum overflows are not an error."""
    rng = np.random.default_rng(0)
    for bad in (np.nan, np.inf, -np.inf):
        for row, col in ((0, 0), (37, 5), (99, 63)):
            A = rng.standard_normal((100, 64)).astype(dtype)
            A[row, col] = bad
            with pytest.raises(ValueError, match=r"A contains NaN or inf \(first in row %d\)" % row):
                check_finite("A", np.asarray(A, order=order), blas)
    assert 100 * 64 >= FAST_FINITE_MIN                          # (the fast test runs on these)
    A = np.zeros((100, 64), dtype)
    A[4, 1], A[4, 2] = np.inf, -np.inf
    with pytest.raises(ValueError, match=r"first in row 4"):
        check_finite("A", A, blas)
    huge = np.full((100, 64), np.finfo(dtype).max, dtype)
    with np.errstate(over="ignore"):
        assert np.isinf(huge @ np.ones(64, dtype)).all()
    check_finite("A", np.asarray(huge, order=order), blas)          # overflowing sums: still finite


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_predict_finds_every_nan_and_inf_in_its_row(dtype, backend):
    """predict tests X for NaN and inf in its forward pass (kernels.predict_batch reports
    the first row whose first product is not finite; a pass of its own over X cost more):
    every NaN, inf and -inf is found in its row, the first of two bad rows named; inputs
    whose products overflow are not an error, and are predicted."""
    from fastbp import kernels
    net = fastbp.Network([64, 5, 3], activation="relu", output="softmax", loss="cross_entropy", dtype=dtype,
                         seed=0)
    rng = np.random.default_rng(0)
    for bad in (np.nan, np.inf, -np.inf):
        for row, col in ((0, 0), (37, 5), (98, 63)):
            X = rng.standard_normal((100, 64)).astype(dtype)
            X[row, col], X[row + 1, 0] = bad, bad
            with pytest.raises(ValueError, match=r"X contains NaN or inf \(first in row %d\)" % row):
                net.predict(X, backend=backend)
            if backend == "numba":
                assert kernels.predict_batch(*net._layout(), X)[1] == row
    X = rng.standard_normal((100, 64)).astype(dtype)
    assert kernels.predict_batch(*net._layout(), X)[1] == -1
    huge = np.full((100, 64), np.finfo(dtype).max, dtype)
    net.weights = [np.ones_like(net.weights[0]), net.weights[1]]      # (each product: 64 x the largest)
    if backend == "numba":
        assert kernels.predict_batch(*net._layout(), huge)[1] == 0      # (overflowed: X itself is tested)
    with np.errstate(all="ignore"):
        assert net.predict(huge, backend=backend).shape == (100, 3)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_bad_training_input_is_a_clear_error(net, data, backend):
    X, Y = data
    cases = [
        (dict(X=X[:, :3]), ValueError, r"X has shape \(10, 3\); expected \(n_samples, 4\)"),
        (dict(X=X[0]), ValueError, r"Expected a 2-D array for X, got 1-D \(shape \(4,\)\)\. Reshape"),
        (dict(X=X[:0], Y=Y[:0]), ValueError, r"Found array with 0 sample\(s\) \(shape=\(0, 4\)\).*: X is empty"),
        (dict(X=X + 1j), ValueError, "Complex data not supported: X has dtype complex128"),
        (dict(X=np.where(np.arange(4) == 2, np.nan, X)), ValueError, r"X contains NaN or inf \(first in row 0\)"),
        (dict(Y=np.where(np.arange(10)[:, None] == 5, np.inf, Y)), ValueError,
         r"Y contains NaN or inf \(first in row 5\)"),
        (dict(Y=Y[:9]), ValueError, r"Y has shape \(9, 2\); expected \(10, 2\)"),
        (dict(Y=np.arange(10) % 3), ValueError, r"labels out of range: found 0..2, but the network has 2 outputs"),
        (dict(Y=np.linspace(0, 1, 10)), ValueError, "not integer class labels"),
        (dict(X=np.array([["a"] * 4] * 10)), TypeError, "X must hold numbers"),
        (dict(lr=-0.1), ValueError, "lr must be a finite number > 0"),
        (dict(lr=float("nan")), ValueError, "lr must be a finite number"),
        (dict(l2=-1.0), ValueError, "l2 must be a finite number >= 0"),
        (dict(batch_size=0), ValueError, "batch_size must be an integer >= 1"),
        (dict(epochs=1.5), ValueError, "epochs must be an integer >= 0"),
        (dict(optimizer="adagrad"), ValueError, "unknown optimizer 'adagrad'; choose from 'sgd'"),
        (dict(optimizer="momentum", clip=0.0), ValueError, "clip must be a finite number > 0"),
        (dict(schedule="cosine"), ValueError, "unknown schedule 'cosine'"),
        (dict(schedule=("step", {"step_size": 0})), ValueError, "step_size must be an integer >= 1"),
        (dict(validation_fraction=1.0), ValueError, "validation_fraction must be a finite number > 0 and < 1"),
        (dict(validation_fraction=0.01), ValueError, "leaves 0 for validation"),
        (dict(validation=(X[:, :3], Y)), ValueError, r"X_val has shape \(10, 3\)"),
        (dict(validation=(X, Y), validation_fraction=0.2), ValueError, "not both"),
        (dict(n_iter_no_change=0), ValueError, "n_iter_no_change must be an integer >= 1"),
    ]
    for change, error, message in cases:
        args = dict(X=X, Y=Y)
        args.update(change)
        X_, Y_ = args.pop("X"), args.pop("Y")
        before = [w.copy() for w in net.weights]
        with pytest.raises(error, match=message):
            net.train(X_, Y_, backend=backend, **args)
        for w, w0 in zip(net.weights, before):       # nothing lost
            np.testing.assert_array_equal(w, w0)
    with pytest.raises(ValueError, match="unknown backend 'torch'"):
        net.train(X, Y, backend="torch")


def test_loss_specific_target_checks():
    X = np.zeros((3, 2))
    ce = fastbp.Network([2, 3], output="softmax", loss="cross_entropy")
    with pytest.raises(ValueError, match="row 1 sums to 0.5"):
        ce.train(X, [[1, 0, 0], [0.5, 0, 0], [0, 0, 1]])
    bce = fastbp.Network([2, 3], output="sigmoid", loss="binary_cross_entropy")
    with pytest.raises(ValueError, match=r"needs targets in \[0, 1\]"):
        bce.train(X, np.full((3, 3), 2.0))


def test_integer_labels_are_one_hot(data):
    X, _ = data
    labels = np.arange(10) % 3
    a = fastbp.Network([4, 5, 3], output="softmax", loss="cross_entropy", seed=1)
    b = fastbp.Network([4, 5, 3], output="softmax", loss="cross_entropy", seed=1)
    a.train(X, labels, epochs=2)
    b.train(X, np.eye(3)[labels], epochs=2)
    np.testing.assert_array_equal(a.weights[0], b.weights[0])


def test_weights_and_biases_are_writable_views(net, data):
    X, _ = data
    net.weights[0][:] = 0.0                     # in place
    net.weights[1] = np.ones((2, 3))            # item assignment copies into the buffer
    net.biases[1][...] = [0.5, -0.5]
    expected = 1 / (1 + np.exp(-(np.full((10, 2), 3 * 0.5) + [0.5, -0.5])))
    np.testing.assert_allclose(net.predict(X), expected)
    with pytest.raises(ValueError, match=r"layer 1 expects shape \(2, 3\), got \(3, 2\)"):
        net.weights[1] = np.ones((3, 2))
    with pytest.raises(ValueError, match="NaN or inf"):
        net.weights[0] = np.full((3, 4), np.nan)
    with pytest.raises(ValueError, match="weights needs 2 layers, got 1"):
        net.weights = [np.ones((3, 4))]
    no_bias = fastbp.Network([4, 3, 2], bias=False)
    assert no_bias.biases is None
    with pytest.raises(ValueError, match="bias=False"):
        no_bias.biases = [np.zeros(3), np.zeros(2)]


def test_predict_one_sample_and_shapes(net, data):
    X, _ = data
    assert net.predict(X).shape == (10, 2)
    assert net.predict(X[3]).shape == (2,)
    np.testing.assert_allclose(net.predict(X[3]), net.predict(X)[3])
    assert net.predict(X.astype(np.float32)).dtype == np.float64
    assert fastbp.Network([4, 2], dtype="float32").predict(X).dtype == np.float32


def test_history_and_loss(net, data):
    X, Y = data
    first = net.loss(X, Y)
    history = net.train(X, Y, epochs=5, lr=0.5)
    assert len(history["loss"]) == len(history["seconds"]) == 5
    assert history["loss"][-1] < history["loss"][0]
    assert net.loss(X, Y) < first
    empty = net.train(X, Y, epochs=0)
    assert empty["loss"] == empty["seconds"] == [] and empty["stopped"] == "epochs"


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_diverging_run_keeps_last_good_weights(backend):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(50, 3)) * 100, rng.normal(size=(50, 1)) * 100
    net = fastbp.Network([3, 8, 1], activation="identity", output="identity", seed=0)
    history = net.train(X, Y, epochs=2, lr=1e-9, backend=backend)
    good = [w.copy() for w in net.weights]
    with pytest.raises(fastbp.TrainingDiverged, match=r"diverged in epoch 1 \(mean loss nan\); "
                       r"the network keeps the weights from before it") as caught:
        net.train(X, Y, epochs=5, lr=10.0, backend=backend)
    for w, w0 in zip(net.weights, good):
        np.testing.assert_array_equal(w, w0)
    assert caught.value.history["loss"] == []
    assert np.isfinite(history["loss"]).all()


def test_warm_up_leaves_the_network_alone(data):
    X, Y = data
    for batch_size in (1, 4):
        net = fastbp.Network([4, 3, 2], output="softmax", loss="cross_entropy", seed=5)
        twin = fastbp.Network([4, 3, 2], output="softmax", loss="cross_entropy", seed=5)
        net.warm_up(batch_size)
        for a, b in zip(net.weights + net.biases, twin.weights + twin.biases):
            np.testing.assert_array_equal(a, b)
        labels = np.arange(10) % 2
        net.train(X, labels, epochs=2, batch_size=batch_size)   # same random state: same run
        twin.train(X, labels, epochs=2, batch_size=batch_size)
        np.testing.assert_array_equal(net.weights[0], twin.weights[0])


def test_warm_up_takes_only_the_settings_that_choose_kernels():
    net = fastbp.Network([4, 3, 2], seed=5)
    with pytest.raises(TypeError, match="warm_up.. got an unexpected keyword argument 'dropuot'; did you mean "
                                        "'dropout'"):
        net.warm_up(4, dropuot=0.2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'lr'"):
        net.warm_up(4, lr=0.1)                          # (a value the kernels read: no kernel of its own)


def test_initialisers():
    for init in fastbp.INITIALISERS:
        net = fastbp.Network([300, 200, 10], init=init, seed=0)
        w = net.weights[0]
        assert w.shape == (200, 300) and np.isfinite(w).all() and w.std() > 0
    assert abs(fastbp.Network([300, 200], init="he", seed=0).weights[0].std() - (2 / 300) ** 0.5) < 0.01
    glorot = fastbp.Network([300, 200], init="glorot", seed=0).weights[0]
    assert np.abs(glorot).max() <= (6 / 500) ** 0.5
    seed001 = fastbp.Network([3, 3, 2, 1], init="standard_normal", seed=0)
    assert all(b.std() > 0 for b in seed001.biases[:2])
    assert all((b == 0).all() for b in fastbp.Network([3, 3, 2, 1], seed=0).biases)


def test_nguyen_widrow():
    """Each hidden unit's incoming weights have the norm 0.7 H^(1/n) (H units, n inputs),
    its biases lie evenly spaced over [-beta, beta] (signed as the unit's first weight);
    the output layer is U(-1, 1)."""
    net = fastbp.Network([4, 9, 5, 2], activation="tanh", output="identity", init="nguyen_widrow", seed=3)
    for l, (n_in, H) in enumerate([(4, 9), (9, 5)]):
        beta = 0.7 * H ** (1 / n_in)
        W, b = net.weights[l], net.biases[l]
        np.testing.assert_allclose(np.linalg.norm(W, axis=1), beta, rtol=1e-12)
        np.testing.assert_allclose(np.sort(np.abs(b)), np.sort(np.abs(beta * np.linspace(-1, 1, H))), rtol=1e-12)
        np.testing.assert_array_equal(np.sign(b) * np.sign(W[:, 0]), np.sign(np.linspace(-1, 1, H)))
    W, b = net.weights[2], net.biases[2]
    assert np.abs(W).max() <= 1 and np.abs(b).max() <= 1 and W.std() > 0.2 and (b != 0).all()
    unbiased = fastbp.Network([4, 9, 2], init="nguyen_widrow", bias=False, seed=3)
    assert unbiased.biases is None and not unbiased._b.any()


def test_a_misspelt_setting_is_named_as_the_user_called_it(net, data):
    from fastbp.distributed import train as train_on_dask
    from fastbp.optimizers import make_schedule
    X, T = data
    with pytest.raises(TypeError, match=r"^train\(\) got an unexpected keyword argument 'epoch'; "
                                        r"did you mean 'epochs'\?$"):
        net.train(X, T, epoch=5)
    with pytest.raises(TypeError, match=r"did you mean 'sample_weight'\?"):
        net.train(X, T, sample_weights=np.ones(10))
    with pytest.raises(TypeError, match=r"^train\(\) got an unexpected keyword argument 'zzz'; it takes epochs, lr"):
        net.train(X, T, zzz=1)
    with pytest.raises(TypeError, match=r"^Optimizer\(\) got an unexpected keyword argument 'momentun'; "
                                        r"did you mean 'momentum'\?"):
        fastbp.Optimizer("momentum", momentun=0.5)
    with pytest.raises(TypeError, match=r"^the schedule 'step' got an unexpected setting 'gama'; did you mean 'gamma'"):
        make_schedule(("step", {"gama": 0.5}))
    with pytest.raises(TypeError, match=r"^fastbp.distributed.train\(\) got an unexpected keyword argument "
                                        r"'batchsize'; did you mean 'batch_size'\?"):
        train_on_dask(net, X, T, batchsize=2)              # (before any cluster is started)


def test_an_activations_parameter_is_used_checked_and_saved(tmp_path, data):
    """A leaky slope of 0.2 in the reference and the kernels alike, in training too, and
    in the saved file; the default (0.01) gives other outputs."""
    X, T = data
    X = X - 0.5
    made = [fastbp.Network([4, 6, 5, 2], activation=["leaky_relu", "elu"], seed=3, activation_parameters=p)
            for p in ({"negative_slope": 0.2, "alpha": 0.5}, None)]
    net, default = made
    assert net.activation_parameters == {"negative_slope": 0.2, "alpha": 0.5}
    assert default.activation_parameters == {"negative_slope": 0.01, "alpha": 1.0}
    W, b = net.weights, net.biases
    z1 = X @ W[0].T + b[0]
    a1 = np.where(z1 > 0, z1, 0.2 * z1)
    z2 = a1 @ W[1].T + b[1]
    a2 = np.where(z2 > 0, z2, 0.5 * np.expm1(z2))
    want = 1 / (1 + np.exp(-(a2 @ W[2].T + b[2])))
    for backend in ("numpy", "numba"):
        np.testing.assert_allclose(net.predict(X, backend=backend), want, rtol=1e-12)
    assert np.abs(default.predict(X) - want).max() > 1e-4
    trained = []
    for backend in ("numpy", "numba"):
        twin = fastbp.Network([4, 6, 5, 2], activation=["leaky_relu", "elu"], seed=3,
                              activation_parameters={"negative_slope": 0.2, "alpha": 0.5})
        twin.train(X, T, epochs=3, lr=0.5, batch_size=1, backend=backend)
        trained.append(twin)
    for a, c in zip(trained[0].weights, trained[1].weights):
        np.testing.assert_allclose(c, a, rtol=1e-10, atol=1e-12)
    loaded = fastbp.load(net.save(tmp_path / "net.npz"))
    assert loaded.activation_parameters == net.activation_parameters
    np.testing.assert_array_equal(loaded.predict(X), net.predict(X))
    assert "activation_parameters={'negative_slope': 0.2, 'alpha': 0.5}" in repr(net)
