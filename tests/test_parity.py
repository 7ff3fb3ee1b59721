"""scikit-learn parity: warm starts and partial_fit as scikit-learn's,
MLPRegressor(loss="poisson"), init="sklearn", to_sklearn/from_sklearn, the validation loss
curve. Each is held to scikit-learn 1.9's own behaviour, run beside it."""
import contextlib
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits, load_iris
from sklearn.neural_network import MLPClassifier as SkClassifier
from sklearn.neural_network import MLPRegressor as SkRegressor
from sklearn.preprocessing import StandardScaler

import fastbp
from fastbp.estimators import ConvergenceWarning, _sklearn_draws


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@contextlib.contextmanager
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        yield


def test_n_iter_counts_the_last_fit_call_as_scikit_learns(iris):
    X, y = iris
    for cls in (fastbp.MLPClassifier, SkClassifier):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf = cls(hidden_layer_sizes=(8,), max_iter=10, warm_start=True, random_state=0).fit(X, y)
            clf.set_params(max_iter=20)
            clf.fit(X, y)
        assert clf.n_iter_ == 20 and len(clf.loss_curve_) == 30 and clf.t_ == 30 * len(X), cls
        assert clf.validation_scores_ is None and clf.best_validation_score_ is None


def test_schedules_keep_their_state_across_partial_fit_and_warm_starts(iris):
    X, y = iris
    clf = fastbp.MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", learning_rate="invscaling",
                               learning_rate_init=0.01, random_state=0)
    for _ in range(4):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    np.testing.assert_allclose(clf.history_["lr"], [0.01 / (1 + e) ** 0.5 for e in range(4)])
    assert clf.n_iter_ == 4
    warm = fastbp.MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", learning_rate="invscaling",
                                learning_rate_init=0.01, random_state=0, max_iter=3, warm_start=True)
    with quiet():
        warm.fit(X, y)
        warm.fit(X, y)
    np.testing.assert_allclose(warm.history_["lr"], [0.01 / (1 + e) ** 0.5 for e in range(6)])


def test_n_iter_no_change_may_be_infinite(iris):
    X, y = iris
    with quiet():
        clf = fastbp.MLPClassifier(hidden_layer_sizes=(8,), max_iter=7, n_iter_no_change=np.inf, tol=10.0).fit(X, y)
    assert clf.n_iter_ == 7


def test_partial_fit_refuses_other_classes_and_early_stopping(iris):
    X, y = iris
    clf = fastbp.MLPClassifier(hidden_layer_sizes=(8,), random_state=0).partial_fit(X, y, classes=[0, 1, 2])
    with pytest.raises(ValueError, match="is not the same as on last call to partial_fit"):
        clf.partial_fit(X, y, classes=[0, 1, 2, 3])
    clf.partial_fit(X, y, classes=[2, 1, 0])                     # the same set, in another order
    stopping = fastbp.MLPClassifier(hidden_layer_sizes=(8,), early_stopping=True, max_iter=5)
    with quiet():
        stopping.fit(X, y)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        stopping.partial_fit(X, y)


def test_divergence_under_early_stopping_ends_as_scikit_learns(iris):
    X, y = iris
    clf = fastbp.MLPClassifier(hidden_layer_sizes=(32,), solver="sgd", momentum=0.99, learning_rate_init=1e200,
                               early_stopping=True, max_iter=50, random_state=0, batch_size=8)
    with pytest.warns(ConvergenceWarning, match="training diverged"):
        clf.fit(X, y)
    assert np.isnan(clf.validation_scores_[-1]) and np.isnan(clf.validation_loss_curve_[-1])
    assert clf.net_.is_finite() and clf.predict(X).shape == y.shape


def test_early_stopping_stratifies_binary_targets_and_refuses_a_lone_class(iris):
    X, y = iris
    binary = (y == 0).astype(int)
    clf = fastbp.MLPClassifier(hidden_layer_sizes=(8,), early_stopping=True, validation_fraction=0.2,
                               max_iter=3, random_state=0)
    with quiet():
        clf.fit(X, binary)
    rows = fastbp.training.split_validation(150, 0.2, np.random.default_rng(0), binary)[1]
    assert np.sum(binary[rows]) == 10 and len(rows) == 30            # 50 of 150 are class 1: a third
    lone = binary.copy()
    lone[:] = 0
    lone[0] = 1
    with pytest.raises(ValueError, match="The least populated classes in y have only 1 member"):
        clf.fit(X, lone)


