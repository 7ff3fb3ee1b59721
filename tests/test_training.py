"""Long runs: validation and early stopping, a target loss, divergence, diagnostics,
checkpoints and resume (in process, and by killing a training process mid-run)."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import make_problem

import fastbp
import fastbp.run
from fastbp import datasets, training
from fastbp.optimizers import Optimizer, Schedule


def noisy_classes(m=300, n_in=20, seed=0):
    """A small classification problem a wide network overfits: labels from a linear rule,
    20% of them flipped."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, n_in))
    y = (X[:, :3].sum(axis=1) > 0).astype(int) + (X[:, 3] > 0.5)
    flip = rng.random(m) < 0.2
    y[flip] = rng.integers(0, 3, flip.sum())
    return X, y


def classifier(n_in=20, hidden=64, seed=0, **kw):
    return fastbp.Network([n_in, hidden, 3], activation="relu", output="softmax",
                          loss="cross_entropy", init="he", seed=seed, **kw)


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_early_stopping_ends_with_the_best_validation_epoch(backend):
    X, y = noisy_classes()
    X_val, y_val = noisy_classes(200, seed=1)
    net = classifier()
    h = net.train(X, y, epochs=200, optimizer="adam", lr=0.01, batch_size=16,
                  validation=(X_val, y_val), n_iter_no_change=5, backend=backend)
    assert h["stopped"] == "no improvement" and len(h["loss"]) < 200
    best = h["best_epoch"]
    assert len(h["loss"]) == best + 5                     # five epochs without improvement
    assert h["val_loss"][best - 1] == min(h["val_loss"])
    # the network holds the best epoch's weights, not the last epoch's
    assert net.loss(X_val, y_val, backend=backend) == pytest.approx(h["val_loss"][best - 1], rel=1e-12)
    assert h["val_loss"][-1] > h["val_loss"][best - 1]
    assert len(h["val_accuracy"]) == len(h["loss"]) and 0.4 < max(h["val_accuracy"]) <= 1


def test_validation_fraction_is_held_out_and_stratified():
    X, y = noisy_classes(400)
    seen = []
    net = classifier()
    h = net.train(X, y, epochs=2, optimizer="adam", lr=0.01, batch_size=32, validation_fraction=0.25,
                  progress=lambda n, loss: seen.append(n))
    assert sum(seen) == 2 * 300                            # trained on the other 75% only
    rows = training.split_validation(400, 0.25, np.random.default_rng(0), y)[1]
    assert len(rows) == 100
    for c in range(3):                                    # each class in proportion
        assert abs(np.mean(y[rows] == c) - np.mean(y == c)) < 0.02
    assert len(h["val_loss"]) == 2


def test_without_validation_n_iter_no_change_watches_the_training_loss():
    X, y = noisy_classes()
    h = classifier().train(X, y, epochs=100, optimizer="sgd", lr=1e-9, n_iter_no_change=3, tol=1e-3)
    assert h["stopped"] == "no improvement" and len(h["loss"]) == 4   # the first epoch sets the best


def test_target_loss_stops_the_run():
    """Seed 001 trains until the loss is below 0.01."""
    X, y = datasets.two_clusters(100, seed=0)
    net = fastbp.Network([3, 3, 2, 1], activation="relu", output="sigmoid", bias=True,
                         init="standard_normal", seed=0)
    h = net.train(X, y, epochs=5000, lr=0.1, batch_size=16, target_loss=0.01)
    assert h["stopped"] == "target loss"
    assert h["loss"][-1] < 0.01 <= min(h["loss"][:-1]) and len(h["loss"]) < 5000


class Explode(Schedule):
    """lr as given for two epochs, then 1e300 times larger (Adam too diverges)."""
    name = "explode"

    def factor(self, epoch):
        return 1.0 if epoch < 2 else 1e300


