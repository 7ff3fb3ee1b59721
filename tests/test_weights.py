"""Sample weights (Network.train's sample_weight, the estimators' sample_weight and
class_weight): the kernels agree with the reference, weights act as repeated or removed
rows where that is exact, the weighted gradient is the weighted loss's, and bad weights
are clear errors."""
import warnings

import numpy as np
import pytest
from conftest import make_problem
from sklearn.datasets import load_iris
from sklearn.neural_network import MLPClassifier as SkClassifier
from sklearn.utils.class_weight import compute_sample_weight

import fastbp
from fastbp.cases import MODES, OPTIMIZER_NETWORKS, RULE_MODES, RULE_NAMES, TOLERANCE
from fastbp.functions import mean_loss
from fastbp.optimizers import RULES

SPEC = OPTIMIZER_NETWORKS[1]                      # 6-7-4-3 tanh/relu, softmax, cross-entropy


def problem(m=31, seed=3):
    net, X, T = make_problem(*SPEC, m, seed=seed)
    weights = np.random.default_rng(seed).integers(0, 4, m).astype(float)   # 0..3, zeros included
    return net, X, T, weights


def max_difference(a, b):
    return max(np.abs(x - y).max() for x, y in zip(a.weights + a.biases, b.weights + b.biases))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("rule, mode", RULE_MODES)
def test_weighted_training_agrees_with_the_reference(rule, mode, dtype):
    runs = []
    for backend in ("numpy", "numba"):
        net, X, T, s = problem()
        net = fastbp.Network(SPEC[0], activation=SPEC[1], output=SPEC[2], loss=SPEC[3], seed=3, dtype=dtype)
        history = net.train(X, T, sample_weight=s, epochs=3, batch_size=MODES[mode], optimizer=rule,
                            lr=0.05, l2=0.01, backend=backend)
        runs.append((net, history))
    (ref, h_ref), (fast, h_fast) = runs
    assert max_difference(ref, fast) < TOLERANCE[dtype]
    np.testing.assert_allclose(h_fast["loss"], h_ref["loss"], rtol=TOLERANCE[dtype])
    start = fastbp.Network(SPEC[0], activation=SPEC[1], output=SPEC[2], loss=SPEC[3], seed=3, dtype=dtype)
    assert max_difference(fast, start) > 1e-3                 # training moved the weights


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("rule", [rule for rule in RULE_NAMES if RULES[rule].loss in (None, SPEC[3])])
def test_full_batch_integer_weights_equal_repeated_rows_and_zeros_removed_rows(rule, backend):
    net, X, T, s = problem()
    repeated = np.repeat(np.arange(len(s)), s.astype(int))           # weight 0: the row is gone
    settings = dict(epochs=4, batch_size=None, optimizer=rule, lr=0.05, l2=0.01, backend=backend)
    weighted, plain = net, make_problem(*SPEC, len(s), seed=3)[0]
    h_weighted = weighted.train(X, T, sample_weight=s, **settings)
    h_plain = plain.train(X[repeated], T[repeated], **settings)
    # equal up to the order of the sums: SCG's step divides by curvature estimates, which
    # lifts that rounding to 2.3e-12 on an AMD EPYC (Zen 3, OpenBLAS's Haswell kernels)
    assert max_difference(weighted, plain) < TOLERANCE["float64"]
    np.testing.assert_allclose(h_weighted["loss"], h_plain["loss"], rtol=1e-12)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_per_sample_zero_weights_equal_removed_rows(rule, backend):
    net, X, T, s = problem()
    s = (s > 0).astype(float)
    kept = np.flatnonzero(s)
    plain = make_problem(*SPEC, len(s), seed=3)[0]
    settings = dict(epochs=3, batch_size=1, shuffle=False, optimizer=rule, lr=0.05, l2=0.01, backend=backend)
    h_weighted = net.train(X, T, sample_weight=s, **settings)
    h_plain = plain.train(X[kept], T[kept], **settings)
    assert max_difference(net, plain) < 1e-12
    np.testing.assert_allclose(h_weighted["loss"], h_plain["loss"], rtol=1e-12)


def test_a_per_sample_weight_scales_its_step():
    """batch_size=1: a step of weight w moves the parameters w times as far as weight 1 (one
    step, plain SGD without L2: the step is lr * w * gradient)."""
    net, X, T, _ = problem(m=1)
    moves = []
    for w in (1.0, 2.5):
        twin = make_problem(*SPEC, 1, seed=3)[0]
        twin.train(X, T, sample_weight=[w], batch_size=1, lr=0.1)
        moves.append(twin.weights[0] - net.weights[0])
    np.testing.assert_allclose(moves[1], 2.5 * moves[0], rtol=1e-12, atol=1e-15)