def test_poisson_regression(iris):
    X, _ = iris
    rng = np.random.default_rng(0)
    counts = rng.poisson(np.exp(0.5 * X[:, 0] - 0.3 * X[:, 2]))
    with quiet():
        reg = fastbp.MLPRegressor(loss="poisson", hidden_layer_sizes=(8,), max_iter=100, random_state=0,
                                  learning_rate_init=0.01).fit(X, counts)
        sk = SkRegressor(loss="poisson", hidden_layer_sizes=(8,), max_iter=100, random_state=0,
                         learning_rate_init=0.01).fit(X, counts)
    assert reg.out_activation_ == sk.out_activation_ == "exp" and reg.get_params()["loss"] == "poisson"
    assert reg.predict(X).min() > 0 and reg.loss_curve_[-1] < 0.7 * reg.loss_curve_[0]
    assert abs(reg.loss_curve_[-1] - sk.loss_curve_[-1]) < 0.3 * sk.loss_curve_[-1]   # the same objective
    with pytest.raises(ValueError, match="negative"):
        fastbp.MLPRegressor(loss="poisson").fit(X, -counts - 1)
    with pytest.raises(ValueError, match="unknown loss 'gamma'"):
        fastbp.MLPRegressor(loss="gamma").fit(X, counts)


@pytest.mark.parametrize("activation", ["relu", "logistic"])
def test_init_sklearn_draws_scikit_learns_starting_weights(activation):
    from sklearn.utils import check_random_state
    sizes = [4, 6, 5, 3]
    sk = SkClassifier(hidden_layer_sizes=(6, 5), activation=activation, random_state=7)
    from sklearn.preprocessing import LabelBinarizer
    sk._random_state = check_random_state(7)
    sk.n_outputs_, sk._label_binarizer = 3, LabelBinarizer().fit([0, 1, 2])
    sk._initialize(np.zeros((2, 3)), sizes, np.float64)
    draws = _sklearn_draws(7, sizes, activation)
    for (W, b), coef, intercept in zip(draws, sk.coefs_, sk.intercepts_):
        np.testing.assert_array_equal(W, coef)
        np.testing.assert_array_equal(b, intercept)
    X, y = np.random.default_rng(0).normal(size=(30, 4)), np.arange(30) % 3
    with quiet():
        clf = fastbp.MLPClassifier(hidden_layer_sizes=(6, 5), activation=activation, init="sklearn",
                                   random_state=7, max_iter=1, learning_rate_init=1e-12).fit(X, y)
    for l, coef in enumerate(sk.coefs_):
        np.testing.assert_allclose(clf.coefs_[l], coef, atol=1e-9)


