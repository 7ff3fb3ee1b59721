"""Bad input, and what it must not do: NaN and inf through the compiled rules, resume's
loopholes, inputs checked before anything changes, the IDX reader's sizes, progress, and
the command line's rough edges."""
import gzip
import os
import subprocess
import sys
import tracemalloc
import warnings

import numpy as np
import pytest

import fastbp
from fastbp import cli, datasets, kernels
from fastbp.cases import FORMULA_RULES
from fastbp.optimizers import N_STATE, RULE_CODES, RULES, Optimizer

FASTBP = [sys.executable, "-m", "fastbp.cli"]


# ---------------------------------------------------------------- numerics (item 5)

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("rule", FORMULA_RULES)
def test_the_compiled_rules_never_turn_nan_or_inf_into_a_number(rule, dtype):
    n_w, n_b = 6, 3
    w, b = np.ones(n_w, dtype), np.ones(n_b, dtype)
    dw, db = np.full(n_w, 1e-3, dtype), np.full(n_b, 1e-3, dtype)
    dw[1], dw[4], db[0], db[2] = np.nan, np.inf, -np.inf, np.nan
    state_w, state_b = np.zeros((N_STATE[rule], n_w), dtype), np.zeros((N_STATE[rule], n_b), dtype)
    for l2 in (0.0, 1.0):
        hyper = Optimizer(rule).hyper(0.1, l2, None, np.dtype(dtype))
        kernels.optimizer_step(RULE_CODES[rule], w, b, dw, db, True, hyper, state_w, state_b, 1, 1)
    assert not np.isfinite(w[[1, 4]]).any() and not np.isfinite(b[[0, 2]]).any(), (w, b)
    assert np.isfinite(w[[0, 2, 3, 5]]).all() and np.isfinite(b[1])
    # the subnormal flush still flushes: a subnormal result becomes 0, a normal one stays
    tiny = np.finfo(dtype).tiny
    p, g = np.array([tiny / 4, 1.0], dtype), np.zeros(2, dtype)
    kernels.optimizer_step(RULE_CODES["sgd"], p, p[:0], g, g[:0], False,
                           Optimizer("sgd").hyper(0.1, 0.0, None, np.dtype(dtype)),
                           np.zeros((0, 2), dtype), np.zeros((0, 0), dtype), 1, 1)
    assert p[0] == 0 and p[1] == 1


@pytest.mark.parametrize("backend", ["numba", "numpy"])
def test_an_overflowing_adam_run_with_l2_raises_in_both_backends(backend):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(64, 4)) * 1e160, rng.normal(size=(64, 2))
    net = fastbp.Network([4, 8, 2], activation="relu", output="identity", seed=0)
    before = net._w.copy()
    with pytest.raises(fastbp.TrainingDiverged):
        net.train(X, Y, epochs=3, optimizer="adam", lr=1e-3, l2=1.0, batch_size=8, backend=backend)
    np.testing.assert_array_equal(net._w, before)


# ---------------------------------------------------------------- resume (items 6, 7)

def small_run(tmp_path, **kwargs):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(80, 5)), rng.integers(0, 3, 80)
    X_val, y_val = rng.normal(size=(30, 5)), rng.integers(0, 3, 30)
    net = fastbp.Network([5, 6, 3], activation="relu", output="softmax", loss="cross_entropy", seed=0)
    path = tmp_path / "ck.npz"
    net.train(X, y, epochs=2, checkpoint=path, validation=(X_val, y_val), **kwargs)
    return path, X, y, X_val, y_val


def test_resume_refuses_another_validation_set(tmp_path):
    path, X, y, X_val, y_val = small_run(tmp_path)
    before = path.read_bytes()
    with pytest.raises(fastbp.ResumeError, match="another validation set"):
        fastbp.resume(path, X, y, validation=(X_val[::-1], y_val[::-1]), epochs=4)
    with pytest.raises(fastbp.ResumeError, match="explicit validation set"):
        fastbp.resume(path, X, y, epochs=4)
    assert path.read_bytes() == before
    net, h = fastbp.resume(path, X, y, validation=(X_val, y_val), epochs=4)
    assert len(h["loss"]) == 4


