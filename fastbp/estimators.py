"""scikit-learn compatible estimators: MLPClassifier and MLPRegressor.

They follow scikit-learn's estimator conventions (parameters stored as given in
__init__, validated in fit; fitted attributes ending in '_'; get_params/set_params;
score) and take MLPClassifier's parameter names, so that they drop into Pipeline,
GridSearchCV and cross_val_score. scikit-learn is not needed to use them: the
conventions are written out here, and scikit-learn is only imported when scikit-learn
itself asks for the estimator's tags.

Underneath, each is a fastbp.Network trained by fastbp.training (net_, history_).
Differences from scikit-learn's MLP, all deliberate:
  - alpha is scikit-learn's: the gradient of a step gains alpha * W / batch_size (fastbp
    passes l2 = alpha / batch_size, also to the last, smaller batch of an epoch; with
    sample weights, alpha / (batch_size * their mean), where scikit-learn divides by each
    batch's weight sum: the same for full batches);
  - sample_weight: a batch's step takes the weighted mean of its gradients (scikit-learn's),
    but a per-sample step (batch_size=1) takes s_i times its gradient: scikit-learn's mean
    over one sample ignores the weight;
  - class_weight (scikit-learn's MLP has none) multiplies sample_weight;
  - learning_rate='invscaling' divides by (1 + epoch) ** power_t, counted in epochs, where
    scikit-learn counts samples; 'adaptive' (ReduceOnPlateau: / 5 after 2 epochs without
    improvement) works with every solver;
  - early stopping watches the validation loss, not the validation score, and ends with
    the best epoch's weights;
  - a float32 X trains in float32 (twice the speed), anything else in float64;
  - solver='lbfgs' minimises the same objective as scikit-learn's (tests compare the two);
  - solver= also takes fastbp's full-batch rules: 'rprop' (iRPROP-) and 'irprop+', with
    learning_rate_init as the initial step size, 'lm' (Levenberg-Marquardt), 'br' (Bayesian
    regularisation, which sets its own weight penalty: alpha is not used) and 'scg' (scaled
    conjugate gradient). Like 'lbfgs' they take the whole set at every step and ignore
    batch_size. 'lm' and 'br' minimise the squared error: the classifier then trains its
    softmax (or sigmoid) outputs on the squared error, as MATLAB's patternnet allows;
  - activation= also takes fastbp's other hidden activations ('silu', 'leaky_relu', 'elu',
    'softplus', 'gelu', 'hard_sigmoid', at their parameters' defaults); to_sklearn then
    refuses, as scikit-learn has no such activation.


scikit-learn estimators
=======================

```python
from fastbp import MLPClassifier, MLPRegressor
from sklearn.model_selection import GridSearchCV
clf = MLPClassifier(hidden_layer_sizes=(100,), random_state=0).fit(X, y)   # any hashable labels
clf.predict(X_test), clf.predict_proba(X_test), clf.score(X_test, y_test)
GridSearchCV(MLPClassifier(max_iter=50), {"alpha": [1e-4, 1e-3]}, cv=3).fit(X, y)
```

`fastbp.MLPClassifier` and `fastbp.MLPRegressor` take scikit-learn's `MLPClassifier`
parameters (`hidden_layer_sizes`, `activation`, `solver` "adam"/"sgd"/"lbfgs" and fastbp's full-batch
"rprop"/"irprop+"/"lm"/"br"/"scg", `alpha`,
`batch_size`, `learning_rate` "constant"/"invscaling"/"adaptive", `learning_rate_init`,
`power_t`, `max_iter`, `shuffle`, `random_state`, `tol`, `verbose`, `warm_start`,
`momentum`, `nesterovs_momentum`, `early_stopping`, `validation_fraction`, `beta_1`,
`beta_2`, `epsilon`, `n_iter_no_change`) and their defaults, plus `clip`, `target_loss`,
`init` (default `glorot`), `callback` and `diagnostics` (default False, as scikit-learn
computes none: True adds each epoch's training accuracy, mean |error term| and gradient
norm per layer to `history_`, at a cost: asv_benchmarks/README.md, "Figures behind the
documented choices"). They have `fit`, `partial_fit`, `predict`,
`predict_proba`/`predict_log_proba` (classifier), `score` (accuracy, R^2),
`get_params`/`set_params`, and after fitting `net_` (the `fastbp.Network`), `coefs_` (views,
scikit-learn's `(n_in, n_out)` layout), `intercepts_`, `loss_curve_`, `n_iter_`, `t_`,
`best_loss_`, `classes_`, `n_features_in_`, `n_outputs_`, `n_layers_`, `out_activation_`,
`history_` and `validation_scores_`, `best_validation_score_` and `validation_loss_curve_`
(all `None` without `early_stopping`, as scikit-learn's). `MLPRegressor(loss="poisson")`
(scikit-learn 1.7's: exp outputs, half the Poisson deviance, y >= 0) is there too.
`activation=` takes scikit-learn's four names (`logistic` is the sigmoid) and every other
hidden activation of fastbp's table, at its parameter's default; `to_sklearn()` refuses
those scikit-learn lacks, naming them. They pass scikit-learn's `check_estimator` (all checks
but two that do not apply here:
one needs the array API, one a `decision_function`; the sample-weight and class-weight
checks run and pass, tested) and work in `Pipeline`,
`GridSearchCV` and `cross_val_score` (tested). scikit-learn is a test dependency only:
fastbp does not import it (tested with scikit-learn made unimportable); when scikit-learn
is loaded, fastbp's `NotFittedError` and `ConvergenceWarning` are
also scikit-learn's.

- **Warm starts and `partial_fit` behave as scikit-learn's**: `n_iter_` counts the last
  `fit` call (`max_iter=10`, then 20 with `warm_start`: 20; `loss_curve_` and `t_` keep
  growing); the learning-rate schedule keeps its state across warm-started `fit` and
  `partial_fit` calls (four `partial_fit` calls with `invscaling` train at 0.01,
  0.01/sqrt(2), ...); `n_iter_no_change=np.inf` never stops; `partial_fit` refuses other
  `classes` than the first call's, and refuses `early_stopping=True`; a run that diverges
  under early stopping ends with NaN as its last validation score, the best epoch's weights
  and a `ConvergenceWarning`; the validation split is stratified for two classes too, and a
  class with a single member is an error, as scikit-learn's `train_test_split` makes it
  (all tested beside scikit-learn 1.9).
- **`init="sklearn"`** draws scikit-learn's starting weights and biases exactly, from the
  same `random_state` (a `RandomState`; uniform in ±sqrt(6 / (fan_in + fan_out)), 2
  instead of 6 for logistic hidden layers; tested against scikit-learn's `_initialize`). The
  default, `glorot`, draws weights from the network's own generator and starts biases at 0.
- **`est.to_sklearn()`** returns a fitted scikit-learn estimator with the same weights, and
  **`fastbp.MLPClassifier.from_sklearn(sk)`** (or `MLPRegressor`'s) goes the other way; the
  predictions agree to 1e-12 in float64 (tested for multi-class, binary, multi-label and
  regression).
- **`solver="lbfgs"`** (with `max_fun`): `scipy.optimize.minimize(method="L-BFGS-B",
  jac=True)` on the full-batch mean loss plus alpha / (2 n) times the squared weights, the
  loss and gradient from the compiled batched kernels. From the same starting weights
  (`init="sklearn"`) it takes scikit-learn's steps: the same `n_iter_`, the loss to 1e-6
  and the weights to 1e-5 (tested, classifier and regressor).
- **Data frames**: `feature_names_in_` from string column names; predicting with other
  names is an error, with or without names where fit had the other a warning, as
  scikit-learn's.
- **`sample_weight`** in `fit` and `partial_fit` (and `Network.train(..., sample_weight=)`
  in every mode, with every optimizer, on both backends, inside the compiled loops): the
  objective is scikit-learn 1.7's, sum_i s_i E_i / sum_i s_i plus alpha / (2 sum_i s_i)
  times the squared weights. A batch's step takes the weighted mean of its gradients, as
  scikit-learn's; a batch of total weight 0 takes no step. With full batches (and lbfgs)
  integer weights give exactly the fit of repeated rows and zero weights that of removed
  rows (tested, and scikit-learn's `check_sample_weight_equivalence` passes); a weighted
  lbfgs fit takes scikit-learn's steps (tested). Differences, chosen: per-sample steps
  (`batch_size=1`) take s_i times the sample's gradient, where scikit-learn's weighted mean
  over one sample ignores the weight (it then changes only the L2 term); the L2 term of a
  mini-batch is alpha / (batch_size x the mean weight), where scikit-learn divides by the
  batch's own weight sum (the same for full batches). Validation rows held out for early
  stopping keep their weights, and the validation loss and score are weighted.
- **`class_weight`** (classifier; scikit-learn's MLP has none): `"balanced"` (class c
  weighs total weight / (n_classes x the weight of class c), as scikit-learn's
  `compute_class_weight`, counting `sample_weight`) or a dict `{class: weight}` (others
  1); it multiplies `sample_weight`. `"balanced"` is refused by `partial_fit` (one call's
  frequencies are not the data's, as scikit-learn's `SGDClassifier`), and multi-label
  targets take `sample_weight` only.
- **ONNX export**: `fastbp.export_onnx(net_or_estimator, path)` (`pip install
  'fastbp[onnx]'`, onnx 1.23.2) writes the forward pass as ONNX, opset 17 and IR version
  8 (pinned: `fastbp.export.OPSET`, `IR_VERSION`), in the network's dtype, atomically. A
  Network's file has one output, `outputs`; a classifier's, `label` and `probabilities`
  (predict's and predict_proba's; labels must be numbers or strings); a regressor's,
  `predictions`. Every network of the table of cases (every activation, output and loss,
  with and without biases, float64 and float32) and every kind of estimator gives
  predict's outputs to 1e-6 in onnx's reference evaluator and in onnxruntime 1.32
  (tested). Each activation's ONNX operators are a field of its `functions.ACTIVATIONS`
  entry; onnxruntime has no float64 LeakyRelu, Elu, Softplus, Gelu or HardSigmoid, so those
  are written out in elementary operators (Relu, Min, Exp, Log, Tanh, ...).
- **Sparse input**: scipy sparse matrices and arrays (any format; kept as CSR, never made
  dense) in `fit`, `partial_fit`, `predict`, `predict_proba`, `score` and
  `Network.train`/`predict`/`loss`/`gradients`/`deltas`. Compiled kernels read the CSR rows:
  only the first layer reads X, and its products and gradient visit the non-zeros only.
  Per-sample SGD works on a transposed copy of the first layer, with L2's decay kept as one
  scale factor (scikit-learn's `SGDClassifier` trick), so that a step costs the row's
  non-zeros times the layer's width, not the input's length. The batched kernels transpose
  the first layer and its optimizer state for the epoch. They agree with the reference on
  the same rows dense (every network of the table of cases, every mode, both dtypes, with
  weights and L2; tested), and a test makes any densifying of the set fail. Their speed
  against the same rows dense: asv_benchmarks/README.md, "Figures behind the documented
  choices". Sparse per-sample epochs run on one thread. The NumPy backend densifies each batch's rows
  (it is the reference, written to be read).
- Not yet: `fastbp.distributed` trains without sample weights and on dense X only (both
  refused with a clear error). The regressor's squared error is summed over outputs
  (scikit-learn averages over them: the same for one output, n_outputs times larger for
  several).

Several classes train softmax outputs with cross-entropy; two, one sigmoid output with
log-loss; a 0/1 indicator matrix, one sigmoid per label (multi-label). Labels can be of any
hashable type (sorted when they can be, else in order of first appearance). Differences
from scikit-learn's MLP, chosen: `learning_rate="invscaling"` counts epochs, not samples;
`"adaptive"` (the learning rate divided by 5 after 2 epochs without improvement) works with
Adam too; early stopping watches the validation loss, not the score, and keeps the best
epoch's weights; float32 input trains in float32; a classifier needs at least two classes
(scikit-learn's fits one class and always predicts it); the default starting weights are
fastbp's own draws (`init="sklearn"` draws scikit-learn's, and then fits match its to
rounding); `MLPRegressor(solver="lbfgs").partial_fit` is an error (scikit-learn's runs).
As scikit-learn's: `MLPClassifier(solver="lbfgs")` has no `partial_fit`; a warm
start with other classes, non-finite weights (`NonFiniteParameters`, a `ValueError` and a
`TrainingDiverged`), a class too small to stratify and a too-small validation set are
`ValueError`s in its words. scikit-learn 1.9's own `test_mlp.py`, run against these
estimators, passes 50 of its 59 tests; of the other 9, 6 read or set its private
attributes, and 3 meet the differences above: one class, a score bar drawn for its own
starting weights, and early stopping on a constant y (`tests/test_sklearn_suite.py` names
each).
"""
import contextlib
import functools
import inspect
import numbers
import sys
import warnings

