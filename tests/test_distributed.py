"""Scale-out on Dask: data-parallel training (one worker is net.train bit for bit; two
average deterministically, from NumPy or Dask arrays; a killed worker costs a round and
changes nothing), checkpoints, bad shards, sweeps under joblib's Dask backend and dask-ml,
and forked children of a process that ran OpenMP threads. Every cluster here is a
LocalCluster on 127.0.0.1, started and stopped by the tests."""
import os
import signal
import subprocess
import sys
import threading
import warnings

import distributed
import numpy as np
import pytest

import fastbp
import fastbp.distributed as fd
from fastbp.estimators import ConvergenceWarning


def problem(m=600, n_in=20, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, n_in))
    y = (X[:, :3].sum(axis=1) > 0).astype(int) + (X[:, 3] > 0.5)
    return X, y


def digits():
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def network(n_in=20, seed=1):
    return fastbp.Network([n_in, 16, 3], activation="relu", output="softmax", loss="cross_entropy",
                          init="he", seed=seed)


@pytest.fixture(scope="module")
def one_worker():
    with fd.local_cluster(1) as cluster, distributed.Client(cluster) as client:
        yield client


@pytest.fixture(scope="module")
def two_workers():
    with fd.local_cluster(2) as cluster, distributed.Client(cluster) as client:
        yield client


SETTINGS = [
    dict(batch_size=1),
    dict(batch_size=16, optimizer="adam", lr=0.01, schedule="inverse_scaling", l2=1e-3),
    dict(batch_size=32, optimizer="momentum", lr=0.05, clip=1.0, n_iter_no_change=2, tol=0.05),
    dict(batch_size=16, optimizer="sgd", lr=0.05, l1=1e-3, l2=1e-3, max_norm=1.0),
]


def _train_here(net, X, y, validation, settings):
    history = net.train(X, y, epochs=6, diagnostics=False, validation=validation, **settings)
    return net, history


@pytest.mark.parametrize("settings", SETTINGS, ids=["per-sample", "adam", "momentum-stopping", "l1-l2-max-norm"])
def test_one_worker_is_net_train_bit_for_bit(one_worker, settings):
    """net.train runs in the worker's process too, so that both use the same compiled code:
    a per-sample kernel compiled in a process rounds differently (about 1e-9 relative) from
    the same kernel loaded from Numba's cache (network.py's docstring, "Reproducibility")."""
    X, y = problem()
    X_val, y_val = problem(200, seed=5)
    local, h_local = one_worker.submit(_train_here, network(), X, y, (X_val, y_val), settings, pure=False).result()
    spread = network()
    h_spread = fd.train(spread, X, y, client=one_worker, epochs=6, validation=(X_val, y_val), **settings)
    np.testing.assert_array_equal(local.snapshot()[0], spread.snapshot()[0])
    np.testing.assert_array_equal(local.snapshot()[1], spread.snapshot()[1])
    for key in ("loss", "lr", "val_loss", "val_accuracy", "stopped", "best_epoch"):
        assert h_local[key] == h_spread[key], key
    assert local.rng.bit_generator.state == spread.rng.bit_generator.state


def test_two_workers_average_deterministically_from_numpy_or_dask_arrays(two_workers):
    import dask.array as da
    X, y = problem()
    runs = []
    for data in ((X, y), (X, y), (da.from_array(X, chunks=(300, 20)), da.from_array(y, chunks=300))):
        net = network()
        h = fd.train(net, *data, client=two_workers, epochs=8, batch_size=16, optimizer="adam", lr=0.01)
        runs.append((net.snapshot()[0], h))
    (w0, h0), (w1, h1), (w2, h2) = runs
    accuracy = np.mean(net.predict(X).argmax(1) == y)
    np.testing.assert_array_equal(w0, w1)                 # the same seed, the same run
    np.testing.assert_array_equal(w0, w2)                 # the same shards from a Dask array
    assert h0["workers"] == 2 and h0["train_samples"] == 600 and len(h0["loss"]) == 8
    assert h0["loss"][-1] < 0.6 * h0["loss"][0]
    assert h0["bytes_per_round"] == 2 * 2 * 3 * (20 * 16 + 16 * 3 + 16 + 3) * 8   # params + Adam's 2 moments
    # averaging is not one worker's training: the weights differ from a local run's
    local = network()
    local.train(X, y, epochs=8, batch_size=16, optimizer="adam", lr=0.01, diagnostics=False)
    assert not np.array_equal(local.snapshot()[0], w0)
    assert accuracy > 0.8 and abs(np.mean(local.predict(X).argmax(1) == y) - accuracy) < 0.1