def test_losses_are_weighted_means():
    net, X, T, s = problem()
    first = mean_loss(net.loss_name, net.predict(X), T, s)       # before any step
    assert net.loss(X, T, sample_weight=s) == pytest.approx(first, rel=1e-12)
    history = net.train(X, T, sample_weight=s, batch_size=None, epochs=1, lr=0.05)
    assert history["loss"][0] == pytest.approx(first, rel=1e-12)
    assert first != pytest.approx(mean_loss(net.loss_name, net.predict(X), T), rel=1e-3)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_weighted_gradient_matches_finite_differences(backend):
    net, X, T, s = problem(m=9)
    dW, db = net.gradients(X, T, backend=backend, sample_weight=s)
    h = 1e-6
    for params, grads in ((net.weights, dW), (net.biases, db)):
        for P, G in zip(params, grads):
            for index in list(np.ndindex(P.shape))[:12]:
                saved = P[index]
                P[index] = saved + h
                up = net.loss(X, T, backend="numpy", sample_weight=s)
                P[index] = saved - h
                down = net.loss(X, T, backend="numpy", sample_weight=s)
                P[index] = saved
                assert G[index] == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-8)


def test_validation_sets_keep_their_weights():
    net, X, T, s = problem(m=60)
    s = s + 0.5
    twin = make_problem(*SPEC, 60, seed=3)[0]
    held = net.train(X[:40], T[:40], sample_weight=s[:40], validation=(X[40:], T[40:], s[40:]), epochs=2, lr=0.05)
    unweighted = twin.train(X[:40], T[:40], sample_weight=s[:40], validation=(X[40:], T[40:]), epochs=2, lr=0.05)
    assert max_difference(net, twin) == 0
    assert held["val_loss"][-1] == pytest.approx(net.loss(X[40:], T[40:], sample_weight=s[40:]), rel=1e-12)
    assert held["val_loss"][-1] != pytest.approx(unweighted["val_loss"][-1], rel=1e-6)
    fraction = make_problem(*SPEC, 60, seed=3)[0].train(X, T, sample_weight=s, validation_fraction=0.25, epochs=1)
    assert len(fraction["val_loss"]) == 1 and 40 < fraction["train_samples"] < 50


@pytest.mark.parametrize("bad, message", [
    (np.ones(30), "shape"), (-np.ones(31), "negative"), (np.zeros(31), "all the sample weights are zero"),
    (np.full(31, np.nan), "NaN"), (np.array(["a"] * 31), "numbers")])
def test_bad_weights_are_clear_errors_that_change_nothing(bad, message):
    net, X, T, _ = problem()
    before = net.snapshot()
    state = net.rng.bit_generator.state
    with pytest.raises((ValueError, TypeError), match=message):
        net.train(X, T, sample_weight=bad, epochs=1)
    assert all(np.array_equal(a, b) for a, b in zip(before, net.snapshot()))
    assert net.rng.bit_generator.state == state


def test_a_weighted_checkpoint_resumes_only_with_the_same_weights(tmp_path):
    net, X, T, s = problem()
    path = tmp_path / "run.npz"
    uninterrupted = make_problem(*SPEC, len(s), seed=3)[0]
    uninterrupted.train(X, T, sample_weight=s, epochs=4, batch_size=4, optimizer="adam")
    net.train(X, T, sample_weight=s, epochs=2, batch_size=4, optimizer="adam", checkpoint=str(path))
    with pytest.raises(fastbp.training.ResumeError, match="sample_weight"):
        fastbp.resume(str(path), X, T, epochs=4)
    with pytest.raises(fastbp.training.ResumeError, match="sample_weight"):
        fastbp.resume(str(path), X, T, epochs=4, sample_weight=s + 1)
    resumed, _ = fastbp.resume(str(path), X, T, epochs=4, sample_weight=s)
    assert max_difference(resumed, uninterrupted) == 0


# ---------------------------------------------------------------- the estimators

@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