@pytest.mark.parametrize("backend", ["numba", "numpy"])
@pytest.mark.parametrize("rule", ["momentum", "adam"])
def test_a_diverging_run_keeps_the_last_good_epoch(rule, backend):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(50, 3)) * 100, rng.normal(size=(50, 1)) * 100
    net = fastbp.Network([3, 8, 1], activation="identity", output="identity", seed=0)
    opt = Optimizer(rule, lr=1e-7)
    kept = []
    with pytest.raises(fastbp.TrainingDiverged, match=r"diverged in epoch 3 \(mean loss (nan|inf)\); "
                       "the network keeps the weights from before it") as caught:
        net.train(X, Y, epochs=10, optimizer=opt, batch_size=5, schedule=Explode(), backend=backend,
                  callback=lambda n, h: kept.append((n._w.copy(), opt.t, opt.state["w"].copy())))
    w, t, state = kept[-1]
    np.testing.assert_array_equal(net._w, w)              # the weights after epoch 2
    assert opt.t == t == 20
    np.testing.assert_array_equal(opt.state["w"], state)  # and the optimizer's state
    assert len(caught.value.history["loss"]) == 2


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_diagnostics_are_the_layers_error_terms_and_gradients(backend):
    net, X, T = make_problem([6, 8, 8, 3], "sigmoid", "softmax", "cross_entropy", 40, seed=2)
    h = net.train(X, T, epochs=3, lr=0.1, batch_size=4, backend=backend)
    assert len(h["mean_abs_delta"]) == len(h["grad_norm"]) == len(h["accuracy"]) == 3
    deltas = net.deltas(X, T, backend=backend)            # all 40 samples are the diagnostic set
    np.testing.assert_allclose(h["mean_abs_delta"][-1], [np.abs(d).mean() for d in deltas], rtol=1e-10)
    dW, db = net.gradients(X, T, backend=backend)
    np.testing.assert_allclose(h["grad_norm"][-1], [np.sqrt((w ** 2).sum() + (b ** 2).sum())
                                                    for w, b in zip(dW, db)], rtol=1e-10)
    assert h["accuracy"][-1] == np.mean(net.predict(X).argmax(1) == T.argmax(1))


def test_diagnostics_show_vanishing_gradients():
    """Seed 001: in a sigmoid network the error terms shrink layer by layer towards the input."""
    X, y = datasets.two_clusters(100, seed=0)
    net = fastbp.Network([3, 3, 3, 3, 1], activation="sigmoid", output="sigmoid",
                         init="standard_normal", seed=0)
    h = net.train(X, y, epochs=3, lr=0.1, batch_size=16)
    first, *_, last = h["mean_abs_delta"][-1]
    assert first < last / 5


def test_plot_history(tmp_path):
    X, y = noisy_classes()
    h = classifier().train(X, y, epochs=4, optimizer="adam", lr=0.01, batch_size=16,
                           validation_fraction=0.2)
    path = fastbp.plot_history(h, tmp_path / "history.png")
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20000


# ---------------------------------------------------------------- checkpoints

def run_to_the_end(tmp_path, interrupt_after=None, **settings):
    """Train 7 epochs with a checkpoint every 2; if interrupt_after, stop the run there (an
    exception from the callback, as a crash) and resume from the last checkpoint."""
    X, y = noisy_classes()
    net = classifier(hidden=16)
    path = tmp_path / ("ck-%s.npz" % interrupt_after)

    def crash(n, h):
        if len(h["loss"]) == interrupt_after:
            raise KeyboardInterrupt

    try:
        h = net.train(X, y, epochs=7, batch_size=8, checkpoint=path, checkpoint_every=2, callback=crash,
                      **settings)
    except KeyboardInterrupt:
        net, h = fastbp.resume(path, X, y)
    return net, h


@pytest.mark.parametrize("settings", [
    dict(optimizer="adam", lr=0.01, schedule="reduce_on_plateau", validation_fraction=0.2,
         n_iter_no_change=50),
    dict(optimizer="nesterov", lr=0.01, schedule=("step", {"step_size": 3, "gamma": 0.5}), l2=1e-3, clip=1.0),
    dict(optimizer="sgd", lr=0.05),
    dict(optimizer="momentum", lr=0.02, l1=1e-3, l2=1e-3, max_norm=1.5),
    dict(optimizer="adam", lr=0.01, dropout=0.3, input_noise=0.05),
], ids=["adam-plateau-validation", "nesterov-step-l2-clip", "sgd-per-sample-kernel", "momentum-l1-max-norm",
        "adam-dropout-noise"])
