"""Dropout and input noise: drawn from the network's generator (the agreement tests hold
the kernels' draws to the reference's at 1e-10), training only, reproducible whatever the
threads, and every bad setting a clear error."""
import numpy as np
import pytest
import scipy.sparse

import fastbp
from fastbp import reference
from fastbp.cases import problem


def test_masks_drop_at_the_rate_and_scale_the_kept_units():
    rng = np.random.default_rng(0)
    masks = reference.dropout_masks(rng, 4000, [5, 30, 20, 3], [0.25, 0.0], np.float64)
    assert masks[1] is None and masks[0].shape == (4000, 30)
    assert set(np.unique(masks[0])) == {0.0, 1.0 / 0.75}
    assert abs((masks[0] == 0).mean() - 0.25) < 0.01          # 120,000 draws: within 0.4%


def test_dropout_and_noise_are_training_only_and_change_training():
    net, X, T = problem([6, 8, 3], "relu", "softmax", "cross_entropy", 60, seed=1)
    plain, _, _ = problem([6, 8, 3], "relu", "softmax", "cross_entropy", 60, seed=1)
    net.train(X, T, epochs=2, lr=0.1, batch_size=10, dropout=0.5, input_noise=0.3)
    plain.train(X, T, epochs=2, lr=0.1, batch_size=10)
    assert max(np.abs(a - b).max() for a, b in zip(net.weights, plain.weights)) > 1e-3
    state = net.rng.bit_generator.state
    first = net.predict(X)
    np.testing.assert_array_equal(net.predict(X), first)                    # no masks in inference
    assert net.rng.bit_generator.state == state
    np.testing.assert_allclose(first, reference.forward(*net._params(), net.activations, X)[-1], rtol=1e-12)


def test_a_seed_reproduces_dropout_bit_for_bit_whatever_the_threads():
    weights = []
    for threads in (1, 2, 1):
        net, X, T = problem([40, 64, 32, 4], ["relu", "tanh"], "softmax", "cross_entropy", 256, seed=4)
        opt = fastbp.Optimizer("adam", lr=0.01).bind(net)
        T = net.check_targets(T, X.shape[0])
        for _ in range(2):
            net.train_epoch(net.check_inputs(X), T, net.rng.permutation(256), 64, 0.01, 0.0, opt, threads=threads,
                            dropout=[0.3, 0.1], input_noise=0.2)
        weights.append(np.concatenate([w.ravel() for w in net.weights]))
    np.testing.assert_array_equal(weights[0], weights[1])
    np.testing.assert_array_equal(weights[0], weights[2])


@pytest.mark.parametrize("settings, message", [
    (dict(dropout=[0.2, 0.2]), "dropout gives 2 rates, but the network \\[6, 8, 3\\] has 1 hidden layers"),
    (dict(dropout=1.0), "dropout must be a finite number >= 0 and < 1, got 1.0"),
    (dict(dropout=-0.1), "dropout must be a finite number >= 0"),
    (dict(dropout=[float("nan")]), "dropout must be a finite number"),
    (dict(input_noise=-1.0), "input_noise must be a finite number >= 0"),
])
def test_bad_settings_are_clear_errors_that_change_nothing(settings, message):
    net, X, T = problem([6, 8, 3], "relu", "softmax", "cross_entropy", 20, seed=1)
    before, state = [w.copy() for w in net.weights], net.rng.bit_generator.state
    with pytest.raises(ValueError, match=message):
        net.train(X, T, epochs=1, **settings)
    assert all(np.array_equal(a, b) for a, b in zip(net.weights, before)) and net.rng.bit_generator.state == state


def test_every_rate_is_checked_where_the_kernels_take_them():
    net, X, T = problem([6, 8, 8, 3], "relu", "softmax", "cross_entropy", 20, seed=1)
    with pytest.raises(ValueError, match="dropout must be a finite number >= 0 and < 1, got 1.5"):
        net.dropout_rates([0.2, 1.5])
    assert net.dropout_rates(None) == [0.0, 0.0] and net.dropout_rates(0.5) == [0.5, 0.5]


