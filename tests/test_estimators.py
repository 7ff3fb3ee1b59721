"""fastbp.MLPClassifier and MLPRegressor: scikit-learn's estimator checks, its
meta-estimators, labels of any type, and no scikit-learn needed at run time."""
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits, load_iris
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import check_estimator

from fastbp.estimators import MLPClassifier, MLPRegressor

# Checks scikit-learn skips here: one needs what these machines do not have (SCIPY_ARRAY_API
# with array-api-compat), one a method neither these estimators nor scikit-learn's
# MLPClassifier have (decision_function).
NOT_APPLICABLE = {"check_array_api_input", "check_classifiers_multilabel_output_format_decision_function"}
# sample_weight's checks: each must run, and pass
WEIGHT_CHECKS = {"check_sample_weights_pandas_series", "check_sample_weights_not_an_array",
                 "check_sample_weights_list", "check_all_zero_sample_weights_error",
                 "check_sample_weights_shape", "check_sample_weights_not_overwritten",
                 "check_sample_weight_equivalence_on_dense_data",
                 # and sparse input's
                 "check_sample_weight_equivalence_on_sparse_data", "check_estimator_sparse_tag",
                 "check_estimator_sparse_array", "check_estimator_sparse_matrix"}


@pytest.mark.slow
@pytest.mark.parametrize("estimator", [MLPClassifier(), MLPRegressor()], ids=lambda e: type(e).__name__)
def test_check_estimator(estimator):
    # expected: fastbp's estimators follow scikit-learn's conventions without inheriting its
    # BaseEstimator, so that scikit-learn is not needed at run time; check_estimator says so
    inherit = "does not inherit from `sklearn.base.BaseEstimator`"
    with warnings.catch_warnings(), pytest.warns(UserWarning, match=inherit):
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.filterwarnings("always", "Estimator .* does not inherit", UserWarning)
        results = check_estimator(estimator, on_fail=None, on_skip=None)
    failed = ["%s: %r" % (r["check_name"], r["exception"]) for r in results if r["status"] == "failed"]
    assert not failed
    skipped = {r["check_name"] for r in results if r["status"] == "skipped"}
    assert skipped <= NOT_APPLICABLE
    ran = {r["check_name"] for r in results if r["status"] == "passed"}
    assert WEIGHT_CHECKS <= ran
    if isinstance(estimator, MLPClassifier):
        assert {"check_class_weight_classifiers", "check_classifiers_one_label_sample_weights"} <= ran
    assert len(results) > 50


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X, y


def test_pipeline_grid_search_and_cross_validation(digits):
    X, y = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=30,
                                                         random_state=0))
    with pytest.warns(ConvergenceWarning, match="max_iter=30"):   # 30 epochs: not converged
        scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.85
    search = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-2],
                                 "mlpclassifier__hidden_layer_sizes": [(16,), (32,)]}, cv=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    assert search.best_score_ > 0.85 and set(search.best_params_) == {
        "mlpclassifier__alpha", "mlpclassifier__hidden_layer_sizes"}
    assert search.score(X, y) > 0.9


def test_fitted_attributes(digits):
    X, y = digits
    clf = MLPClassifier(hidden_layer_sizes=(20, 12), max_iter=5, random_state=0, batch_size=50)
    with pytest.warns(ConvergenceWarning, match="max_iter=5"):
        clf.fit(X, y)
    assert [c.shape for c in clf.coefs_] == [(64, 20), (20, 12), (12, 10)]
    assert [b.shape for b in clf.intercepts_] == [(20,), (12,), (10,)]
    np.testing.assert_array_equal(clf.coefs_[0], clf.net_.weights[0].T)
    assert clf.n_iter_ == len(clf.loss_curve_) == 5 and clf.t_ == 5 * len(X)
    assert clf.n_layers_ == 4 and clf.n_outputs_ == 10 and clf.out_activation_ == "softmax"
    np.testing.assert_array_equal(clf.classes_, np.arange(10))
    assert clf.best_loss_ == min(clf.loss_curve_)
    assert {"loss", "seconds", "lr"} <= set(clf.history_)
    assert not {"mean_abs_delta", "grad_norm", "accuracy"} & set(clf.history_)   # off, as scikit-learn
    with pytest.warns(ConvergenceWarning):
        clf.set_params(diagnostics=True, warm_start=True).fit(X[:200], y[:200])
    assert {"mean_abs_delta", "grad_norm", "accuracy"} <= set(clf.history_)
    assert len(clf.history_["grad_norm"][0]) == 3
    assert clf.predict_proba(X).shape == (len(X), 10)
    np.testing.assert_allclose(clf.predict_proba(X).sum(axis=1), 1.0)


