"""The command line end to end (through subprocess, as a user runs it), the seed 001
experiment, and accuracy on real data."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import fastbp
from fastbp import cli, datasets

FASTBP = [sys.executable, "-m", "fastbp.cli"]


def run(*args, **kwargs):
    return subprocess.run(FASTBP + list(args), capture_output=True, text=True, timeout=600, **kwargs)


def test_train_save_evaluate(tmp_path):
    model = tmp_path / "model.npz"
    result = run("train", "--subset", "1200", "--epochs", "2", "--hidden", "32", "--activation", "relu",
                 "--output", "softmax", "--loss", "cross_entropy", "--init", "he", "--lr", "0.05",
                 "--save", str(model))
    assert result.returncode == 0, result.stderr
    assert "test accuracy" in result.stdout and "s per epoch" in result.stdout
    assert "sample/s" in result.stderr and "loss=" in result.stderr          # the progress bar
    net = fastbp.load(model)
    assert net.sizes == [784, 32, 10] and net.output == "softmax"
    result = run("evaluate", str(model), "--subset", "1200")
    assert result.returncode == 0, result.stderr
    assert "accuracy" in result.stdout and "confusion matrix" in result.stdout
    assert "Ankle boot" in result.stdout
    rows = [line.split()[-10:] for line in result.stdout.splitlines()[-10:]]
    assert sum(int(v) for row in rows for v in row) == 200                  # 1200 // 6 test samples


def test_bad_arguments_are_clear_errors(tmp_path):
    result = run("train", "--subset", "100", "--activation", "swish")
    assert result.returncode == 2 and "unknown activation 'swish'" in result.stderr
    result = run("train", "--data", "mnist")
    assert result.returncode == 2 and "--data mnist needs --data-dir" in result.stderr
    (tmp_path / "broken.npz").write_bytes(b"not a model")
    result = run("evaluate", str(tmp_path / "broken.npz"))
    assert result.returncode == 2 and "not a readable fastbp model" in result.stderr


def test_ctrl_c_stops_cleanly_and_saves(tmp_path):
    model = tmp_path / "interrupted.npz"
    # the child turns SIGINT into KeyboardInterrupt itself: a shell that starts this test run
    # in the background passes SIGINT down ignored, and Python then never raises it. (Not by
    # preexec_fn: a fork from this process, where JAX's threads may run, warns of deadlock.)
    child = [sys.executable, "-c", "import signal, sys; signal.signal(signal.SIGINT, "
             "signal.default_int_handler); from fastbp.cli import main; sys.exit(main())"]
    process = subprocess.Popen(child + ["train", "--subset", "6000", "--epochs", "1000", "--no-progress",
                                        "--save", str(model)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"))
    for line in process.stdout:                           # wait for the first finished epoch
        if line.startswith("epoch 1/"):
            break
    time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == cli.EXIT_INTERRUPTED, err
    assert "interrupted" in out and "saved what was trained" in out
    assert fastbp.load(model).sizes == [784, 200, 10]


def test_demo_runs_end_to_end():
    result = run("demo", "--subset", "3000", "--epochs", "1", "--no-progress", "--reference-samples", "300")
    assert result.returncode == 0, result.stderr
    assert "on Fashion-MNIST" in result.stdout
    assert "speedup over the NumPy reference" in result.stdout and "test accuracy" in result.stdout


def test_demo_falls_back_to_generated_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "none")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("FASTBP_DATA", raising=False)
    assert cli.main(["demo", "--subset", "600", "--epochs", "1", "--no-progress",
                     "--reference-samples", "100"]) == 0
    out = capsys.readouterr().out
    assert "Fashion-MNIST is not installed here" in out and "apt-get install dataset-fashion-mnist" in out
    assert "a generated data set" in out and "speedup" in out


def test_seed001_experiment(tmp_path):
    result = run("seed001", "--plot", str(tmp_path / "seed001.png"))
    assert result.returncode == 0, result.stderr
    for activation in ("sigmoid", "relu"):
        assert "%-7s hidden layers: reached 0.01 after" % activation in result.stdout
    png = (tmp_path / "seed001.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000


def test_seed001_vanishing_error_terms():
    from fastbp.experiments import seed001
    r = seed001("sigmoid", seed=0)
    assert r["converged"] and r["final_loss"] < 0.01
    first = r["history"]["mean_abs_delta"][0]
    # each layer's error terms are several times smaller than the next one's (seed 001)
    assert first[0] < first[1] / 3 < first[2] / 9


@pytest.mark.slow
def test_seed000_network_one_epoch_accuracy_on_fashion_mnist():
    """Seed 000's network, one epoch of per-sample SGD on all 60,000 images in file order
    (as the seed iterates its records), seed 000's preprocessing: >= 0.82."""
    X, y, X_test, y_test = datasets.load_fashion_mnist(scaling="seed000")
    net = fastbp.Network([784, 200, 10], bias=False, propagate="error", seed=0)
    net.train(X, datasets.one_hot(y, 10, style="seed000"), epochs=1, lr=0.1, batch_size=1,
              shuffle=False)
    accuracy = np.mean(net.predict(X_test).argmax(axis=1) == y_test)
    assert accuracy >= 0.82, accuracy


def test_info_names_the_versions_blas_and_cache(capsys, tmp_path):
    from fastbp import info, kernels
    fastbp.Network([3, 2, 2], seed=0).warm_up(2)          # compiles (or loads) and caches batch_epoch
    assert cli.main(["info"]) == 0
    printed = capsys.readouterr().out
    assert "fastbp %s" % fastbp.__version__ in printed and "numba " in printed
    assert "BLAS: openblas" in printed                     # SciPy's, which the kernels' products call
    assert "Numba's cache: %s" % kernels.cache_dir(kernels.batch_epoch) in printed
    assert cli.main(["info", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["cached"]["batch_epoch"] >= 1 and facts["cache_dir_writable"] is True
    assert set(facts["cached"]) == set(info.ENTRY_POINTS)
    (tmp_path / "a_file").write_text("")
    assert info.writable(tmp_path / "not" / "yet")          # made on the way: its parent is writable
    assert not info.writable(tmp_path / "a_file" / "x")     # under a file: nothing can be made


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == "fastbp %s" % fastbp.__version__