def test_a_worker_killed_mid_round_costs_only_that_round(two_workers):
    X, y = problem(40000, 50)
    settings = dict(epochs=4, batch_size=8, optimizer="adam", lr=0.003)
    clean = network(50)
    fd.train(clean, X, y, client=two_workers, **settings)
    pids = two_workers.run(os.getpid)
    victim = pids[sorted(pids)[1]]

    def kill_during_the_next_round(net, history):
        if len(history["loss"]) == 1:
            threading.Timer(0.05, os.kill, (victim, signal.SIGKILL)).start()

    faulted = network(50)
    h = fd.train(faulted, X, y, client=two_workers, callback=kill_during_the_next_round, **settings)
    np.testing.assert_array_equal(clean.snapshot()[0], faulted.snapshot()[0])
    assert len(h["loss"]) == 4 and victim not in two_workers.run(os.getpid).values()
    two_workers.wait_for_workers(2, timeout=60)


def test_a_diverging_round_keeps_everything_from_before_it(two_workers):
    """The local loop's guard (training.Loop): the weights, the optimizer and the
    generator as before the round, and the history so far."""
    X, y = problem()
    net = network()
    fd.train(net, X, y, client=two_workers, epochs=1, batch_size=16, lr=0.05)
    before, rng = net.snapshot(), net.rng.bit_generator.state
    with pytest.raises(fastbp.TrainingDiverged, match=r"diverged in the round of epochs 1\.\.3"):
        fd.train(net, X * 1e30, y, client=two_workers, epochs=4, sync_every=3, batch_size=16, lr=10.0)
    np.testing.assert_array_equal(net.snapshot()[0], before[0])
    assert net.rng.bit_generator.state == rng


def test_ctrl_c_in_a_round_undoes_it_and_carries_the_run(two_workers, monkeypatch):
    """As an interrupted epoch of net.train: the run as after its last finished round, on
    the KeyboardInterrupt (.history, .state), so that the command line can checkpoint it."""
    X, y = problem()
    settings = dict(batch_size=16, optimizer="adam", lr=0.01)
    one_round = network()
    fd.train(one_round, X, y, client=two_workers, epochs=1, **settings)
    rounds, real = [], fd._run_round

    def interrupted_second(*args, **kwargs):
        rounds.append(1)
        if len(rounds) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(fd, "_run_round", interrupted_second)
    net = network()
    with pytest.raises(KeyboardInterrupt) as stop:
        fd.train(net, X, y, client=two_workers, epochs=3, **settings)
    np.testing.assert_array_equal(net.snapshot()[0], one_round.snapshot()[0])
    assert len(stop.value.history["loss"]) == 1 and stop.value.state.epoch == 1
    assert len(stop.value.history["round_seconds"]) == 1


def test_progress_true_shows_a_bar_per_round(two_workers, capsys):
    X, y = problem()
    h = fd.train(network(), X, y, client=two_workers, epochs=2, batch_size=16, progress=True)
    assert len(h["loss"]) == 2 and "1.20k/1.20k" in capsys.readouterr().err


def test_checkpoints_and_resume(two_workers, tmp_path):
    X, y = problem()
    whole = network()
    fd.train(whole, X, y, client=two_workers, epochs=4, batch_size=16, optimizer="adam", lr=0.01)
    path = tmp_path / "run.npz"
    first = network()
    fd.train(first, X, y, client=two_workers, epochs=2, batch_size=16, optimizer="adam", lr=0.01,
             checkpoint=path)
    net, h = fd.resume(path, X, y, client=two_workers, epochs=4)
    np.testing.assert_array_equal(net.snapshot()[0], whole.snapshot()[0])
    assert len(h["loss"]) == 4
    with pytest.raises(fastbp.ResumeError, match="other data"):
        fd.resume(path, X[::-1], y[::-1], client=two_workers, epochs=5)