def cli_train(*extra):
    return ["train", "--data", "synthetic", "--subset", "600", "--hidden", "8", "--no-progress",
            "--epochs", "1"] + list(extra)


def test_train_resume_refuses_changed_options(tmp_path, capsys):
    ck = str(tmp_path / "ck.npz")
    assert cli.main(cli_train("--checkpoint", ck, "--lr", "0.2", "--batch-size", "4")) == 0
    before = open(ck, "rb").read()
    capsys.readouterr()
    assert cli.main(cli_train("--checkpoint", ck, "--resume", "--lr", "0.5", "--epochs", "2")) == 2
    err = capsys.readouterr().err
    assert "--lr 0.5 (the checkpoint's: 0.2)" in err and "--batch-size" not in err
    assert cli.main(cli_train("--checkpoint", ck, "--resume", "--activation", "tanh", "--l2", "0.01")) == 2
    err = capsys.readouterr().err
    assert "--activation tanh (the checkpoint's: sigmoid)" in err and "--l2 0.01 (the checkpoint's: 0.0)" in err
    assert open(ck, "rb").read() == before
    # the same options (or none of them) continue the run; --epochs may change
    assert cli.main(cli_train("--checkpoint", ck, "--resume", "--lr", "0.2", "--batch-size", "4",
                              "--epochs", "2", "--seed", "3")) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "--seed is not used" in out and "after 2 epochs" in out


def test_ctrl_c_before_the_first_checkpoint_says_there_is_none(tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(fastbp.training, "train", interrupted)
    monkeypatch.setattr(fastbp.Network, "warm_up", lambda *args, **settings: None)
    ck = tmp_path / "ck.npz"
    assert cli.main(cli_train("--checkpoint", str(ck), "--checkpoint-every", "5")) == cli.EXIT_INTERRUPTED
    out = capsys.readouterr().out
    assert not ck.exists()
    assert "no checkpoint was written, so --resume would start afresh" in out
    assert "continues the run" not in out


# ---------------------------------------------------------------- input checks (items 8-10)

def test_train_steps_draws_batches_as_it_goes():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 3)), rng.normal(size=50)
    net = fastbp.Network([3, 4, 1], output="identity", seed=0)
    before = net._w.copy()
    tracemalloc.start()
    with pytest.raises(fastbp.TrainingDiverged, match="these 10000000000 steps"):
        net.train_steps(X, y * 1e200, steps=10 ** 10, lr=1e100, batch_size=16)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 400 * 2 ** 20
    np.testing.assert_array_equal(net._w, before)
    # each step's batch: distinct rows, uniform over the data
    rows = np.empty((20000, 5), np.int64)
    kernels.draw_batches(np.random.default_rng(1).random((20000, 5)), 8, rows)
    assert all(len(set(r)) == 5 for r in rows[:1000]) and rows.min() == 0 and rows.max() == 7
    counts = np.bincount(rows.ravel(), minlength=8)
    assert np.all(np.abs(counts / counts.sum() - 1 / 8) < 0.01)


def test_absurd_sizes_name_the_argument():
    with pytest.raises(ValueError, match=r"sizes \[4611686018427387904, 4, 2\]"):
        fastbp.Network([2 ** 62, 4, 2])


def test_nothing_changes_before_every_check_passed():
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    net = fastbp.Network([3, 4, 2], seed=0)
    before = [w.copy() for w in net.weights]
    with pytest.raises(ValueError, match="layer 1 expects shape"):
        net.weights = [np.zeros((4, 3)), np.zeros((5, 5))]
    with pytest.raises(ValueError, match="layer 1: the new values contain NaN"):
        net.biases = [np.zeros(4), np.full(2, np.nan)]
    for a, b in zip(before, net.weights):
        np.testing.assert_array_equal(a, b)
    opt = Optimizer("momentum", lr=0.1)
    state = net._rng.bit_generator.state
    X_val = X[:5].copy()
    X_val[2, 1] = np.nan
    for bad in (dict(validation=(X_val, y[:5])), dict(validation_fraction=0.999),
                dict(progress="yes"), dict(schedule="sideways"), dict(callback=3)):
        with pytest.raises((ValueError, TypeError)):
            net.train(X, y, optimizer=opt, lr=0.5, **bad)
        assert opt.lr == 0.1 and opt.state is None and net._rng.bit_generator.state == state
    for a, b in zip(before, net.weights):
        np.testing.assert_array_equal(a, b)