def test_combinations_that_cannot_work_are_refused():
    net, X, T = problem([6, 8, 3], "relu", "softmax", "cross_entropy", 20, seed=1, propagate="error")
    with pytest.raises(ValueError, match="dropout needs propagate='delta'"):
        net.train(X, T, dropout=0.2)
    net, X, T = problem([6, 8, 3], "relu", "softmax", "cross_entropy", 20, seed=1)
    with pytest.raises(ValueError, match="input_noise needs dense X"):
        net.train(scipy.sparse.csr_matrix(X), T, input_noise=0.1)
    net.train(scipy.sparse.csr_matrix(X), T, dropout=0.2, batch_size=5)      # dropout is fine with CSR
    from fastbp.estimators import MLPClassifier
    with pytest.raises(ValueError, match="dropout needs a stochastic solver"):
        MLPClassifier(solver="lbfgs", dropout=0.2).fit(X, T.argmax(axis=1))


def test_dask_training_refuses_them_before_starting_anything():
    from fastbp import distributed  # (imports no Dask until a cluster is needed)
    net, X, T = problem([6, 8, 3], "relu", "softmax", "cross_entropy", 20, seed=1)
    for settings in (dict(dropout=0.2), dict(input_noise=0.1)):
        with pytest.raises(ValueError, match="is not supported yet"):
            distributed.train(net, X, T, **settings)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_the_estimators_take_dropout():
    from fastbp.estimators import MLPRegressor
    X, y = np.random.default_rng(0).normal(size=(80, 4)), np.random.default_rng(1).normal(size=80)
    fits = [MLPRegressor((16,), max_iter=3, random_state=0, dropout=d).fit(X, y) for d in (None, 0.3, 0.3)]
    assert not np.array_equal(fits[0].coefs_[0], fits[1].coefs_[0])
    np.testing.assert_array_equal(fits[1].coefs_[0], fits[2].coefs_[0])       # the same seed, the same masks
    assert fits[1].get_params()["dropout"] == 0.3


def test_the_dropout_experiment_reports_both_arms():
    """fastbp.experiments.dropout_fashion on a small synthetic set: both arms train from
    the same start, the dropout arm differently, and the report holds what asv_benchmarks/README.md
    quotes."""
    from fastbp.datasets import synthetic_images
    from fastbp.experiments import dropout_fashion
    data = synthetic_images(n_train=300, n_test=100, n_features=20, n_classes=3, seed=0)
    r = dropout_fashion(rate=0.3, epochs=2, batch_size=32, data=data, hidden=(16, 16), dtype="float64")
    for arm in ("dropout", "plain"):
        assert set(r[arm]) == {"test_accuracy", "train_loss", "test_loss", "gap", "epoch_seconds"}
        assert 0 <= r[arm]["test_accuracy"] <= 1 and len(r[arm]["epoch_seconds"]) == 2
        assert r[arm]["gap"] == pytest.approx(r[arm]["test_loss"] - r[arm]["train_loss"])
    assert r["dropout"]["train_loss"] != r["plain"]["train_loss"] and r["epoch_ratio"] > 0


def test_the_draws_cut_into_parts_train_as_one(monkeypatch):
    """The Numba backend draws masks for a few batches at a time; parts of one batch
    each give the same run, bit for bit."""
    weights = []
    for budget in (1 << 22, 1):
        monkeypatch.setattr(fastbp.backends, "DRAW_BUDGET", budget)
        net, X, T = problem([10, 12, 3], "relu", "softmax", "cross_entropy", 90, seed=2)
        net.train(X, T, epochs=2, lr=0.05, batch_size=8, dropout=0.4, input_noise=0.1)
        weights.append(np.concatenate([w.ravel() for w in net.weights]))
    np.testing.assert_array_equal(weights[0], weights[1])