def test_an_interrupted_and_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, settings):
    if settings["optimizer"] == "sgd":
        settings = dict(settings)
    whole, h_whole = run_to_the_end(tmp_path, None, **settings)
    resumed, h_resumed = run_to_the_end(tmp_path, 5, **settings)     # the last checkpoint: epoch 4
    np.testing.assert_array_equal(resumed._w, whole._w)
    np.testing.assert_array_equal(resumed._b, whole._b)
    assert h_resumed["loss"] == h_whole["loss"] and len(h_whole["loss"]) == 7
    assert h_resumed.get("val_loss") == h_whole.get("val_loss")
    assert h_resumed["lr"] == h_whole["lr"]


def test_resume_refuses_other_data_and_a_model_file(tmp_path):
    X, y = noisy_classes()
    net = classifier(hidden=8)
    path = tmp_path / "ck.npz"
    net.train(X, y, epochs=1, checkpoint=path)
    with pytest.raises(fastbp.ResumeError, match="trained on other data"):
        fastbp.resume(path, X[::-1], y[::-1])
    net.save(tmp_path / "model.npz")
    with pytest.raises(fastbp.ModelFileError, match="not a fastbp checkpoint .*saved model"):
        fastbp.resume(tmp_path / "model.npz", X, y)
    assert fastbp.load(path).sizes == net.sizes              # a checkpoint loads as a model


CLI = [sys.executable, "-m", "fastbp.cli", "train", "--data", "synthetic", "--subset", "1200",
       "--hidden", "64", "--activation", "relu", "--output", "softmax", "--loss", "cross_entropy",
       "--init", "he", "--optimizer", "adam", "--lr", "0.001", "--batch-size", "1",
       "--schedule", "exponential", "--no-progress"]