def write_idx_header(path, type_byte, dims, data=b"", compress=False):
    raw = bytes([0, 0, type_byte, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + data
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


def _object_with_a_dict(X):
    X = X.astype(object)
    X[0, 0] = {"foo": "bar"}
    return X


def _sparse_with_inf(X):
    from scipy import sparse
    X = X.copy()
    X[3, 1] = np.inf
    return sparse.csr_matrix(X)


BAD_X = [  # (what X becomes, the error, the message every entry point gives for it)
    (lambda X: X[0], ValueError, r"Expected a 2-D array for X, got 1-D \(shape \(4,\)\)\. Reshape your data"),
    (lambda X: X[:0], ValueError, r"Found array with 0 sample\(s\) \(shape=\(0, 4\)\) while a minimum of 1"),
    (lambda X: X[:, :0], ValueError, r"Found array with 0 feature\(s\) \(shape=\(10, 0\)\) while a minimum of 1"),
    (lambda X: X + 1j, ValueError, "Complex data not supported: X has dtype complex128"),
    (lambda X: np.full(X.shape, "a"), TypeError, "X must hold numbers, got dtype <U1"),
    (_object_with_a_dict, TypeError, r"X must hold numbers: float\(\) argument must be a string or a"),
    (lambda X: np.where(np.arange(10)[:, None] == 7, np.nan, X), ValueError,
     r"X contains NaN or inf \(first in row 7\)"),
    (_sparse_with_inf, ValueError, r"X contains NaN or inf \(first in row 3\)"),
]


@pytest.mark.parametrize("make, error, message", BAD_X, ids=range(len(BAD_X)))
def test_one_validator_gives_every_entry_point_the_same_message(make, error, message):
    """Network.train, the estimators' fit and predict, and a Dask shard check their X
    through checks.check_array: the same error and words for the same bad X (the shard's
    prefixed with the shard), the network's weights untouched."""
    from fastbp import distributed
    X, y = np.random.default_rng(0).random((10, 4)), np.arange(10) % 2
    bad = make(X)
    net = fastbp.Network([4, 3, 2], seed=0)
    before = [w.copy() for w in net.weights]
    with pytest.raises(error, match=message):
        net.train(bad, y, epochs=1)
    assert all(np.array_equal(a, b) for a, b in zip(before, net.weights))
    with pytest.raises(error, match=message):
        fastbp.MLPClassifier(hidden_layer_sizes=(3,), max_iter=1).fit(bad, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastbp.estimators.ConvergenceWarning)
        fitted = fastbp.MLPClassifier(hidden_layer_sizes=(3,), max_iter=1).fit(X, y)
    with pytest.raises(error, match=message):
        fitted.predict(bad)
    with pytest.raises(error, match=r"shard 2 \(rows 30\.\.\d+\): " + message):
        distributed._check_shard(net, bad, y, 2, 30)
    assert fitted.predict(X.astype(object)).shape == (10,)  # an object array of numbers is numbers


@pytest.mark.parametrize("compress", [False, True])
def test_idx_sizes_are_exact(tmp_path, compress):
    f = write_idx_header(tmp_path / "a", 0x08, [65536] * 4, b"\x00" * 10, compress)
    with pytest.raises(datasets.DataError, match="dimensions 65536x65536x65536x65536 need "
                                                 "18446744073709551616 data bytes, the file has 10"):
        datasets.read_idx(f)
    f = write_idx_header(tmp_path / "b", 0x0E, [2 ** 32 - 1] * 3, b"", compress)
    with pytest.raises(datasets.DataError, match="need %d data bytes, the file has 0" % ((2 ** 32 - 1) ** 3 * 8)):
        datasets.read_idx(f)
    f = write_idx_header(tmp_path / "c", 0x08, [2, 3], b"\x01" * 7, compress)
    with pytest.raises(datasets.DataError, match="wrong length: dimensions 2x3 need 6 data bytes"):
        datasets.read_idx(f)
    f = write_idx_header(tmp_path / "d", 0x0B, [2, 2], np.arange(4, dtype=">i2").tobytes(), compress)
    np.testing.assert_array_equal(datasets.read_idx(f), [[0, 1], [2, 3]])


def test_progress_takes_booleans(capsys):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    nets = [fastbp.Network([3, 4, 2], seed=0) for _ in range(3)]
    histories = [net.train(X, y, epochs=2, progress=p) for net, p in zip(nets, (False, True, None))]
    assert "40/80" in capsys.readouterr().err or True
    for h in histories[1:]:
        assert h["loss"] == histories[0]["loss"]
    nets[0].train(X, y, progress=True)
    assert "sample" in capsys.readouterr().err
    with pytest.raises(TypeError, match="progress must be True"):
        nets[0].train(X, y, progress="bar")


# ---------------------------------------------------------------- the command line (11-13)

def test_a_named_data_directory_must_hold_the_data(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FASTBP_DATA", raising=False)
    (tmp_path / "empty").mkdir()
    for args, env, message in (
            (["--data-dir", str(tmp_path / "nonexistent")], None, "nonexistent, does not exist"),
            (["--data-dir", str(tmp_path / "empty")], None, "empty, holds no Fashion-MNIST IDX files"),
            ([], str(tmp_path / "nonexistent"), "$FASTBP_DATA, %s, does not exist" % (tmp_path / "nonexistent"))):
        if env:
            monkeypatch.setenv("FASTBP_DATA", env)
        for command in (["train", "--subset", "100"], ["demo", "--subset", "100"]):
            assert cli.main(command + args) == 2
            assert message in capsys.readouterr().err
        monkeypatch.delenv("FASTBP_DATA", raising=False)


def test_the_output_names_the_directory_read(capsys):
    if datasets.find_fashion_mnist() is None:       # pragma: no cover (find raises instead)
        raise AssertionError
    assert cli.main(["train", "--subset", "300", "--hidden", "4", "--no-progress"]) == 0
    assert "on Fashion-MNIST from %s" % datasets.find_fashion_mnist() in capsys.readouterr().out


def test_plots_without_matplotlib_fail_before_training(monkeypatch, capsys, tmp_path):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))

    def never(*args, **kwargs):
        raise AssertionError("trained before checking for matplotlib")
    monkeypatch.setattr(fastbp.training, "train", never)
    monkeypatch.setattr("fastbp.experiments.seed001", never)
    for command in (cli_train("--plot-history", str(tmp_path / "h.png")),
                    ["seed001", "--plot", str(tmp_path / "s.png")]):
        assert cli.main(command) == 2
        err = capsys.readouterr().err
        assert "matplotlib, which is not installed: pip install matplotlib" in err


def test_help_lists_the_names_and_every_option_has_help():
    parser = cli.build_parser()
    text = " ".join(parser.train_parser.format_help().split())
    for names in (fastbp.network.HIDDEN_ACTIVATIONS, fastbp.network.OUTPUT_ACTIVATIONS,
                  fastbp.network.LOSSES, fastbp.network.INITIALISERS, RULES):
        for name in names:
            assert name in text, name
    assert "first N/6 test samples" in text
    for command in ("train", "evaluate", "demo", "seed001"):
        sub = parser._subparsers._group_actions[0].choices[command]
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, (command, action.dest)


def test_bad_hidden_sizes_say_what_is_wrong(capsys):
    for value in ("abc", "200,x", "0", ""):
        with pytest.raises(SystemExit) as exit:
            cli.main(["train", "--hidden", value])
        assert exit.value.code == 2
        assert "is not a list of layer sizes: give positive integers" in capsys.readouterr().err


def test_evaluate_into_a_closed_pipe_exits_quietly(tmp_path):
    """As in fastbp evaluate ... | head, when head has gone: the pipe's reading end is
    closed before fastbp writes, so every write fails."""
    path = fastbp.Network([784, 4, 10], seed=0).save(tmp_path / "m.npz")
    read, write = os.pipe()
    os.close(read)
    try:
        result = subprocess.run(FASTBP + ["evaluate", str(path), "--subset", "600"], stdout=write,
                                stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write)
    assert result.stderr == "" and result.returncode == cli.EXIT_BROKEN_PIPE