def quietly(fit, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fit(*args, **kwargs)


@pytest.mark.parametrize("solver", ["lbfgs", "sgd", "adam"])
def test_estimator_integer_weights_equal_repeated_rows(iris, solver):
    X, y = iris
    s = np.random.default_rng(0).integers(0, 3, len(y))
    repeated = np.repeat(np.arange(len(y)), s)
    settings = dict(hidden_layer_sizes=(6,), solver=solver, max_iter=15, random_state=0, alpha=1e-2,
                    batch_size=10 ** 6, shuffle=False)           # full batch: exact
    weighted = quietly(fastbp.MLPClassifier(**settings).fit, X, y, sample_weight=s)
    plain = quietly(fastbp.MLPClassifier(**settings).fit, X[repeated], y[repeated])
    np.testing.assert_allclose(weighted.predict_proba(X), plain.predict_proba(X), rtol=1e-9, atol=1e-12)
    assert weighted.n_iter_ == plain.n_iter_


def test_weighted_lbfgs_follows_scikit_learns_path(iris):
    X, y = iris
    s = np.random.default_rng(1).uniform(0.2, 3.0, len(y))
    settings = dict(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=40, alpha=1e-3, random_state=3,
                    activation="tanh")
    ours = quietly(fastbp.MLPClassifier(init="sklearn", **settings).fit, X, y, sample_weight=s)
    theirs = quietly(SkClassifier(**settings).fit, X, y, sample_weight=s)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)
    for a, b in zip(ours.coefs_, theirs.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_partial_fit_takes_sample_weight(iris):
    X, y = iris
    s = np.where(y == 2, 0.0, 1.0)
    a = fastbp.MLPClassifier(hidden_layer_sizes=(5,), random_state=0, batch_size=1000)
    b = fastbp.MLPClassifier(hidden_layer_sizes=(5,), random_state=0, batch_size=1000)
    kept = y != 2
    for _ in range(3):
        a.partial_fit(X, y, sample_weight=s, classes=[0, 1, 2])
        b.partial_fit(X[kept], y[kept], classes=[0, 1, 2])
    np.testing.assert_allclose(a.predict_proba(X), b.predict_proba(X), rtol=1e-12)


@pytest.mark.parametrize("solver", ["lbfgs", "adam"])
def test_class_weight_is_sample_weight_per_class(iris, solver):
    X, y = iris
    X, y = X[10:], y[10:]                                       # unbalanced: 40, 50, 50
    settings = dict(hidden_layer_sizes=(5,), solver=solver, max_iter=8, random_state=0)
    for class_weight in ("balanced", {0: 3.0, 2: 0.5}):
        by_class = quietly(fastbp.MLPClassifier(class_weight=class_weight, **settings).fit, X, y)
        by_sample = quietly(fastbp.MLPClassifier(**settings).fit, X, y,
                            sample_weight=compute_sample_weight(class_weight, y))
        np.testing.assert_allclose(by_class.predict_proba(X), by_sample.predict_proba(X), rtol=1e-12)
    s = np.linspace(0.5, 2.0, len(y))                            # both: their product
    both = quietly(fastbp.MLPClassifier(class_weight={1: 2.0}, **settings).fit, X, y, sample_weight=s)
    product = quietly(fastbp.MLPClassifier(**settings).fit, X, y, sample_weight=s * np.where(y == 1, 2.0, 1.0))
    np.testing.assert_allclose(both.predict_proba(X), product.predict_proba(X), rtol=1e-12)


def test_balanced_class_weight_with_sample_weight_is_scikit_learns(iris):
    from sklearn.utils.class_weight import compute_class_weight
    X, y = iris
    s = np.linspace(0.1, 3.0, len(y))
    clf = fastbp.MLPClassifier(class_weight="balanced", max_iter=1)
    clf._kind, clf.classes_ = "multiclass", np.arange(3)
    per_row = clf._class_weights(np.eye(3)[y], s, incremental=False)
    expected = compute_class_weight("balanced", classes=np.arange(3), y=y, sample_weight=s)[y] * s
    np.testing.assert_allclose(per_row, expected, rtol=1e-12)


def test_class_weight_errors(iris):
    X, y = iris
    with pytest.raises(ValueError, match="names the class 7"):
        fastbp.MLPClassifier(class_weight={7: 2.0}).fit(X, y)
    with pytest.raises(ValueError, match="class_weight must be"):
        fastbp.MLPClassifier(class_weight="even").fit(X, y)
    with pytest.raises(ValueError, match=r"class_weight\[0\] must be a finite number >= 0"):
        fastbp.MLPClassifier(class_weight={0: -1.0}).fit(X, y)
    with pytest.raises(ValueError, match="not supported for partial_fit"):
        fastbp.MLPClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="multi-label"):
        fastbp.MLPClassifier(class_weight={0: 2.0}).fit(X, np.eye(3, dtype=int)[y])
    with pytest.raises(ValueError, match="all the sample weights are zero"):
        fastbp.MLPClassifier(class_weight={0: 0.0, 1: 0.0, 2: 0.0}).fit(X, y)