def test_early_stopping_keeps_the_best_validation_epoch(digits):
    X, y = digits
    clf = MLPClassifier(hidden_layer_sizes=(64,), early_stopping=True, n_iter_no_change=3,
                        max_iter=200, learning_rate_init=0.01, random_state=0).fit(X / 16, y)
    assert clf.n_iter_ < 200 and len(clf.validation_scores_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_) > 0.9
    assert clf.history_["stopped"] == "no improvement"
    reg = MLPRegressor(hidden_layer_sizes=(32,), early_stopping=True, max_iter=300, random_state=0,
                       n_iter_no_change=5).fit(X / 16, y / 9.0)
    assert reg.n_iter_ < 300 and len(reg.validation_scores_) == reg.n_iter_
    assert max(reg.validation_scores_) > 0.5                      # R^2


def test_labels_of_any_hashable_type():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    with pytest.warns(ConvergenceWarning, match="max_iter="):   # (as scikit-learn's would)
        clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, learning_rate_init=0.01,
                            random_state=0).fit(X, names)
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    assert clf.predict(X[:3]).dtype.kind == "U" and clf.score(X, names) > 0.9
    # mixed types that cannot be sorted: the order of first appearance
    mixed = np.empty(len(y), dtype=object)
    mixed[:] = [(None, 1.5, ("a", 2))[k] for k in y]
    with pytest.warns(ConvergenceWarning, match="max_iter="):
        clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, learning_rate_init=0.01,
                            random_state=0).fit(X, mixed)
    assert list(clf.classes_) == [None, 1.5, ("a", 2)] and clf.score(X, mixed) > 0.9
    # two classes: one sigmoid output; predict_proba still has a column per class
    binary = np.where(y == 0, "yes", "no")
    with pytest.warns(ConvergenceWarning, match="max_iter="):
        clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=200, learning_rate_init=0.01,
                            random_state=0).fit(X, binary)
    assert clf.net_.sizes[-1] == 1 and clf.predict_proba(X).shape == (len(X), 2)
    assert clf.score(X, binary) > 0.95
    # multi-label: a 0/1 indicator matrix
    Y = np.stack([y == 0, y == 2, X[:, 0] > 0], axis=1).astype(int)
    with pytest.warns(ConvergenceWarning, match="max_iter="):
        clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=300, learning_rate_init=0.01,
                            random_state=0).fit(X, Y)
    assert clf.predict(X).shape == Y.shape and clf.score(X, Y) > 0.8


def test_partial_fit(digits):
    X, y = digits
    clf = MLPClassifier(hidden_layer_sizes=(32,), random_state=0, learning_rate_init=0.01)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[y < 5], y[y < 5], classes=np.arange(10))        # some classes not seen yet
    for _ in range(10):
        clf.partial_fit(X / 16, y)
    assert clf.n_iter_ == 11 and clf.score(X / 16, y) > 0.9
    with pytest.raises(ValueError, match=r"labels \[10\] that are not among the classes"):
        clf.partial_fit(X, np.where(y == 3, 10, y))
    with pytest.raises(ValueError, match="X has 63 features, but MLPClassifier is expecting 64"):
        clf.partial_fit(X[:, 1:], y)


def test_warm_start_continues_and_pickles(digits):
    X, y = digits
    X = X / 16
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        first = clf.coefs_[0].copy()
        clf.fit(X, y)
    assert clf.n_iter_ == 3 and len(clf.loss_curve_) == 6 and not np.array_equal(first, clf.coefs_[0])
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))


def test_float32_trains_in_float32(digits):
    X, y = digits
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=20, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit((X / 16).astype(np.float32), y)
    assert clf.net_.dtype == np.float32 and clf.predict_proba(X[:2]).dtype == np.float32


def test_bad_input_is_a_clear_error(digits):
    X, y = digits
    with pytest.raises(NotFittedError, match="not fitted yet"):
        MLPClassifier().predict(X)
    for params, message in [(dict(activation="swish"), "unknown activation 'swish'"),
                            (dict(solver="newton"), "unknown solver 'newton'"),
                            (dict(hidden_layer_sizes=(10, 0)), "hidden_layer_sizes must be positive"),
                            (dict(batch_size=0), "batch_size must be 'auto' or an integer >= 1"),
                            (dict(learning_rate="cosine"), "unknown learning_rate 'cosine'")]:
        with pytest.raises(ValueError, match=message):
            MLPClassifier(**params).fit(X, y)
    with pytest.raises(ValueError, match="Unknown label type: continuous"):
        MLPClassifier().fit(X, y + 0.5)
    bad = X.astype(float)
    bad[7, 3] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN or inf \(first in row 7\)"):
        MLPClassifier().fit(bad, y)