import numpy as np

from . import training
from .checks import check_array, check_sample_weight, choice, number, positive_int
from .functions import HIDDEN_ACTIVATIONS, mean_loss
from .methods import dot
from .network import Network
from .optimizers import RULES, Continued, InverseScaling, Optimizer, ReduceOnPlateau, Schedule
from .run import RunConfig
from .threads import blas_following_the_load, blas_on_one_thread
from .training import r2

# activation=: scikit-learn's names ('logistic' is the sigmoid) and every hidden activation
# of fastbp's table, at its parameter's default
ACTIVATION_NAMES = {"logistic": "sigmoid", **{name: name for name in HIDDEN_ACTIVATIONS}}
SKLEARN_ACTIVATIONS = ("identity", "logistic", "tanh", "relu")
# solver=: scikit-learn's, and fastbp's full-batch rules (optimizers.RULES)
FULL_BATCH_RULES = tuple(name for name, rule in RULES.items() if rule.full_batch)
SOLVERS = ("adam", "sgd", "lbfgs") + FULL_BATCH_RULES


class NotFittedError(ValueError, AttributeError):
    """The estimator is used before fit (as scikit-learn's NotFittedError)."""


class ConvergenceWarning(UserWarning):
    """max_iter epochs ran and the loss was still improving."""