def test_bad_shards_are_errors_naming_the_shard(two_workers):
    X, y = problem()
    bad = X.copy()
    bad[450, 3] = np.nan
    with pytest.raises(ValueError, match=r"shard 1 \(rows 300\.\.599\): X contains NaN or inf \(first in row 150\)"):
        fd.train(network(), bad, y, client=two_workers)
    labels = y.copy()
    labels[10] = 7
    with pytest.raises(ValueError, match=r"shard 0 \(rows 0\.\.299\): Y has labels out of range"):
        fd.train(network(), X, labels, client=two_workers)
    with pytest.raises(ValueError, match=r"X has shape \(300, 19\)"):
        fd.train(network(), X[:, 1:], y, client=two_workers)
    with pytest.raises(ValueError, match="sync_every=1"):
        fd.train(network(), X, y, client=two_workers, sync_every=2, n_iter_no_change=3)
    with pytest.raises(ValueError, match="sync_every must be an integer"):
        fd.train(network(), X, y, client=two_workers, sync_every=0)
    with pytest.raises(TypeError, match="client must be"):
        fd.train(network(), X, y, client=3)


def test_a_target_loss_stops_the_run(two_workers):
    X, y = problem()
    h = fd.train(network(), X, y, client=two_workers, epochs=50, batch_size=16, optimizer="adam", lr=0.01,
                 target_loss=0.3)
    assert h["stopped"] == "target loss" and h["loss"][-1] < 0.3 <= min(h["loss"][:-1]) and len(h["loss"]) < 50


def test_rounds_of_several_epochs_and_a_scheduler_address(two_workers):
    X, y = problem()
    net = network()
    h = fd.train(net, X, y, client=two_workers.scheduler.address, epochs=6, sync_every=3,
                 batch_size=16, optimizer="adam", lr=0.01)
    assert len(h["loss"]) == 6 and len(h["round_seconds"]) == 2
    assert np.mean(net.predict(X).argmax(1) == y) > 0.8


def test_sweeps_under_joblibs_dask_backend(two_workers):
    import joblib
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV, cross_validate
    X, y = digits()
    search = GridSearchCV(fastbp.MLPClassifier(hidden_layer_sizes=(32,), max_iter=40, random_state=0,
                                               n_iter_no_change=5, tol=1e-3),
                          {"alpha": [1e-4, 1e-2], "learning_rate_init": [0.01, 0.003]}, cv=2)
    with joblib.parallel_config(backend="dask"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)        # 40 epochs: some still improve
        search.fit(X, y)
        scores = cross_validate(search.best_estimator_, X, y, cv=2)
        randomized = RandomizedSearchCV(search.estimator, {"alpha": [1e-5, 1e-4, 1e-3]}, n_iter=2, cv=2,
                                        random_state=0).fit(X, y)
    assert search.best_score_ > 0.85 and scores["test_score"].min() > 0.85
    assert len(search.cv_results_["params"]) == 4 and randomized.best_score_ > 0.85


def _partial_fits_by_hand(X, y, classes):
    local = fastbp.MLPClassifier(hidden_layer_sizes=(32,), random_state=0, learning_rate_init=0.01)
    for start in range(0, len(X), 300):
        local.partial_fit(X[start:start + 300], y[start:start + 300], classes=classes)
    return local


@pytest.mark.slow
def test_dask_ml_incremental_and_hyperband(two_workers):
    import dask.array as da
    from dask_ml.model_selection import HyperbandSearchCV
    from dask_ml.wrappers import Incremental
    X, y = digits()
    dX, dy = da.from_array(X, chunks=(300, 64)), da.from_array(y, chunks=300)
    classes = list(range(10))
    inc = Incremental(fastbp.MLPClassifier(hidden_layer_sizes=(32,), random_state=0, learning_rate_init=0.01),
                      scoring="accuracy", shuffle_blocks=False)
    inc.fit(dX, dy, classes=classes)                 # one partial_fit per chunk, on the workers
    # the same calls made by hand, in a worker process, with the worker's one-thread BLAS
    # (CONTRIBUTING.md, "Batches": the cut follows NUMBA_NUM_THREADS, BLAS may round apart)
    local = two_workers.submit(_partial_fits_by_hand, X, y, classes).result()
    np.testing.assert_array_equal(inc.estimator_.net_.snapshot()[0], local.net_.snapshot()[0])
    assert inc.score(dX, dy) > 0.6                   # (one pass: one epoch)
    search = HyperbandSearchCV(fastbp.MLPClassifier(hidden_layer_sizes=(32,), random_state=0),
                               {"learning_rate_init": [0.001, 0.003, 0.01, 0.03], "alpha": [1e-5, 1e-4, 1e-3]},
                               max_iter=9, random_state=0)
    search.fit(dX, dy, classes=classes)
    assert search.best_score_ > 0.8 and hasattr(search.best_estimator_, "net_")


