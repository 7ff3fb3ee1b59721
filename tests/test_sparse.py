"""Sparse (scipy CSR) inputs: the kernels that read CSR rows agree with the reference on the
same rows dense, in every mode and dtype; no call densifies the whole set; the estimators
fit, partial_fit and predict sparse X as they do dense X; bad sparse input is an error."""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import make_problem

import fastbp
from fastbp.cases import DTYPES, MODES, NETWORKS, TOLERANCE, case_id


def sparse_problem(spec, m=43, seed=7, dtype="float64", density=0.3, **kwargs):
    net, X, T = make_problem(*spec, m, seed=seed, dtype=dtype, **kwargs)
    X = X * (np.random.default_rng(seed).random(X.shape) < density)     # mostly zeros
    return net, X, sp.csr_matrix(X), T


def max_difference(a, b):
    return max(np.abs(x - y).max() for x, y in zip(a.weights + (a.biases or []), b.weights + (b.biases or [])))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("spec", NETWORKS, ids=case_id)
def test_sparse_training_agrees_with_the_reference(spec, mode, dtype):
    lr = 0.2 if max(spec[0]) < 100 else 0.02
    for bias, propagate, l2, weighted in [(True, "delta", 0.0, False), (False, "error", 0.01, True)]:
        runs = []
        for sparse, backend in ((False, "numpy"), (True, "numba"), (True, "numpy")):
            net, X, Xs, T = sparse_problem(spec, dtype=dtype, bias=bias, propagate=propagate)
            s = np.arange(X.shape[0]) % 4 * 0.5 if weighted else None
            history = net.train(Xs if sparse else X, T, epochs=3, lr=lr, batch_size=MODES[mode], l2=l2,
                                sample_weight=s, backend=backend)
            runs.append((net, history))
        (ref, h_ref), *others = runs
        for net, history in others:
            assert max_difference(ref, net) < TOLERANCE[dtype]
            np.testing.assert_allclose(history["loss"], h_ref["loss"], rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])
        assert max_difference(ref, sparse_problem(spec, dtype=dtype, bias=bias)[0]) > 1e-3


@pytest.mark.parametrize("batch_size", [1, 5])
def test_a_strong_decay_rescales_the_first_layer_and_still_agrees(batch_size):
    """lr * l2 = 0.5: the per-sample kernel's scale halves at every step and is folded back
    into the weights every 20 steps (kernels.RESCALE_BELOW)."""
    spec = NETWORKS[1]
    runs = []
    for sparse in (False, True):
        net, X, Xs, T = sparse_problem(spec, m=97)
        net.train(Xs if sparse else X, T, epochs=2, lr=0.1, l2=5.0, batch_size=batch_size,
                  backend="numba" if sparse else "numpy")
        runs.append(net)
    assert max_difference(*runs) < 1e-10


@pytest.mark.parametrize("indices", [np.int32, np.int64])
def test_inference_and_gradients_read_sparse_rows(indices):
    spec = NETWORKS[1]
    net, X, Xs, T = sparse_problem(spec)
    Xs.indices, Xs.indptr = Xs.indices.astype(indices), Xs.indptr.astype(indices)
    for backend in ("numba", "numpy"):
        np.testing.assert_allclose(net.predict(Xs, backend=backend), net.predict(X), rtol=1e-12, atol=1e-14)
        for got, want in zip(net.gradients(Xs, T, backend=backend)[0], net.gradients(X, T)[0]):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)
        for got, want in zip(net.deltas(Xs, T, backend=backend), net.deltas(X, T)):
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)
    assert net.loss(sp.csr_array(X), T) == pytest.approx(net.loss(X, T), rel=1e-12)


def test_the_compiled_paths_never_densify_the_set(monkeypatch):
    spec = NETWORKS[1]
    net, X, Xs, T = sparse_problem(spec, m=120)

    def refuse(*args, **kwargs):
        raise AssertionError("a compiled path densified sparse X")
    for name in ("toarray", "todense"):
        monkeypatch.setattr(sp.csr_matrix, name, refuse)
    for batch_size in (1, 8, None):
        net.train(Xs, T, epochs=1, batch_size=batch_size, validation_fraction=0.2, diagnostics=True)
    net.predict(Xs)
    net.gradients(Xs, T)
    clf = fastbp.MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, solver="lbfgs")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(Xs, T.argmax(axis=1))
    clf.predict_proba(Xs)


@pytest.mark.parametrize("solver", ["adam", "sgd", "lbfgs"])
def test_estimators_fit_sparse_as_dense(solver):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 30)) * (rng.random((80, 30)) < 0.2)
    y = (X[:, :5].sum(axis=1) > 0).astype(int) + (X[:, 5:10].sum(axis=1) > 0)
    settings = dict(hidden_layer_sizes=(7,), solver=solver, max_iter=6, random_state=0, batch_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fmt in (sp.csr_matrix, sp.csc_matrix, sp.csr_array, sp.coo_matrix):
            dense = fastbp.MLPClassifier(**settings).fit(X, y)
            sparse = fastbp.MLPClassifier(**settings).fit(fmt(X), y)
            np.testing.assert_allclose(sparse.predict_proba(fmt(X)), dense.predict_proba(X), rtol=1e-9, atol=1e-12)
        if solver != "lbfgs":
            for est, data in ((dense, X), (sparse, sp.csr_matrix(X))):
                est.partial_fit(data, y)
            np.testing.assert_allclose(sparse.predict_proba(X), dense.predict_proba(X), rtol=1e-9, atol=1e-12)
        reg = fastbp.MLPRegressor(**settings).fit(sp.csr_matrix(X), X[:, 0])
        np.testing.assert_allclose(reg.predict(sp.csr_matrix(X)), reg.predict(X), rtol=1e-12, atol=1e-12)


def test_bad_sparse_inputs_are_clear_errors():
    net = fastbp.Network([5, 3, 2], seed=0)
    T = np.zeros((1, 2))
    hostile = sp.csr_matrix((np.ones(1), np.array([100]), np.array([0, 1])), shape=(1, 5))
    with pytest.raises(ValueError, match="not a valid CSR matrix: indices must be < 5"):
        net.train(hostile, T)
    with pytest.raises(ValueError, match=r"NaN or inf \(first in row 2\)"):
        net.predict(sp.csr_matrix(np.array([[1.0, 0, 0, 0, 0], [0] * 5, [0, 0, np.nan, 0, 0]])))
    with pytest.raises(ValueError, match="shape"):
        net.predict(sp.csr_matrix(np.ones((2, 4))))
    with pytest.raises(ValueError, match="NaN or inf"):
        fastbp.MLPClassifier().fit(sp.csr_matrix(np.array([[np.inf, 1.0], [0, 1]])), [0, 1])
    with pytest.raises(ValueError, match="not supported"):
        fastbp.MLPClassifier().fit(sp.csr_matrix(np.array([[1j, 1.0], [0, 1]])), [0, 1])


def test_distributed_refuses_sparse_inputs_and_sample_weights_clearly():
    from fastbp import distributed
    net, X, Xs, T = sparse_problem(NETWORKS[1])
    with pytest.raises(TypeError, match="sparse X is not supported yet"):
        distributed.train(net, Xs, T, client="tcp://127.0.0.1:1")
    with pytest.raises(TypeError, match="takes no sample_weight"):
        distributed.train(net, X, T, client="tcp://127.0.0.1:1", sample_weight=np.ones(len(X)))