NON_FINITE = ("Solver produced non-finite parameter weights. The input data may contain large values "
              "and need to be preprocessed.")           # (scikit-learn's words)


class NonFiniteParameters(training.TrainingDiverged, ValueError):
    """An estimator's fit diverged: scikit-learn's ValueError, and fastbp's TrainingDiverged
    (the network keeps its last good weights)."""


class _unless_lbfgs:
    """A method that solver='lbfgs' does not have (hasattr is False), as scikit-learn's
    available_if hides partial_fit."""

    def __init__(self, method):
        self.method = method
        functools.update_wrapper(self, method)

    def __get__(self, obj, owner=None):
        if obj is not None and getattr(obj, "solver", None) == "lbfgs":
            raise AttributeError("partial_fit is only available for stochastic optimizers. lbfgs is not "
                                 "stochastic.")
        return self.method if obj is None else self.method.__get__(obj, owner)


_MERGED = {}


def _as_sklearn(cls):
    """cls or, once scikit-learn is loaded, a subclass of cls and of scikit-learn's class
    of the same name (sklearn.exceptions), so that code catching or filtering either one
    sees it (scikit-learn's estimator checks catch their own NotFittedError)."""
    exceptions = sys.modules.get("sklearn.exceptions")
    if exceptions is None:
        return cls
    if cls not in _MERGED:
        _MERGED[cls] = type(cls.__name__, (cls, getattr(exceptions, cls.__name__)),
                            {"__module__": cls.__module__, "__doc__": cls.__doc__})
    return _MERGED[cls]


# ---------------------------------------------------------------- input checks

def _check_y(y, n_samples):
    if y is None:
        raise ValueError("requires y to be passed, but the target y is None")
    y = np.asarray(y)
    if y.ndim not in (1, 2) or y.shape[0] != n_samples:
        raise ValueError("y has shape %s; expected (%d,) or (%d, n_outputs): one target per sample "
                         "of X" % (y.shape, n_samples, n_samples))
    return y


def _seed(random_state):
    """An int or Generator for Network from random_state (None, int, Generator, RandomState)."""
    if random_state is None or isinstance(random_state, (numbers.Integral, np.random.Generator)):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    raise ValueError("random_state must be None, an int, a numpy Generator or RandomState, got %r"
                     % (random_state,))


# ---------------------------------------------------------------- the shared base