def test_no_scikit_learn_needed_at_run_time():
    """With scikit-learn unimportable, the estimators train, predict and raise their own errors."""
    code = """
import sys
sys.modules["sklearn"] = None                      # any import of scikit-learn now fails
import warnings, numpy as np
from fastbp.estimators import MLPClassifier, MLPRegressor, NotFittedError, ConvergenceWarning
rng = np.random.default_rng(0)
X = rng.normal(size=(200, 4)); y = np.where(X[:, 0] + X[:, 1] > 0, "a", "b")
try:
    MLPClassifier().predict(X)
except NotFittedError as error:
    assert type(error) is NotFittedError
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, y)
assert any(issubclass(w.category, ConvergenceWarning) for w in caught)
assert clf.score(X, y) > 0.5 and clf.get_params()["max_iter"] == 5
reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=50, random_state=0).fit(X, X[:, 0])
print("ok", clf.predict(X[:2]), round(reg.score(X, X[:, 0]), 2))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


@pytest.mark.parametrize("early_stopping", [False, True])
def test_ctrl_c_in_fit_keeps_the_model_trained_so_far(digits, early_stopping):
    """As scikit-learn's MLP: Ctrl-C in fit warns "Training interrupted by user." and
    keeps the epochs finished (with early_stopping, the best validation epoch's weights)."""
    X, y = digits

    def stop_after_3(net, history):
        if len(history["loss"]) == 3:
            raise KeyboardInterrupt
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=50, random_state=0, early_stopping=early_stopping,
                        n_iter_no_change=50, callback=stop_after_3)
    with pytest.warns(UserWarning, match="^Training interrupted by user.$"):
        clf.fit(X, y)
    assert clf.n_iter_ == len(clf.loss_curve_) == 3 and clf.history_["stopped"] == "interrupted"
    three = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=0, early_stopping=early_stopping,
                          n_iter_no_change=50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        three.fit(X, y)
    for a, b in zip(clf.coefs_ + clf.intercepts_, three.coefs_ + three.intercepts_):
        np.testing.assert_array_equal(a, b)               # what 3 epochs give
    if early_stopping:
        assert len(clf.validation_scores_) == 3
        best = int(np.argmax(clf.validation_scores_))
        assert clf.history_["best_epoch"] == best + 1


def test_every_hidden_activation_of_the_table_fits(digits):
    """activation= takes fastbp's own activations too; to_sklearn names what scikit-learn lacks."""
    from fastbp.estimators import ACTIVATION_NAMES
    from fastbp.functions import HIDDEN_ACTIVATIONS
    assert set(HIDDEN_ACTIVATIONS) <= set(ACTIVATION_NAMES) and ACTIVATION_NAMES["logistic"] == "sigmoid"
    X, y = digits
    for activation in ("leaky_relu", "elu", "softplus", "gelu", "hard_sigmoid", "silu"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = MLPClassifier((16,), activation=activation, max_iter=40, learning_rate_init=0.01,
                                random_state=0).fit(X[:300] / 16, y[:300])
        assert clf.net_.activations[0] == activation and clf.score(X[:300] / 16, y[:300]) > 0.8, activation
        with pytest.raises(ValueError, match="scikit-learn's MLP has no activation %r" % activation):
            clf.to_sklearn()
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        MLPClassifier(activation="swish").fit(X[:50], y[:50])


@pytest.mark.parametrize("solver", ["rprop", "irprop+"])
def test_the_full_batch_rules_as_solvers(digits, solver):
    """solver='rprop' or 'irprop+' fits by full-batch steps (one per epoch, batch_size
    ignored, as lbfgs), learning_rate_init the first step size; the regressor too."""
    X, y = digits
    X = X / 16
    clf = MLPClassifier(hidden_layer_sizes=(32,), solver=solver, learning_rate_init=0.01, max_iter=60,
                        batch_size=50, random_state=0, n_iter_no_change=100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert clf.n_iter_ == 60 and clf.t_ == 60 * len(X)          # (t_ counts samples, as scikit-learn's)
    assert clf.history_["loss"][-1] < 0.5 * clf.history_["loss"][0] and clf.score(X, y) > 0.9
    assert clf.net_.weights[0].dtype == np.float64
    reg = MLPRegressor(hidden_layer_sizes=(16,), solver=solver, max_iter=40, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, y / 9.0)
    assert reg.loss_curve_[-1] < 0.5 * reg.loss_curve_[0]
    with pytest.raises(ValueError, match="unknown solver 'rprop-'; choose from .*'rprop', 'irprop\\+'"):
        MLPClassifier(solver="rprop-").fit(X, y)