@pytest.mark.slow
def test_killing_a_training_process_and_resuming_it(tmp_path):
    """SIGKILL a training run mid-way, resume from its checkpoint: the same final weights as
    a run that was never interrupted."""
    def cli(*args, **kwargs):
        return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=600, **kwargs)

    # the kernels compiled (or loaded) once, so that every run below loads them from the cache
    assert cli("--epochs", "1").returncode == 0
    whole = cli("--epochs", "40", "--save", str(tmp_path / "whole.npz"))
    assert whole.returncode == 0, whole.stderr
    checkpoint = tmp_path / "run.npz"
    process = subprocess.Popen(CLI + ["--epochs", "40", "--checkpoint", str(checkpoint)],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    for line in process.stdout:                          # let a few epochs finish, then kill
        if line.startswith("epoch 5/"):
            break
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    done = fastbp.network.load_checkpoint(checkpoint)[2].epoch
    assert 4 <= done < 40           # mid-run (epoch 5 is printed before its checkpoint is written)
    resumed = cli("--epochs", "40", "--checkpoint", str(checkpoint), "--resume",
                  "--save", str(tmp_path / "resumed.npz"))
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout and "epoch %d/40" % (done + 1) in resumed.stdout
    a, b = fastbp.load(tmp_path / "whole.npz"), fastbp.load(tmp_path / "resumed.npz")
    np.testing.assert_array_equal(a._w, b._w)
    np.testing.assert_array_equal(a._b, b._b)


def test_a_checkpoint_is_written_atomically(tmp_path, monkeypatch):
    X, y = noisy_classes()
    net = classifier(hidden=8)
    path = tmp_path / "ck.npz"
    net.train(X, y, epochs=1, checkpoint=path)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", fail)
    with pytest.raises(OSError, match="disk full"):
        net.train(X, y, epochs=1, checkpoint=path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["ck.npz"]
    time.sleep(0)


@pytest.mark.parametrize("batch_size", [1, 16], ids=["per-sample", "mini-batch"])
def test_ctrl_c_mid_epoch_leaves_the_last_finished_epoch(tmp_path, batch_size):
    """KeyboardInterrupt raised from inside an epoch (here by the progress hook, a third
    of the way through epoch 3) is raised on, with the network, its generator and the
    optimizer as after epoch 2, and the history of the 2 finished epochs attached; a
    checkpoint of that state resumes to the uninterrupted run's end."""
    X, y = noisy_classes()
    settings = dict(batch_size=batch_size, optimizer="adam", lr=0.01, schedule="reduce_on_plateau")
    def watch(n, loss):                                  # (the same slices as the run stopped below)
        pass
    whole = classifier()
    h_whole = whole.train(X, y, epochs=4, progress=watch, **settings)
    two = classifier()
    two.train(X, y, epochs=2, progress=watch, **settings)
    net, seen = classifier(), []

    def stop_in_epoch_3(n, loss):
        seen.append(n)
        if sum(seen) > 2.33 * 300:                      # (300 rows an epoch)
            raise KeyboardInterrupt
    path = tmp_path / "stopped.npz"
    with pytest.raises(KeyboardInterrupt) as stop:
        net.train(X, y, epochs=4, progress=stop_in_epoch_3, checkpoint=path, checkpoint_every=10, **settings)
    assert not path.exists()
    np.testing.assert_array_equal(net._w, two._w)
    np.testing.assert_array_equal(net._b, two._b)
    assert net.rng.bit_generator.state == two.rng.bit_generator.state
    h = stop.value.history
    assert h["loss"] == h_whole["loss"][:2] and len(h["grad_norm"]) == len(h["seconds"]) == 2
    assert stop.value.state.epoch == 2
    fastbp.run.save_checkpoint(path, stop.value.net, stop.value.config, stop.value.state)   # as the CLI does
    resumed, h_resumed = fastbp.resume(path, X, y, progress=watch)
    np.testing.assert_array_equal(resumed._w, whole._w)
    assert h_resumed["loss"] == h_whole["loss"]


def _compiled_call_interrupted():
    """What Numba's dispatcher raises when Ctrl-C lands in a kernel's first call (while it
    compiles or loads the kernel from the cache): a SystemError caused by the interrupt."""
    try:
        raise KeyboardInterrupt
    except KeyboardInterrupt as stop:
        raise SystemError("CPUDispatcher(<function predict_batch>) returned a result with an exception set") \
            from stop


def test_ctrl_c_inside_a_kernels_first_call_stops_the_run_as_ctrl_c_does():
    """A Ctrl-C that comes out of a compiled call as a SystemError (an evaluation's first
    predict after epoch 1 was loading its kernel: seen in `fastbp train` once) is a
    KeyboardInterrupt to the run's callers, with the history of the finished epochs; in
    an epoch it undoes the epoch. Any other SystemError passes through unchanged."""
    X, y = noisy_classes()
    two = classifier()
    two.train(X, y, epochs=2, lr=0.01)

    def after_epoch_2(net, history):
        if len(history["loss"]) == 2:
            _compiled_call_interrupted()
    net = classifier()
    with pytest.raises(KeyboardInterrupt) as stop:
        net.train(X, y, epochs=4, lr=0.01, callback=after_epoch_2)
    assert len(stop.value.history["loss"]) == 2 and stop.value.state.epoch == 2
    assert isinstance(stop.value.__cause__, SystemError)
    np.testing.assert_array_equal(net._w, two._w)

    def in_epoch_3(n, loss):
        seen.append(n)
        if sum(seen) > 2.33 * 300:                      # (300 rows an epoch)
            _compiled_call_interrupted()
    net, seen = classifier(), []
    with pytest.raises(KeyboardInterrupt) as stop:
        net.train(X, y, epochs=4, lr=0.01, progress=in_epoch_3)
    assert stop.value.state.epoch == 2
    np.testing.assert_array_equal(net._w, two._w)

    def broken(net, history):
        raise SystemError("something else")
    with pytest.raises(SystemError, match="something else"):
        classifier().train(X, y, epochs=2, lr=0.01, callback=broken)