class _MLP:
    _out_activation = _loss = None       # set per problem in _targets

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False,
                 warm_start=False, momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, max_fun=15000, clip=None, target_loss=None, init="glorot", callback=None,
                 diagnostics=False, dropout=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.clip = clip
        self.target_loss = target_loss
        self.init = init
        self.callback = callback
        self.dropout = dropout
        self.diagnostics = diagnostics

    # ------------------------------------------------------------ scikit-learn's conventions
    @classmethod
    def _get_param_names(cls):
        signature = inspect.signature(cls.__init__)
        return sorted(p.name for p in signature.parameters.values() if p.name != "self")

    def get_params(self, deep=True):
        """The estimator's parameters, as given (scikit-learn's convention)."""
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params):
        """Set parameters by name; returns self. Unknown names are an error."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError("Invalid parameter %r for estimator %s. Valid parameters are: %s."
                                 % (name, type(self).__name__, valid))
            setattr(self, name, value)
        return self

    def __repr__(self):
        defaults = {p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()}
        changed = ["%s=%r" % (k, v) for k, v in self.get_params().items()
                   if not (v is defaults[k] or (type(v) is type(defaults[k]) and v == defaults[k]))]
        return "%s(%s)" % (type(self).__name__, ", ".join(changed))

    def __sklearn_is_fitted__(self):
        return hasattr(self, "net_")

    def _check_is_fitted(self):
        if not hasattr(self, "net_"):
            raise _as_sklearn(NotFittedError)("This %s instance is not fitted yet. Call 'fit' with appropriate "
                                 "arguments before using this estimator." % type(self).__name__)

    # ------------------------------------------------------------ fitted attributes
    @property
    def coefs_(self):
        """Per-layer weight matrices in scikit-learn's layout, (n_in, n_out): views of the
        network's weights (net_.weights[l].T)."""
        self._check_is_fitted()
        return [W.T for W in self.net_.weights]

    @property
    def intercepts_(self):
        """Per-layer biases, (n_out,): views of net_.biases."""
        self._check_is_fitted()
        return list(self.net_.biases)

    # ------------------------------------------------------------ fitting
    def _validate_params(self):
        hidden = self.hidden_layer_sizes
        hidden = [hidden] if isinstance(hidden, numbers.Integral) else list(hidden)
        if any(isinstance(h, bool) or not isinstance(h, numbers.Integral) or h < 1 for h in hidden):
            raise ValueError("hidden_layer_sizes must be positive integers, got %r" % (self.hidden_layer_sizes,))
        choice("activation", self.activation, tuple(ACTIVATION_NAMES))
        choice("solver", self.solver, SOLVERS)
        if self.solver == "lbfgs" and self.dropout:
            raise ValueError("dropout needs a stochastic solver ('adam' or 'sgd'), not 'lbfgs'")
        positive_int("max_fun", self.max_fun)
        choice("learning_rate", self.learning_rate, ("constant", "invscaling", "adaptive"))
        if self.batch_size != "auto":
            try:
                positive_int("batch_size", self.batch_size)
            except ValueError:
                raise ValueError("batch_size must be 'auto' or an integer >= 1, got %r" % (self.batch_size,)) from None
        positive_int("max_iter", self.max_iter)
        if not (isinstance(self.n_iter_no_change, float) and self.n_iter_no_change == np.inf):
            positive_int("n_iter_no_change", self.n_iter_no_change)     # (or np.inf: never stop)
        for name in ("alpha", "tol", "power_t"):
            number(name, getattr(self, name))
        return hidden

    def _training_loss(self):
        """The problem's loss, or the squared error for 'lm' and 'br' (with the classifier's
        softmax or sigmoid outputs: MATLAB's patternnet)."""
        needed = RULES[self.solver].loss if self.solver in RULES else None
        return needed or self._loss

    def _optimizer(self):
        if self.solver in FULL_BATCH_RULES:
            return Optimizer(self.solver, lr=self.learning_rate_init)
        if self.solver == "adam":
            return Optimizer("adam", lr=self.learning_rate_init, beta1=self.beta_1, beta2=self.beta_2,
                             epsilon=self.epsilon)
        rule = "sgd" if self.momentum == 0 else "nesterov" if self.nesterovs_momentum else "momentum"
        return Optimizer(rule, lr=self.learning_rate_init, momentum=self.momentum)

    def _schedule(self):
        return {"constant": Schedule, "invscaling": lambda: InverseScaling(self.power_t),
                "adaptive": lambda: ReduceOnPlateau(factor=0.2, patience=2, tol=self.tol)}[self.learning_rate]()

    def _fit(self, X, y, incremental=False, classes=None, sample_weight=None):
        """fit and partial_fit: with the stochastic solvers, BLAS on one thread from the
        input check on, as training.train holds it (training.blas_for: the check's BLAS
        threads kept spinning into the first epochs and slowed them). L-BFGS runs on
        BLAS's threads, as many as the load leaves (_fit_lbfgs)."""
        with contextlib.nullcontext() if self.solver == "lbfgs" else blas_on_one_thread():
            return self._fit_checked(X, y, incremental, classes, sample_weight)

    def _fit_checked(self, X, y, incremental, classes, sample_weight):
        hidden = self._validate_params()
        X_given = X
        if hasattr(self, "net_") and (self.warm_start or incremental):
            self._check_feature_names(X)
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True (as scikit-learn's)")
        if incremental and self.solver == "lbfgs":
            raise ValueError("partial_fit is only available for stochastic optimizers. lbfgs is not stochastic.")
        X = check_array(X)
        y = _check_y(y, X.shape[0])
        sample_weight = check_sample_weight(sample_weight, X.shape[0], np.float64)
        continuing = hasattr(self, "net_") and (self.warm_start or incremental)
        if continuing and X.shape[1] != self.n_features_in_:
            raise ValueError("X has %d features, but %s is expecting %d features as input."
                             % (X.shape[1], type(self).__name__, self.n_features_in_))
        if continuing and not incremental:
            self._check_warm_start(y)
        T = self._targets(y, continuing, classes)
        S = self._class_weights(T, sample_weight, incremental)
        if S is not None and not S.sum() > 0:
            raise ValueError("sample_weight times class_weight: all the sample weights are zero; at least "
                             "one sample must have weight")
        if not continuing:
            self.n_features_in_ = X.shape[1]
            self._check_feature_names(X_given, fitting=True)
            sizes = [X.shape[1]] + hidden + [T.shape[1]]
            draws = _sklearn_draws(self.random_state, sizes, self.activation) if self.init == "sklearn" else None
            self.net_ = Network(sizes, activation=ACTIVATION_NAMES[self.activation], output=self._out_activation,
                                loss=self._training_loss(), init="glorot" if self.init == "sklearn" else self.init,
                                seed=_seed(self.random_state), dtype=X.dtype)
            if self.init == "sklearn":
                self._sklearn_weights(draws)
            self._solver = self._optimizer()
            self._schedule_ = self._schedule()          # its state carries over warm starts
            self.loss_curve_, self.t_, self.n_iter_ = [], 0, 0
            self.history_ = {}
            self.validation_scores_ = [] if self.early_stopping else None
            self.best_validation_score_ = None
            self.validation_loss_curve_ = [] if self.early_stopping else None
        net = self.net_
        X = X.astype(net.dtype, copy=False)
        if S is not None:
            S = S.astype(net.dtype)
        if self.solver == "lbfgs":
            return self._fit_lbfgs(X, T, S)
        batch_size = min(200, X.shape[0]) if self.batch_size == "auto" else min(self.batch_size, X.shape[0])
        if self.solver in FULL_BATCH_RULES:
            batch_size = X.shape[0]                   # (as lbfgs: the whole set at every step)
        mean_weight = 1.0 if S is None else float(S.mean())
        validate = self.early_stopping and not incremental
        patience = None if incremental or self.n_iter_no_change == np.inf else self.n_iter_no_change
        config = RunConfig(
            epochs=1 if incremental else self.max_iter,
            batch_size=None if self.solver in FULL_BATCH_RULES else batch_size,
            shuffle=self.shuffle, l2=0.0 if self.solver == "br" else self.alpha / (batch_size * mean_weight),
            optimizer=self._solver,
            schedule=Continued(self._schedule_, len(self.loss_curve_)), clip=self.clip,
            validation_fraction=self.validation_fraction if validate else None,
            n_iter_no_change=patience, tol=self.tol, target_loss=self.target_loss,
            diagnostics=self.diagnostics, dropout=self.dropout)
        diverged = None
        try:
            history = training.train(net, X, T, config, callback=self._after_epoch, sample_weight=S,
                                     inputs_checked=True)          # (check_array above; once is enough)
        except KeyboardInterrupt as stop:
            if not hasattr(stop, "history"):
                raise                                  # before training began: nothing to keep
            warnings.warn("Training interrupted by user.", stacklevel=3)   # (scikit-learn's words)
            history = dict(stop.history, stopped="interrupted", best_epoch=stop.state.best_epoch)
            if validate and stop.state.best is not None:
                net.restore(stop.state.best)           # as scikit-learn: the best validation epoch's
        except training.TrainingDiverged as error:
            if not validate:
                raise NonFiniteParameters("%s (%s)" % (NON_FINITE, error), error.history) from error
            diverged, history = error, dict(error.history, stopped="diverged")   # as scikit-learn: NaN scores
            history.setdefault("val_loss", []).append(float("nan"))
            history.setdefault(self._validation_key, []).append(float("nan"))
            if error.best is not None:
                net.restore(error.best)                # the best validation epoch's weights
        n = len(history["loss"])
        self.n_iter_ = self.n_iter_ + n if incremental else n      # (per fit call, as scikit-learn)
        self.t_ += n * history["train_samples"]
        self.loss_curve_ += history["loss"]
        for key, values in history.items():
            if isinstance(values, list):
                self.history_.setdefault(key, []).extend(values)
            else:
                self.history_[key] = values
        self.best_loss_ = min(self.loss_curve_) if self.loss_curve_ else None
        if validate and "val_loss" in history:
            self.validation_scores_ += history.get(self._validation_key, [])
            self.validation_loss_curve_ += history["val_loss"]
            finite = [v for v in self.validation_scores_ if np.isfinite(v)]
            self.best_validation_score_ = max(finite) if finite else None
            self.best_loss_ = None
        if diverged is not None:
            warnings.warn("%s: training diverged (%s); kept the best validation epoch's weights. Try a "
                          "smaller learning_rate_init." % (type(self).__name__, diverged),
                          _as_sklearn(ConvergenceWarning), stacklevel=3)
        elif not incremental and history["stopped"] == "epochs":
            warnings.warn("%s: stopped after max_iter=%d epochs while the loss still improved; "
                          "raise max_iter to train further" % (type(self).__name__, self.max_iter),
                          _as_sklearn(ConvergenceWarning), stacklevel=3)
        return self

    # ------------------------------------------------------------ interop
    def to_sklearn(self):
        """This estimator as scikit-learn's, fitted. Needs scikit-learn.

        Returns
        -------
        sklearn.neural_network.MLPClassifier or MLPRegressor
            With this estimator's weights (float64) and the parameters scikit-learn has:
            its predictions equal this estimator's (to 1e-12 for a float64 network).

        Raises
        ------
        ValueError
            For an activation scikit-learn does not have."""
        self._check_is_fitted()
        if {"sigmoid": "logistic"}.get(self.activation, self.activation) not in SKLEARN_ACTIVATIONS:
            raise ValueError("to_sklearn: scikit-learn's MLP has no activation %r (it has %s)"
                             % (self.activation, ", ".join(SKLEARN_ACTIVATIONS)))
        from sklearn import neural_network
        from sklearn.preprocessing import LabelBinarizer
        cls = getattr(neural_network, type(self).__name__)
        known = cls().get_params()
        est = cls(**{k: v for k, v in self.get_params().items() if k in known})
        est.coefs_ = [np.array(W.T, dtype=np.float64) for W in self.net_.weights]
        est.intercepts_ = [np.array(b, dtype=np.float64) for b in self.net_.biases]
        for name in ("n_features_in_", "n_layers_", "n_outputs_", "out_activation_", "n_iter_", "t_"):
            setattr(est, name, getattr(self, name))
        est.loss_curve_, est.best_loss_ = list(self.loss_curve_), self.best_loss_
        est.validation_scores_, est.best_validation_score_ = self.validation_scores_, self.best_validation_score_
        if hasattr(self, "classes_"):
            binarizer = LabelBinarizer()
            binarizer.fit(np.eye(len(self.classes_), dtype=int) if self._kind == "multilabel" else self.classes_)
            est._label_binarizer, est.classes_ = binarizer, binarizer.classes_
        return est

    @classmethod
    def from_sklearn(cls, est):
        """A fastbp estimator from a fitted scikit-learn one.

        Parameters
        ----------
        est : sklearn.neural_network.MLPClassifier or MLPRegressor, fitted

        Returns
        -------
        MLPClassifier or MLPRegressor
            With est's weights and the parameters fastbp has (init and the rest at their
            defaults): it predicts as est does, and fit continues from those weights with
            warm_start."""
        from sklearn.utils.validation import check_is_fitted
        check_is_fitted(est)
        names = cls._get_param_names()
        self = cls(**{k: v for k, v in est.get_params().items() if k in names})
        hidden = {"logistic": "sigmoid"}.get(est.activation, est.activation)
        output = {"logistic": "sigmoid"}.get(est.out_activation_, est.out_activation_)
        if isinstance(self, MLPRegressor):
            loss = self._loss
            self._y_ndim = 1 if est.n_outputs_ == 1 else 2
        else:
            y_type = est._label_binarizer.y_type_
            self._kind = {"multilabel-indicator": "multilabel"}.get(y_type, y_type)
            self.classes_ = np.asarray(est.classes_)
            loss = "cross_entropy" if output == "softmax" else "binary_cross_entropy"
            self._out_activation, self._loss = output, loss
        sizes = [est.coefs_[0].shape[0]] + [W.shape[1] for W in est.coefs_]
        self.net_ = Network(sizes, activation=hidden, output=output, loss=loss, seed=_seed(est.random_state)
                            if not isinstance(est.random_state, np.random.RandomState) else None,
                            dtype=est.coefs_[0].dtype)
        self.net_.weights = [W.T for W in est.coefs_]
        self.net_.biases = list(est.intercepts_)
        for name in ("n_features_in_", "n_layers_", "n_outputs_", "out_activation_", "n_iter_", "t_"):
            setattr(self, name, getattr(est, name))
        self.loss_curve_, self.best_loss_ = list(getattr(est, "loss_curve_", [])), getattr(est, "best_loss_", None)
        self.validation_scores_ = getattr(est, "validation_scores_", None)
        self.best_validation_score_ = getattr(est, "best_validation_score_", None)
        self.validation_loss_curve_ = None
        self.history_ = {"loss": list(self.loss_curve_)}
        self._solver = self._optimizer()
        self._schedule_ = self._schedule()
        return self

    def _fit_lbfgs(self, X, T, S=None):
        """solver='lbfgs', as scikit-learn's: scipy.optimize.minimize(method='L-BFGS-B',
        jac=True) on the full-batch mean loss plus alpha / (2 n) times the squared weights
        (with sample weights: the weighted mean, and n their sum), the loss and its
        gradient from the compiled batched kernels. Both its products and L-BFGS-B's own
        run on BLAS's threads, from each call of the objective to the next as many as the
        load leaves (threads.blas_following_the_load): beside one busy process, two
        threads took 1.9-2.0x as long as one, idle 0.64-0.66x."""
        import scipy.optimize
        net = self.net_
        T = net.check_targets(T, X.shape[0])              # (X: checked in _fit_checked, in net's dtype)
        total = None if S is None else float(S.sum())
        l2 = self.alpha / (X.shape[0] if S is None else total)
        n_w, _ = net.n_parameters

        def objective(theta):
            follow(X.shape[0] * n_w)                      # (BLAS's threads, to the next call: those the load leaves)
            net.restore((theta[:n_w], theta[n_w:]))
            A, D = net.backprop(X, T, "delta", sample_weight=S)         # (on the network's backend)
            dW, db = net.pass_gradients(X, A, D, total=total)
            w = theta[:n_w]
            # (methods.dot: SciPy's BLAS, which the kernels call; NumPy's np.dot calls its own
            # copy, whose two threads then spun on the CPUs the kernels' products needed: 2.4x the fit)
            loss = mean_loss(net.loss_name, A[-1], T, S) + 0.5 * l2 * dot(w, w)
            grad = np.concatenate([g.ravel() for g in dW] + [g.ravel() for g in db]).astype(np.float64)
            grad[:n_w] += l2 * w
            return loss, grad

        with blas_following_the_load() as follow:
            result = scipy.optimize.minimize(objective, np.concatenate(net.snapshot()).astype(np.float64),
                                             method="L-BFGS-B", jac=True,
                                             options={"maxfun": self.max_fun, "maxiter": self.max_iter,
                                                      "gtol": self.tol})
        if not np.all(np.isfinite(result.x)):
            raise NonFiniteParameters(NON_FINITE + " (lbfgs)", {})
        net.restore((result.x[:n_w], result.x[n_w:]))
        self.n_iter_, self.loss_ = int(result.nit), float(result.fun)
        self.best_loss_ = None
        if result.status != 0:
            warnings.warn("%s: lbfgs failed to converge after %d iterations (%s); raise max_iter or max_fun"
                          % (type(self).__name__, result.nit, result.message), _as_sklearn(ConvergenceWarning),
                          stacklevel=3)
        return self

    def _check_warm_start(self, y):
        pass

    def _sklearn_weights(self, draws):
        self.net_.weights = [W.T for W, _ in draws]
        self.net_.biases = [b for _, b in draws]

    def _after_epoch(self, net, history):
        if self.verbose:
            print("Iteration %d, loss = %.8f" % (self.n_iter_ + len(history["loss"]), history["loss"][-1]))
        if self.callback is not None:
            self.callback(net, history)

    def fit(self, X, y, sample_weight=None):
        """Train on (X, y) for up to max_iter epochs (a fresh network unless warm_start).

        Parameters
        ----------
        X : array-like or scipy sparse matrix, shape (n_samples, n_features)
            The inputs; float32 trains in float32, anything else in float64.
        y : array-like, shape (n_samples,) or (n_samples, n_outputs)
            Labels (the classifier; or a 0/1 indicator matrix) or targets (the regressor).
        sample_weight : array-like of shape (n_samples,) or None
            One weight >= 0 per sample (help(fastbp.estimators)).

        Returns
        -------
        self

        Raises
        ------
        ValueError
            For a bad parameter or input (wrong shape, NaN or inf, labels that do not fit),
            before anything changes.
        NonFiniteParameters
            A ValueError and a fastbp.TrainingDiverged: the weights stopped being finite,
            and the last good ones are kept (with early_stopping, the run ends instead,
            with the best validation epoch's weights)."""
        return self._fit(X, y, sample_weight=sample_weight)

    def _predict_outputs(self, X):
        self._check_is_fitted()
        self._check_feature_names(X)
        X = check_array(X, dtype=self.net_.dtype, finite=False)    # (NaN and inf: outputs tests them)
        if X.shape[1] != self.n_features_in_:
            raise ValueError("X has %d features, but %s is expecting %d features as input."
                             % (X.shape[1], type(self).__name__, self.n_features_in_))
        return self.net_.outputs(X, name="X")

    def _check_feature_names(self, X, fitting=False):
        """feature_names_in_ from a data frame's string column names (fit), and the check
        that later data frames have the same (as scikit-learn's)."""
        names = _feature_names(X)
        if fitting:
            if names is not None:
                self.feature_names_in_ = names
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            return
        fitted = getattr(self, "feature_names_in_", None)
        if names is None and fitted is not None and hasattr(X, "shape"):
            warnings.warn("X does not have valid feature names, but %s was fitted with feature names"
                          % type(self).__name__, UserWarning, stacklevel=3)
        elif names is not None and fitted is None:
            warnings.warn("X has feature names, but %s was fitted without feature names"
                          % type(self).__name__, UserWarning, stacklevel=3)
        elif names is not None and (len(names) != len(fitted) or np.any(names != fitted)):
            raise ValueError("The feature names should match those that were passed during fit: got %s, "
                             "fitted with %s" % (list(names)[:10], list(fitted)[:10]))

    def __sklearn_tags__(self):
        from sklearn.utils import ClassifierTags, InputTags, RegressorTags, Tags, TargetTags
        classifier = isinstance(self, MLPClassifier)
        return Tags(estimator_type="classifier" if classifier else "regressor",
                    target_tags=TargetTags(required=True, multi_output=True,
                                           single_output=True),
                    classifier_tags=ClassifierTags(multi_class=True, multi_label=True) if classifier else None,
                    regressor_tags=None if classifier else RegressorTags(),
                    input_tags=InputTags(two_d_array=True, sparse=True))


# The estimators' parameters, written once for both docstrings (numpydoc, as scikit-learn's).
_PARAMETERS = """hidden_layer_sizes : tuple of int, default (100,)
        The units of each hidden layer.
    activation : str, default 'relu'
        The hidden layers' activation: scikit-learn's 'identity', 'logistic', 'tanh',
        'relu', or fastbp's 'silu', 'leaky_relu', 'elu', 'softplus', 'gelu', 'hard_sigmoid'.
%(loss)s    solver : str, default 'adam'
        'adam', 'sgd' or 'lbfgs' (scikit-learn's), or fastbp's full-batch 'rprop',
        'irprop+', 'lm', 'br', 'scg' (help(fastbp.methods)).
    alpha : float, default 1e-4
        L2 penalty, scikit-learn's scale (help(fastbp.estimators)); not used by 'br'.
    batch_size : int or 'auto', default 'auto'
        Samples a step: 'auto' is min(200, n_samples); ignored by the full-batch solvers.
    learning_rate : str, default 'constant'
        'constant', 'invscaling' (divided by (1 + epoch) ** power_t) or 'adaptive' (divided
        by 5 after 2 epochs without improvement).
    learning_rate_init : float, default 0.001
        The first learning rate ('rprop', 'irprop+': the first step size).
    power_t : float, default 0.5
        The exponent of 'invscaling'.
    max_iter : int, default 200
        Epochs at most (lbfgs: iterations).
    shuffle : bool, default True
        Whether each epoch visits the samples in a new order.
    random_state : int, RandomState, Generator or None, default None
        Seeds the initial weights, the orders and the validation split.
    tol : float, default 1e-4
        The improvement that n_iter_no_change waits for.
    verbose : bool, default False
        Print each epoch's loss.
    warm_start : bool, default False
        Continue from the last fit's weights.
    momentum : float, default 0.9
        The momentum of solver 'sgd'.
    nesterovs_momentum : bool, default True
        Nesterov's momentum with solver 'sgd'.
    early_stopping : bool, default False
        Hold out validation_fraction of the data and stop when its loss stops improving,
        with the best epoch's weights.
    validation_fraction : float, default 0.1
        The held-out share with early_stopping.
    beta_1, beta_2, epsilon : float, default 0.9, 0.999, 1e-8
        Adam's.
    n_iter_no_change : int, default 10
        Epochs without an improvement of tol before stopping.
    max_fun : int, default 15000
        lbfgs's limit on loss evaluations.
%(class_weight)s    clip : float or None, default None
        Caps each step's gradient norm (all layers together).
    target_loss : float or None, default None
        Stop once an epoch's training loss is below it.
    init : str, default 'glorot'
        The initial weights (fastbp.INITIALISERS), or 'sklearn' for scikit-learn's draws.
    callback : callable or None, default None
        Called as callback(net, history) after every epoch.
    diagnostics : bool, default False
        True adds each epoch's training accuracy, mean abs error term and gradient norm per
        layer, on up to 2048 training samples, to history_.
    dropout : float, sequence of float or None, default None
        Inverted dropout while fitting: a rate, or one per hidden layer (stochastic
        solvers only)."""

_ATTRIBUTES = """net_ : fastbp.Network
        The network, trained.
    coefs_, intercepts_ : list of ndarray
        The weights and biases, scikit-learn's shapes (n_in, n_out) and (n_out,).
    n_features_in_, n_outputs_, n_layers_ : int
        Inputs, outputs, and layers counting the input and output layers.
    out_activation_ : str
        The output layer's activation.
    loss_curve_ : list of float
        Each epoch's mean training loss; best_loss_ is its lowest.
    n_iter_, t_ : int
        Epochs run, and samples seen.
    history_ : dict
        The per-epoch history (Network.train's).
    validation_scores_, best_validation_score_ : list of float, float
        With early_stopping: each epoch's %(score)s on the held-out data, and the best."""


def _shared(arguments):
    """A subclass's __init__ arguments less its own: what _MLP.__init__ takes. (scikit-learn
    reads an estimator's parameters from its __init__'s signature, so each subclass spells
    out all of them.)"""
    names = inspect.signature(_MLP.__init__).parameters
    return {k: v for k, v in arguments.items() if k in names and k != "self"}


class MLPClassifier(_MLP):
    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001, power_t=0.5,
                 max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False,
                 warm_start=False, momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, max_fun=15000, class_weight=None, clip=None, target_loss=None,
                 init="glorot", callback=None, diagnostics=False, dropout=None):
        _MLP.__init__(self, **_shared(locals()))
        self.class_weight = class_weight

    def _check_warm_start(self, y):
        """A warm start must see the classes of the fit it continues (scikit-learn's rule
        and words)."""
        if self._kind == "multilabel":
            return
        found = _encode(y.ravel(), [])[0]
        if len(found) != len(self.classes_) or not np.all(found == self.classes_):
            raise ValueError("warm_start can only be used where `y` has the same classes as in the previous "
                             "call to fit. Previously got %s, `y` has %s" % (self.classes_, found))

    def _class_weights(self, T, sample_weight, incremental):
        """sample_weight (or None) times each row's class weight (class_weight)."""
        if self.class_weight is None:
            return sample_weight
        if self._kind == "multilabel":
            raise ValueError("class_weight is for single-label targets; y is a multi-label indicator "
                             "matrix (give per-sample weights as sample_weight)")
        index = T[:, 0].astype(np.int64) if self._kind == "binary" else T.argmax(axis=1)
        n = len(self.classes_)
        s = np.ones(T.shape[0]) if sample_weight is None else sample_weight.astype(np.float64)
        if isinstance(self.class_weight, str) and self.class_weight == "balanced":
            if incremental:
                raise ValueError("class_weight 'balanced' is not supported for partial_fit: the classes' "
                                 "frequencies of one call are not those of the data (as scikit-learn's "
                                 "SGDClassifier); give a dict of weights")
            counts = np.bincount(index, weights=s, minlength=n)
            per_class = np.where(counts > 0, s.sum() / (n * np.where(counts > 0, counts, 1.0)), 1.0)
        elif isinstance(self.class_weight, dict):
            per_class = np.ones(n)
            position = {c: i for i, c in enumerate(self.classes_.tolist())}
            for c, w in self.class_weight.items():
                if c not in position:
                    raise ValueError("class_weight names the class %r, which is not among the classes %s"
                                     % (c, list(self.classes_)))
                per_class[position[c]] = number("class_weight[%r]" % (c,), w)      # finite, >= 0
        else:
            raise ValueError("class_weight must be None, 'balanced' or a dict {class: weight}, got %r"
                             % (self.class_weight,))
        return s * per_class[index]

    def _targets(self, y, continuing, classes):
        """One-hot (or 0/1, or indicator) targets for the labels y; the first fit sets
        classes_ and the output layer."""
        if y.ndim == 2 and y.shape[1] > 1:                           # multi-label indicators
            if not np.isin(y, (0, 1)).all():
                raise ValueError("Unknown label type: a 2-D y must be a 0/1 indicator matrix "
                                 "(multi-label)")
            kind, labels, index = "multilabel", np.arange(y.shape[1]), None
        else:
            y = y.ravel()
            if y.dtype.kind == "f" and not np.all(y == np.round(y)):
                raise ValueError("Unknown label type: continuous. MLPClassifier needs class labels; "
                                 "for continuous targets use MLPRegressor")
            known = self.classes_ if continuing else (y if classes is None else classes)
            labels, index = _encode(known, y)
            if index is None:
                raise ValueError("y has labels %s that are not among the classes %s"
                                 % (_unseen(y, labels), list(labels)))
            kind = "binary" if len(labels) <= 2 else "multiclass"
        if continuing:
            if kind != self._kind or (kind == "multilabel" and len(labels) != len(self.classes_)):
                raise ValueError("y is %s with %d labels; the first fit was %s with %d"
                                 % (kind, len(labels), self._kind, len(self.classes_)))
        else:
            if len(labels) < 2:
                raise ValueError("MLPClassifier needs samples of at least 2 classes; y has one "
                                 "class: %r" % (labels[0],))
            self.classes_, self._kind = labels, kind
            self.n_outputs_ = 1 if kind == "binary" else len(labels)
            self.out_activation_ = "softmax" if kind == "multiclass" else "logistic"
            self._out_activation = "softmax" if kind == "multiclass" else "sigmoid"
            self._loss = "cross_entropy" if kind == "multiclass" else "binary_cross_entropy"
            self.n_layers_ = len(self._validate_params()) + 2
        if kind == "multilabel":
            return y.astype(np.float64)
        if kind == "binary":
            return index[:, None].astype(np.float64)
        return np.eye(len(labels))[index]

    @_unless_lbfgs
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch over (X, y), continuing the training so far.

        Parameters
        ----------
        X, y, sample_weight
            As fit's.
        classes : array-like or None
            Every label that any call will see; needed on the first call (as
            scikit-learn's).

        Returns
        -------
        self"""
        if not hasattr(self, "net_") and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        if hasattr(self, "net_") and classes is not None and self._kind != "multilabel":
            given = _encode(classes, [])[0]
            if len(given) != len(self.classes_) or not np.all(given == self.classes_):
                raise ValueError("`classes=%r` is not the same as on last call to partial_fit, was: %r"
                                 % (classes, self.classes_))
        return self._fit(X, y, incremental=True, classes=classes, sample_weight=sample_weight)

    def predict_proba(self, X):
        """Class probabilities.

        Parameters
        ----------
        X : array-like or scipy sparse matrix, shape (n_samples, n_features)

        Returns
        -------
        ndarray, shape (n_samples, n_classes)
            In the order of classes_."""
        O = self._predict_outputs(X)
        if self._kind == "binary":
            return np.hstack([1.0 - O, O])
        return O

    def predict_log_proba(self, X):
        """The logarithms of predict_proba(X) (probabilities below the dtype's smallest
        normal number read as that number)."""
        return np.log(np.clip(self.predict_proba(X), np.finfo(self.net_.dtype).tiny, None))

    def predict(self, X):
        """Predicted labels.

        Parameters
        ----------
        X : array-like or scipy sparse matrix, shape (n_samples, n_features)

        Returns
        -------
        ndarray, shape (n_samples,) or (n_samples, n_labels)
            classes_[argmax of the probabilities]; 0/1 indicators for multi-label."""
        O = self._predict_outputs(X)
        if self._kind == "multilabel":
            return (O > 0.5).astype(np.int64)
        if self._kind == "binary":
            return self.classes_[(O[:, 0] > 0.5).astype(np.int64)]
        return self.classes_[O.argmax(axis=1)]

    def score(self, X, y):
        """Mean accuracy on (X, y).

        Parameters
        ----------
        X : array-like or scipy sparse matrix, shape (n_samples, n_features)
        y : array-like
            The true labels (or 0/1 indicators).

        Returns
        -------
        float
            The fraction of samples predicted right (multi-label: of rows entirely right)."""
        y = np.asarray(y)
        predicted = self.predict(X)
        if self._kind == "multilabel":
            return float(np.mean(np.all(predicted == y, axis=1)))
        return float(np.mean(predicted == y.ravel()))

    _validation_key = "val_accuracy"


class MLPRegressor(_MLP):
    LOSSES = {"squared_error": ("identity", "mse"), "poisson": ("exp", "poisson")}

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, loss="squared_error", solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate="constant", learning_rate_init=0.001,
                 power_t=0.5, max_iter=200, shuffle=True, random_state=None, tol=1e-4, verbose=False,
                 warm_start=False, momentum=0.9, nesterovs_momentum=True, early_stopping=False,
                 validation_fraction=0.1, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                 n_iter_no_change=10, max_fun=15000, clip=None, target_loss=None, init="glorot", callback=None,
                 diagnostics=False, dropout=None):
        _MLP.__init__(self, **_shared(locals()))
        self.loss = loss

    @property
    def _out_activation(self):
        return self.LOSSES[choice("loss", self.loss, tuple(self.LOSSES))][0]

    @property
    def _loss(self):
        return self.LOSSES[choice("loss", self.loss, tuple(self.LOSSES))][1]

    def _targets(self, y, continuing, classes):
        if y.dtype.kind not in "biuf":
            try:
                y = y.astype(np.float64)
            except (TypeError, ValueError) as error:
                raise ValueError("y must hold numbers for a regressor: %s" % error) from error
        T = y.reshape(len(y), -1)
        if T.dtype.kind != "f":              # (float targets keep their dtype: the network casts them once)
            T = T.astype(np.float64)
        if not np.isfinite(T).all():
            raise ValueError("y contains NaN or inf")
        if continuing and T.shape[1] != self.n_outputs_:
            raise ValueError("y has %d outputs; the first fit had %d" % (T.shape[1], self.n_outputs_))
        if self._loss == "poisson" and T.min() < 0:
            raise ValueError("Some value(s) of y are negative which is not allowed for Poisson regression.")
        if not continuing:
            self.n_outputs_, self._y_ndim = T.shape[1], y.ndim
            self.out_activation_ = self._out_activation
            self.n_layers_ = len(self._validate_params()) + 2
        return T

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing the training so far.

        Parameters
        ----------
        X, y, sample_weight
            As fit's.

        Returns
        -------
        self"""
        return self._fit(X, y, incremental=True, sample_weight=sample_weight)

    def _class_weights(self, T, sample_weight, incremental):
        return sample_weight

    def predict(self, X):
        """Predicted targets.

        Parameters
        ----------
        X : array-like or scipy sparse matrix, shape (n_samples, n_features)

        Returns
        -------
        ndarray, shape (n_samples,) or (n_samples, n_outputs)
            As y was in fit."""
        O = self._predict_outputs(X)
        return O[:, 0] if self._y_ndim == 1 else O

    def score(self, X, y):
        """The coefficient of determination on (X, y).

        Parameters
        ----------
        X : array-like or scipy sparse matrix, shape (n_samples, n_features)
        y : array-like
            The true targets.

        Returns
        -------
        float
            R^2, averaged over the outputs."""
        return r2(np.asarray(y, dtype=np.float64).reshape(len(y), -1), self.predict(X).reshape(len(y), -1))

    _validation_key = "val_r2"


def _feature_names(X):
    """A data frame's column names when they are all strings (scikit-learn's rule), else None."""
    columns = getattr(X, "columns", None)
    if columns is None or hasattr(X, "toarray"):
        return None
    names = np.asarray(list(columns), dtype=object)
    return names if len(names) and all(isinstance(n, str) for n in names) else None


def _sklearn_draws(random_state, sizes, activation):
    """scikit-learn's starting weights and biases, drawn as it draws them: layer by layer,
    (fan_in, fan_out) weights then fan_out biases, uniform in +-sqrt(factor / (fan_in +
    fan_out)) with factor 2 for logistic hidden layers and 6 otherwise, from
    check_random_state(random_state) (a RandomState: an instance given is drawn from)."""
    if isinstance(random_state, np.random.RandomState):
        rs = random_state
    elif random_state is None or isinstance(random_state, numbers.Integral):
        rs = np.random.RandomState(random_state)
    else:
        raise ValueError("init='sklearn' draws as scikit-learn does, from a RandomState: give "
                         "random_state as None, an int or a RandomState, not %r" % (random_state,))
    factor = 2.0 if activation == "logistic" else 6.0
    draws = []
    for n_in, n_out in zip(sizes, sizes[1:]):
        bound = np.sqrt(factor / (n_in + n_out))
        draws.append((rs.uniform(-bound, bound, (n_in, n_out)), rs.uniform(-bound, bound, n_out)))
    return draws


def _encode(labels, y):
    """(sorted unique labels, index of each y in them or None if some y is not there)."""
    labels = np.asarray(labels)
    try:
        classes = np.unique(labels)
    except TypeError:                  # unsortable mixed types: order of first appearance
        classes = np.array(list(dict.fromkeys(labels.tolist())), dtype=object)
    lookup = {value: i for i, value in enumerate(classes.tolist())}
    try:
        index = np.array([lookup[value] for value in np.asarray(y).tolist()], dtype=np.int64)
    except KeyError:
        return classes, None
    return classes, index


def _unseen(y, classes):
    known = set(np.asarray(classes).tolist())
    return sorted({v for v in np.asarray(y).ravel().tolist() if v not in known}, key=repr)[:5]

MLPClassifier.__doc__ = """A multi-layer perceptron classifier, scikit-learn style, trained by fastbp.

    y holds labels of any hashable type (1-D), or is a 2-D 0/1 indicator matrix
    (multi-label). Several classes: softmax outputs and cross-entropy; two: one sigmoid
    output and log-loss; multi-label: one sigmoid output per label. The parameters are
    scikit-learn's MLPClassifier's, and its defaults, plus fastbp's; each difference from
    scikit-learn is named in help(fastbp.estimators).

    Parameters
    ----------
    %s

    Attributes
    ----------
    classes_ : ndarray
        The labels, sorted (the columns of predict_proba).
    %s
    """ % (_PARAMETERS % {"loss": "", "class_weight": """    class_weight : None, 'balanced' or dict, default None
        Each sample's weight is times its class's; 'balanced' gives class c the weight
        total weight / (n_classes * weight of class c), as scikit-learn's
        compute_class_weight.
"""}, _ATTRIBUTES % {"score": "accuracy"})

MLPRegressor.__doc__ = """A multi-layer perceptron regressor, scikit-learn style, trained by fastbp.

    y is 1-D or (n_samples, n_outputs). The parameters are scikit-learn's MLPRegressor's,
    and its defaults, plus fastbp's; each difference from scikit-learn is named in
    help(fastbp.estimators).

    Parameters
    ----------
    %s

    Attributes
    ----------
    %s
    """ % (_PARAMETERS % {"class_weight": "", "loss": """    loss : str, default 'squared_error'
        'squared_error' (identity outputs, per sample 1/2 the summed squared error) or
        'poisson' (exp outputs, half the Poisson deviance, as scikit-learn 1.7's; y >= 0).
"""}, _ATTRIBUTES % {"score": "R^2"})
