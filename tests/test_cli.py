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
from fastbp.network import load_checkpoint

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


def test_preprocess_takes_offset_and_its_old_name_seed000(capsys):
    parser = cli.build_parser()
    for command in (["train"], ["evaluate", "model.npz"]):
        assert parser.parse_args(command + ["--preprocess", "seed000"]).preprocess == "offset"
        assert parser.parse_args(command + ["--preprocess", "offset"]).preprocess == "offset"
        assert parser.parse_args(command).preprocess == "unit"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--preprocess", "zscore"])
    assert "invalid choice: 'zscore'" in capsys.readouterr().err


def test_ctrl_c_stops_cleanly_and_saves(tmp_path):
    model = tmp_path / "interrupted.npz"
    # the child turns SIGINT into KeyboardInterrupt itself: a shell that starts this test run
    # in the background passes SIGINT down ignored, and Python then never raises it. (Not by
    # preexec_fn: a fork from this process, where JAX's threads may run, warns of deadlock.)
    child = [sys.executable, "-c", "import signal, sys; signal.signal(signal.SIGINT, "
             "signal.default_int_handler); from fastbp.cli import main; sys.exit(main())"]
    checkpoint = tmp_path / "run.npz"
    process = subprocess.Popen(child + ["train", "--subset", "6000", "--epochs", "1000", "--no-progress",
                                        "--save", str(model), "--checkpoint", str(checkpoint),
                                        "--checkpoint-every", "1000"],
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
    # the checkpoint, written on Ctrl-C (none came from --checkpoint-every 1000), holds the
    # last finished epoch, and the command that continues it is printed
    state = load_checkpoint(checkpoint)[2]
    assert state.epoch >= 1 and "continues the run with --resume" in out
    assert out.splitlines()[-1].startswith("  fastbp train --subset 6000") and out.rstrip().endswith("--resume")


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
    X, y, X_test, y_test = datasets.load_fashion_mnist(scaling="offset")
    net = fastbp.Network([784, 200, 10], bias=False, propagate="error", seed=0)
    net.train(X, datasets.one_hot(y, 10, style="soft"), epochs=1, lr=0.1, batch_size=1,
              shuffle=False)
    accuracy = np.mean(net.predict(X_test).argmax(axis=1) == y_test)
    assert accuracy >= 0.82, accuracy


def test_info_names_the_versions_blas_and_cache(capsys, tmp_path):
    from fastbp import info, kernels
    fastbp.Network([3, 2, 2], seed=0).warm_up(2)          # compiles (or loads) and caches batch_epoch_common
    assert cli.main(["info"]) == 0
    printed = capsys.readouterr().out
    assert "fastbp %s" % fastbp.__version__ in printed and "numba " in printed
    assert "BLAS: openblas" in printed                     # SciPy's, which the kernels' products call
    assert "Numba's cache: %s" % kernels.cache_dir(kernels.batch_epoch) in printed
    assert cli.main(["info", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["cached"]["batch_epoch_common"] >= 1 and facts["cache_dir_writable"] is True
    assert set(facts["cached"]) == set(info.ENTRY_POINTS)
    (tmp_path / "a_file").write_text("")
    assert info.writable(tmp_path / "not" / "yet")          # made on the way: its parent is writable
    assert not info.writable(tmp_path / "a_file" / "x")     # under a file: nothing can be made


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.strip() == "fastbp %s" % fastbp.__version__


TINY = ["--data", "synthetic", "--subset", "300", "--hidden", "8", "--batch-size", "50", "--no-progress"]


@pytest.mark.parametrize("options, message", [
    (["--subset", "0"], "argument --subset: '0' is not a positive integer"),
    (["--hidden", "100,,10"], "'100,,10' is not a list of layer sizes"),
    (["--momentum", "0.5"], "--momentum is for --optimizer momentum or nesterov; --optimizer sgd does not use it"),
    (["--save", "/nonexistent/m.npz"],
     "cannot write --save /nonexistent/m.npz: the directory /nonexistent does not exist"),
    (["--checkpoint", "{tmp}"], "cannot write --checkpoint {tmp}: it is a directory"),
    (["--plot-history", "/nonexistent/h.png"], "cannot write --plot-history /nonexistent/h.png: the directory"),
], ids=["subset-0", "empty-layer", "momentum-ignored", "save-dir", "checkpoint-is-dir", "plot-dir"])
def test_train_refuses_what_it_would_ignore_or_fail_on_later(options, message, tmp_path, capsys):
    options = [o.replace("{tmp}", str(tmp_path)) for o in options]
    try:
        code = cli.main(["train"] + TINY + options)
    except SystemExit as stop:                   # argparse's own errors
        code = stop.code
    captured = capsys.readouterr()
    assert code == 2 and message.replace("{tmp}", str(tmp_path)) in captured.err
    assert "training" not in captured.out and "epoch" not in captured.out      # nothing trained first
    assert ".tmp" not in captured.err


def test_train_takes_the_regularisers_and_a_resume_keeps_them(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = ["train"] + TINY + ["--hidden", "8,6", "--checkpoint", "reg.npz", "--resume", "--l1", "0.001",
                              "--max-norm", "2", "--dropout", "0.2,0.1", "--input-noise", "0.05"]
    assert cli.main(run + ["--epochs", "1"]) == 0
    config = load_checkpoint("reg.npz")[1]
    assert (config.l1, config.max_norm, config.dropout, config.input_noise) == (0.001, 2.0, [0.2, 0.1], 0.05)
    assert cli.main(run + ["--epochs", "2"]) == 0
    changed = [o if o != "0.2,0.1" else "0.3" for o in run]
    assert cli.main(changed + ["--epochs", "3"]) == 2
    assert "--dropout 0.3 (the checkpoint's: 0.2,0.1)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train"] + TINY + ["--dropout", "a,b"])


def test_train_momentum_is_taken_by_the_rules_that_use_it(capsys):
    assert cli.main(["train"] + TINY + ["--optimizer", "nesterov", "--momentum", "0.5"]) == 0


def test_resume_says_what_it_does(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = ["train"] + TINY + ["--checkpoint", "run.npz", "--resume", "--validation-fraction", "0.1"]
    assert cli.main(run + ["--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "note: no checkpoint at run.npz yet, so this starts a new run" in out
    held_out = load_checkpoint("run.npz")[2].val_rows.size               # (stratified: 31)
    assert "%d training samples (and %d held out for validation)" % (300 - held_out, held_out) in out
    assert "after 2 epochs" in out
    assert cli.main(run + ["--epochs", "2"]) == 2                     # nothing left to train: say so
    assert ("the run in run.npz has finished 2 epochs, and --epochs is the run's new total (2): give "
            "--epochs more than 2") in capsys.readouterr().err
    assert cli.main(run + ["--epochs", "3"]) == 0
    out = capsys.readouterr().out
    assert "resuming (after 2 epochs)" in out and "(and %d held out" % held_out in out
    assert "epoch 3/3:" in out and "after 3 epochs" in out and "(median of 1)" in out
    assert cli.main(["evaluate", "run.npz", "--data", "synthetic", "--subset", "300"]) == 0
    out = capsys.readouterr().out
    assert "a training checkpoint: these are the weights after its last finished epoch, 3" in out
    assert "best epoch by validation loss was" in out
    rows = out.splitlines()[-10:]                              # the confusion matrix: columns line up
    assert len({len(row) for row in rows}) == 1 and rows[0].startswith("0 ")
    assert cli.main(["train"] + TINY + ["--checkpoint", "done.npz", "--epochs", "30", "--n-iter-no-change", "1",
                                        "--tol", "1e9"]) == 0
    assert "stopped: no improvement" in capsys.readouterr().out
    assert cli.main(["train"] + TINY + ["--checkpoint", "done.npz", "--epochs", "40", "--n-iter-no-change", "1",
                                        "--tol", "1e9", "--resume"]) == 2
    assert "stopped after 2 epochs (no improvement): --resume has nothing to continue" in capsys.readouterr().err


def test_zero_epochs_says_so(capsys):
    assert cli.main(["train"] + TINY + ["--epochs", "0"]) == 0
    assert "after 0 epochs (stopped: epochs); no epochs trained" in capsys.readouterr().out


def test_interrupted_resume_counts_the_runs_epochs(tmp_path, monkeypatch, capsys):
    """Ctrl-C during a resumed run: the count is the run's, and this session's beside it."""
    monkeypatch.chdir(tmp_path)
    run = ["train"] + TINY + ["--checkpoint", "run.npz"]
    assert cli.main(run + ["--epochs", "2"]) == 0
    capsys.readouterr()
    real = cli.accuracy
    calls = []

    def interrupt_in_the_second_epoch(net, X, y):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(net, X, y)
    monkeypatch.setattr(cli, "accuracy", interrupt_in_the_second_epoch)
    assert cli.main(run + ["--epochs", "6", "--resume"]) == cli.EXIT_INTERRUPTED
    assert "interrupted after 3 epochs of 6 (1 in this session)" in capsys.readouterr().out


@pytest.mark.slow
def test_the_first_run_and_the_cached_runs_train_the_same_weights(tmp_path):
    """A kernel compiled in the running process and the same kernel loaded from Numba's
    cache can round differently; warm_up compiles in a child process that fills the
    cache, so the first run, with an empty cache, trains what every later run does."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    weights = []
    for k in range(2):
        model = tmp_path / ("m%d.npz" % k)
        result = run("train", "--subset", "3000", "--preprocess", "offset", "--no-bias", "--propagate", "error",
                     "--epochs", "1", "--no-progress", "--save", str(model), env=env)
        assert result.returncode == 0, result.stderr
        assert ("compiling the per-sample SGD kernel" in result.stderr) == (k == 0)
        weights.append(fastbp.load(model).weights)
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