@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel", "regression"])
def test_to_sklearn_and_back_predict_the_same(kind):
    X, y = load_digits(return_X_y=True)
    X = X[:300] / 16.0
    y = {"multiclass": y[:300], "binary": (y[:300] > 4).astype(int),
         "multilabel": np.stack([y[:300] > 4, y[:300] % 2 == 0], axis=1).astype(int),
         "regression": y[:300] / 9.0}[kind]
    cls = fastbp.MLPRegressor if kind == "regression" else fastbp.MLPClassifier
    with quiet():
        ours = cls(hidden_layer_sizes=(16,), max_iter=20, random_state=0).fit(X, y)
    theirs = ours.to_sklearn()
    assert type(theirs).__module__.startswith("sklearn.")
    if kind == "regression":
        np.testing.assert_allclose(theirs.predict(X), ours.predict(X), rtol=1e-12, atol=1e-12)
    else:
        np.testing.assert_allclose(theirs.predict_proba(X), ours.predict_proba(X), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(theirs.predict(X), ours.predict(X))
    sk_cls = SkRegressor if kind == "regression" else SkClassifier
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = sk_cls(hidden_layer_sizes=(16,), max_iter=20, random_state=0).fit(X, y)
    back = cls.from_sklearn(sk)
    if kind == "regression":
        np.testing.assert_allclose(back.predict(X), sk.predict(X), rtol=1e-12, atol=1e-12)
    else:
        np.testing.assert_allclose(back.predict_proba(X), sk.predict_proba(X), rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(back.predict(X), sk.predict(X))
    assert back.n_iter_ == sk.n_iter_ and back.loss_curve_ == sk.loss_curve_


def test_validation_loss_curve(iris):
    X, y = iris
    with quiet():
        clf = fastbp.MLPClassifier(hidden_layer_sizes=(8,), early_stopping=True, max_iter=12, random_state=0).fit(X, y)
    assert len(clf.validation_loss_curve_) == len(clf.validation_scores_) == clf.n_iter_
    assert all(np.isfinite(clf.validation_loss_curve_))


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_lbfgs_follows_scikit_learns_path(iris, kind):
    """The same starting weights (init='sklearn'), the same objective and gradient: L-BFGS-B
    takes the same steps, so the fits agree closely."""
    X, y = iris
    target = y if kind == "classifier" else X[:, 0] * 0.5 - X[:, 1]
    ours_cls, theirs_cls = ((fastbp.MLPClassifier, SkClassifier) if kind == "classifier"
                            else (fastbp.MLPRegressor, SkRegressor))
    settings = dict(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=40, alpha=1e-3, random_state=3,
                    activation="tanh")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = ours_cls(init="sklearn", **settings).fit(X[:, 1:] if kind == "regressor" else X, target)
        theirs = theirs_cls(**settings).fit(X[:, 1:] if kind == "regressor" else X, target)
    assert ours.n_iter_ == theirs.n_iter_
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-6)
    for a, b in zip(ours.coefs_, theirs.coefs_):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # as scikit-learn 1.9: the classifier hides partial_fit (available_if), the regressor has it
    assert hasattr(ours, "partial_fit") == hasattr(theirs, "partial_fit") == (kind == "regressor")
    with pytest.raises(AttributeError if kind == "classifier" else ValueError, match="lbfgs is not stochastic"):
        ours.partial_fit(X[:, 1:] if kind == "regressor" else X, target)


def test_feature_names_from_data_frames(iris):
    import pandas as pd
    X, y = iris
    frame = pd.DataFrame(X, columns=["sepal_length", "sepal_width", "petal_length", "petal_width"])
    with quiet():
        clf = fastbp.MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(frame, y)
    assert list(clf.feature_names_in_) == list(frame.columns)
    with pytest.raises(ValueError, match="feature names should match"):
        clf.predict(frame.rename(columns={"petal_width": "width"}))
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        clf.predict(X)
    with quiet():
        plain = fastbp.MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y)
    assert not hasattr(plain, "feature_names_in_")
    with pytest.warns(UserWarning, match="fitted without feature names"):
        plain.predict(frame)
    np.testing.assert_array_equal(plain.predict_proba(X), clf.predict_proba(frame))


def test_partial_fit_regression_with_scikit_learns_starting_weights():
    """scikit-learn's test_partial_fit_regression, whose score bar (0.65) belongs to its own
    starting weights: with init="sklearn", fastbp's 100 full-batch partial_fit steps score
    what scikit-learn's do."""
    from sklearn.datasets import make_regression
    X, y = make_regression(n_samples=200, n_features=10, bias=20.0, noise=100.0, random_state=7)
    y = StandardScaler().fit_transform(y[:, None]).ravel()
    for momentum in (0.0, 0.9):
        models = [cls(solver="sgd", activation="relu", learning_rate_init=0.01, random_state=1,
                      batch_size=len(X), momentum=momentum, **kw)
                  for cls, kw in ((fastbp.MLPRegressor, {"init": "sklearn"}), (SkRegressor, {}))]
        for model in models:
            for _ in range(100):
                model.partial_fit(X, y)
        ours, theirs = (model.score(X, y) for model in models)
        assert ours > 0.65 and abs(ours - theirs) < 1e-6, (ours, theirs)