@pytest.mark.parametrize("threads", ["2", ""])
def test_a_forked_child_of_a_process_that_ran_openmp_threads_trains(threads):
    """GNU OpenMP kills a forked child that enters a parallel region; fastbp's keep to one
    thread after such a fork (FASTBP_THREADS=2, or unset: batched epochs' threads)."""
    code = """if True:
        import os, numpy as np, fastbp
        rng = np.random.default_rng(0)
        X, y = rng.random((256, 784)), rng.integers(0, 10, 256)
        net = fastbp.Network([784, 200, 10], seed=0)
        net.train(X, y)                      # FASTBP_THREADS=2: an OpenMP parallel region
        net.train(X, y, batch_size=64)       # batched: parallel regions on an idle machine
        pid = os.fork()
        if pid == 0:
            net.train(X, y)
            net.train(X, y, batch_size=32)
            os._exit(0)
        print(os.waitpid(pid, 0)[1])
    """
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, FASTBP_THREADS=threads, NUMBA_NUM_THREADS="2"))
    assert result.returncode == 0 and result.stdout.strip() == "0", result.stderr


def test_the_command_line_trains_on_local_workers(capsys):
    from fastbp import cli
    assert cli.main(["train", "--data", "synthetic", "--subset", "1200", "--hidden", "16", "--epochs", "2",
                     "--batch-size", "16", "--optimizer", "adam", "--workers", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "epoch 2/2" in out and "test accuracy" in out


def test_validation_fraction_early_stopping_and_resume(two_workers, tmp_path):
    X, y = problem()
    settings = dict(batch_size=16, optimizer="adam", lr=0.01, validation_fraction=0.2, n_iter_no_change=3)
    whole = network()
    h = fd.train(whole, X, y, client=two_workers, epochs=6, **settings)
    assert 470 < h["train_samples"] < 490 and len(h["val_loss"]) == len(h["loss"])   # (stratified)
    assert h["val_loss"][h["best_epoch"] - 1] == min(h["val_loss"])
    path = tmp_path / "run.npz"
    first = network()
    fd.train(first, X, y, client=two_workers, epochs=3, checkpoint=path, **settings)
    net, h2 = fd.resume(path, X, y, client=two_workers, epochs=6)
    assert h2["loss"] == h["loss"] and h2["val_loss"] == h["val_loss"]
    np.testing.assert_array_equal(net.snapshot()[0], whole.snapshot()[0])


def test_local_workers_load_the_parents_compiled_kernels(one_worker):
    """A LocalCluster's workers share this process's Numba cache: once the parent has
    compiled (or loaded) a network's kernels, a worker compiles nothing for them."""
    from fastbp import kernels
    net = fastbp.Network([5, 4, 3], activation="tanh", output="softmax", loss="cross_entropy", seed=0)
    for batch_size in (1, 8):
        net.warm_up(batch_size)
    with kernels.compiles() as here:
        net.warm_up(8)                     # in memory now: nothing to compile
    assert here() == 0
    (report,) = fd.warm_workers(one_worker, net, batch_sizes=(1, 8)).values()
    assert report["cache_dir"] == kernels.cache_dir(kernels.sgd_epoch)
    assert report["compiled"] == 0, report


def test_workers_of_a_script_that_imports_fastbp_can_compile(tmp_path):
    """A spawned worker imports the caller's script again, and so Numba, before Dask sets
    the workers' environment; a NUMBA_NUM_THREADS set there stopped every compile in the
    workers ("Cannot set NUMBA_NUM_THREADS ... once the threads have been launched")."""
    script = tmp_path / "script.py"
    script.write_text(
        "import numba\n"
        "import fastbp.distributed as fd\n"
        "import distributed\n"
        "def compile_here():\n"
        "    numba.get_num_threads()               # the threads launched, as fastbp's kernels do\n"
        "    return numba.njit(lambda x: x + 1)(1)  # a fresh compile reloads Numba's config\n"
        "if __name__ == '__main__':\n"
        "    with fd.local_cluster(1) as cluster, distributed.Client(cluster) as client:\n"
        "        print(list(client.run(compile_here).values()))\n")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0 and done.stdout.strip() == "[2]", done.stderr[-3000:]
