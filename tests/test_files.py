"""Hostile and damaged model files: every bad file is a
ModelFileError, the JSON is under the checksum and checked field by field, loading costs no
more than the network it declares, and saving leaves no debris and respects the user."""
import json
import os
import re
import stat
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

import fastbp
from fastbp import io


def model(tmp_path, name="m.npz", **kwargs):
    net = fastbp.Network([3, 4, 2], seed=0, **kwargs)
    return net, net.save(tmp_path / name)


def members(path):
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def rewrite(path, arrays, meta, resign=True, out=None):
    """Write arrays and meta as a fastbp file would, the checksum recomputed (an attacker
    who knows the format) unless resign is False."""
    meta = dict(meta)
    if resign:
        meta["sha256"] = io._digest({k: v for k, v in arrays.items() if k != "metadata"}, meta)
    arrays = dict(arrays, metadata=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    out = out or path.with_name("edited-" + path.name)
    np.savez(out, **arrays)
    return out


def split(path):
    arrays = members(path)
    return arrays, json.loads(arrays["metadata"].tobytes())


def test_every_byte_flip_is_a_model_file_error_or_the_same_network(tmp_path):
    """Each byte of a saved model inverted in turn (zip headers, directory, .npy headers,
    data, JSON): the file is refused with a ModelFileError, or (a date, a flag no reader
    uses) loads as exactly the network saved."""
    net, path = model(tmp_path)
    data = path.read_bytes()
    same = refused = 0
    bad = tmp_path / "flipped.npz"
    for offset in range(len(data)):
        flipped = bytearray(data)
        flipped[offset] ^= 0xFF
        bad.write_bytes(bytes(flipped))
        try:
            back = fastbp.load(bad)
        except fastbp.ModelFileError:
            refused += 1
            continue
        assert repr(back) == repr(net) and back.init == net.init
        for a, b in zip(net.weights + net.biases, back.weights + back.biases):
            np.testing.assert_array_equal(a, b)
        same += 1
    assert refused > len(data) / 2 and refused + same == len(data)


def test_files_of_every_wrong_kind_are_model_file_errors(tmp_path):
    net, path = model(tmp_path)
    arrays, meta = split(path)
    np.save(tmp_path / "array.npy", np.zeros(3))
    os.mkdir(tmp_path / "folder.npz")
    nested = "[" * 100000 + "]" * 100000
    with zipfile.ZipFile(tmp_path / "encrypted.npz", "w") as zf:
        info = zipfile.ZipInfo("metadata.npy")
        info.flag_bits |= 0x1
        zf.writestr(info, b"x" * 200)
    cases = {
        tmp_path / "array.npy": "not a readable fastbp model",
        tmp_path / "folder.npz": "it is a directory, not a regular file",
        tmp_path / "encrypted.npz": "encrypted",
        rewrite(path, arrays, meta, out=tmp_path / "string.npz") if False else None: None,
    }
    cases.pop(None)
    for text, message in (('"fastbp-model"', "JSON str, not an object"), (nested, "nested deeper"),
                          ("[1, 2]", "JSON list"), ("1e999999", "JSON float")):
        out = tmp_path / ("meta%d.npz" % len(cases))
        np.savez(out, **dict(arrays, metadata=np.frombuffer(text.encode(), np.uint8)))
        cases[out] = message
    for bad, message in cases.items():
        with pytest.raises(fastbp.ModelFileError, match=message):
            fastbp.load(bad)


def test_a_member_declaring_a_huge_array_is_refused_before_any_allocation(tmp_path):
    net, path = model(tmp_path)
    arrays, meta = split(path)
    good_w0 = arrays["w0"]
    # an .npy header declaring 8 TB of float64 in front of the real bytes
    header = {"descr": "<f8", "fortran_order": False, "shape": (2 ** 20, 2 ** 20)}
    out = tmp_path / "huge.npz"
    with zipfile.ZipFile(out, "w") as zf:
        for name, a in arrays.items():
            with zf.open(name + ".npy", "w") as f:
                if name == "w0":
                    np.lib.format.write_array_header_1_0(f, header)
                    f.write(good_w0.tobytes())
                else:
                    np.lib.format.write_array(f, a)
    tracemalloc.start()
    with pytest.raises(fastbp.ModelFileError, match=r"member 'w0' holds a float64 array of shape \(1048576, 1048576\)"):
        fastbp.load(out)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 * 2 ** 20


def test_a_deflated_bomb_and_a_network_declared_too_large_cost_no_memory(tmp_path):
    net, path = model(tmp_path)
    arrays, meta = split(path)
    bomb = tmp_path / "bomb.npz"                    # 256 MiB of zeros, deflated to ~260 KB
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, a in arrays.items():
            with zf.open(name + ".npy", "w") as f:
                np.lib.format.write_array(f, np.zeros(2 ** 25) if name == "w0" else a)
    assert bomb.stat().st_size < 2 ** 20
    big = rewrite(path, arrays, dict(meta, sizes=[6000, 6000, 2]), out=tmp_path / "big.npz")
    huge = rewrite(path, arrays, dict(meta, sizes=[10 ** 6, 10 ** 6, 2]), out=tmp_path / "huge.npz")
    for bad, message in ((bomb, "member 'w0' holds a float64 array of shape \\(33554432,\\)"),
                         (big, "member '[bw]0' holds a float64 array of shape \\(4.*; "
                               "the metadata calls for float64 \\(6000"),
                         (huge, "more than fastbp.io.MAX_PARAMETERS")):
        tracemalloc.start()
        with pytest.raises(fastbp.ModelFileError, match=message):
            fastbp.load(bad)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak < 8 * 2 ** 20, (bad, peak)


@pytest.mark.parametrize("field, value", [
    ("activation", ["tanh"]), ("loss", "binary_cross_entropy"), ("dtype", "float32"),
    ("propagate", "error"), ("bias", True), ("init", "he"), ("output", "softmax"),
])
def test_editing_only_the_json_breaks_the_checksum(tmp_path, field, value):
    net, path = model(tmp_path, bias=False)
    arrays, meta = split(path)
    assert meta[field] != value
    meta[field] = value        # (a dtype or bias edit also no longer fits the arrays)
    with pytest.raises(fastbp.ModelFileError, match="do not match their recorded checksum|"
                                                    "inconsistent model file: member"):
        fastbp.load(rewrite(path, arrays, meta, resign=False))


def test_editing_the_rng_state_breaks_the_checksum(tmp_path):
    net, path = model(tmp_path)
    arrays, meta = split(path)
    meta["rng_state"]["state"]["state"] += 1
    with pytest.raises(fastbp.ModelFileError, match="checksum"):
        fastbp.load(rewrite(path, arrays, meta, resign=False))


def checkpoint(tmp_path, **train):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 3)), rng.integers(0, 2, 60)
    net = fastbp.Network([3, 4, 2], activation="relu", output="softmax", loss="cross_entropy", seed=0)
    path = tmp_path / "ck.npz"
    net.train(X, y, epochs=2, checkpoint=path, **train)
    return path, X, y


@pytest.mark.parametrize("edit, message", [
    (lambda m: m["training"]["optimizer"].update(lr=-0.5), "lr must be a finite number > 0"),
    (lambda m: m["training"]["optimizer"].update(lr=float("nan")), "lr must be a finite number"),
    (lambda m: m["training"]["run"].update(batch_size=0), "batch_size must be an integer >= 1"),
    (lambda m: m["training"].update(optimizer_t=-5), "optimizer_t must be an integer >= 0"),
    (lambda m: m["training"]["run"].pop("l2"), "run must hold exactly"),
    (lambda m: m["training"]["run"].update(l1=-1.0), "l1 must be a finite number >= 0"),
    (lambda m: m["training"]["run"].update(max_norm=0), "max_norm must be a finite number > 0"),
    (lambda m: m.update(activation_parameters={"alpha": 2.0}), "'alpha' is elu's parameter"),
    (lambda m: m["training"].pop("history"), "the training description must hold exactly"),
    (lambda m: m["training"]["state"].update(stopped="bored"), "unknown state stopped 'bored'"),
    (lambda m: m["training"]["state"].update(best_epoch=99), "best_epoch 99 is after the epochs done"),
    (lambda m: m["training"]["history"].update(loss=[0.5]), "one value per epoch"),
    (lambda m: m["training"].update(schedule=["step", {"gamma": 7}]), "gamma must be"),
    (lambda m: m["training"].update(schedule=["reduce_on_plateau", {}], schedule_state={"factor": -1,
                                    "best": 1.0, "bad_epochs": 0}), "factor must be"),
    (lambda m: m["training"]["optimizer"].update(rule="adagrad"), "unknown optimizer 'adagrad'"),
    (lambda m: m.update(rng_state={"bit_generator": "MT19937"}), "rng_state is not a PCG64"),
    (lambda m: m.update(sizes=[3, 0, 2]), "every layer size must be an integer >= 1"),
    (lambda m: m.update(bias="yes"), "bias must be True or False"),
    (lambda m: m.pop("loss"), "no 'loss'"),
])
def test_a_resigned_checkpoint_is_checked_field_by_field(tmp_path, edit, message):
    path, X, y = checkpoint(tmp_path, optimizer="adam", lr=0.01)
    arrays, meta = split(path)
    edit(meta)
    bad = rewrite(path, arrays, meta)
    with pytest.raises(fastbp.ModelFileError, match=message):
        fastbp.resume(bad, X, y)


def test_a_checkpoint_edited_into_a_different_optimizer_state_is_refused(tmp_path):
    path, X, y = checkpoint(tmp_path, optimizer="adam", lr=0.01)
    arrays, meta = split(path)
    meta["training"]["optimizer"]["rule"] = "momentum"      # adam's 2 state rows, momentum's 1
    with pytest.raises(fastbp.ModelFileError, match="member 'opt_b' holds"):
        fastbp.resume(rewrite(path, arrays, meta), X, y)


def test_an_earlier_format_still_loads(tmp_path):
    net, path = model(tmp_path)
    arrays, meta = split(path)
    meta["format_version"] = 1
    meta["sha256"] = io._digest({k: v for k, v in arrays.items() if k != "metadata"})
    back = fastbp.load(rewrite(path, arrays, meta, resign=False))
    np.testing.assert_array_equal(back.weights[0], net.weights[0])


def test_files_from_before_the_new_settings_still_load(tmp_path):
    """A model without activation_parameters and a checkpoint without l1 and max_norm
    (written before 0.2.0) load with their defaults, and the checkpoint resumes."""
    net, path = model(tmp_path, activation="leaky_relu")
    arrays, meta = split(path)
    del meta["activation_parameters"]
    back = fastbp.load(rewrite(path, arrays, meta))
    assert back.activation_parameters == {"negative_slope": 0.01}
    np.testing.assert_array_equal(back.predict(np.ones((2, 3))), net.predict(np.ones((2, 3))))
    path, X, y = checkpoint(tmp_path, optimizer="adam", lr=0.01)
    arrays, meta = split(path)
    for key in ("l1", "max_norm"):
        del meta["training"]["run"][key]
    resumed, history = fastbp.resume(rewrite(path, arrays, meta), X, y, epochs=3)
    assert len(history["loss"]) == 3


def test_evaluate_reports_a_bad_file_without_a_traceback(tmp_path):
    net, path = model(tmp_path)
    arrays, meta = split(path)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **dict(arrays, metadata=np.frombuffer(b'"text"', np.uint8)))
    result = subprocess.run([sys.executable, "-m", "fastbp.cli", "evaluate", str(bad), "--data", "synthetic"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "its metadata is a JSON str" in result.stderr


def test_stale_temporaries_of_killed_saves_are_removed(tmp_path):
    net, path = model(tmp_path)
    dead = 2 ** 22 + 12345
    while True:                                    # a pid no process has
        try:
            os.kill(dead, 0)
            dead += 1
        except ProcessLookupError:
            break
        except PermissionError:
            dead += 1
    stale = tmp_path / (".m.npz.%d-abc123.tmp" % dead)
    alive = tmp_path / (".m.npz.%d-def456.tmp" % os.getppid())   # another save, in progress
    other = tmp_path / (".other.npz.%d-abc123.tmp" % dead)        # another file's
    for p in (stale, alive, other):
        p.write_bytes(b"half a save")
    net.save(path)
    assert not stale.exists() and alive.exists() and other.exists()


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_saved_files_get_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        _, path = model(tmp_path, name="new%o.npz" % mask)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    os.chmod(path, 0o640)                         # a replaced file keeps its mode
    fastbp.Network([3, 4, 2], seed=1).save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_save_through_a_symlink_writes_where_it_points(tmp_path):
    (tmp_path / "models").mkdir()
    target = tmp_path / "models" / "real.npz"
    fastbp.Network([3, 4, 2], seed=0).save(target)
    link = tmp_path / "latest.npz"
    link.symlink_to(target)
    net = fastbp.Network([3, 4, 2], seed=7)
    net.save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    np.testing.assert_array_equal(fastbp.load(target).weights[0], net.weights[0])
    assert not list(tmp_path.glob("*.tmp")) and not list((tmp_path / "models").glob(".*.tmp"))


def test_resigned_validation_rows_that_do_not_fit_the_data_are_refused(tmp_path):
    path, X, y = checkpoint(tmp_path, validation_fraction=0.2)
    arrays, meta = split(path)
    for rows in ([0, 0, 5], [3, 1000], [-1, 4]):
        arrays["val_rows"] = np.array(rows, dtype=np.int64)
        with pytest.raises(fastbp.ModelFileError, match="validation rows"):
            fastbp.resume(rewrite(path, arrays, meta), X, y, epochs=3)
    arrays["val_rows"] = np.array([1.0, 2.0])                    # a float vector
    with pytest.raises(fastbp.ModelFileError, match="member 'val_rows' holds a float64"):
        fastbp.resume(rewrite(path, arrays, meta), X, y)


def test_an_unwritable_target_is_named_as_given_and_found_before_training(tmp_path):
    net, _ = model(tmp_path)
    missing = tmp_path / "no" / "m.npz"
    with pytest.raises(FileNotFoundError, match="^cannot write %s: the directory %s does not exist$"
                       % (missing, missing.parent)):
        net.save(missing)
    with pytest.raises(IsADirectoryError, match="cannot write %s: it is a directory" % tmp_path):
        net.save(tmp_path)
    before = [w.copy() for w in net.weights]
    X, T = np.ones((8, 3)), np.zeros((8, 2))
    with pytest.raises(FileNotFoundError, match="cannot write checkpoint %s" % missing):
        net.train(X, T, epochs=3, checkpoint=missing)
    assert all(np.array_equal(a, b) for a, b in zip(before, net.weights))    # nothing trained
    net.train(X, T, epochs=1, checkpoint=tmp_path / "run.npz")
    with pytest.raises(FileNotFoundError, match="cannot write checkpoint %s" % missing):
        fastbp.resume(tmp_path / "run.npz", X, T, epochs=2, checkpoint=missing)
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_file_that_is_not_a_regular_file_is_refused_at_once(tmp_path, kind):
    """A FIFO (or a link to one) would block a reader for ever, /dev/zero would be read
    without end: each is refused before anything is read, by load, resume, the IDX
    reader and the command line."""
    from fastbp import datasets
    path = tmp_path / "model.npz"
    if kind == "fifo":
        os.mkfifo(tmp_path / "pipe")
        path.symlink_to(tmp_path / "pipe")
    elif kind == "device":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    named = {"fifo": "a FIFO (named pipe)", "device": "a character device", "directory": "a directory"}[kind]
    with pytest.raises(io.ModelFileError, match="cannot read it as a fastbp model: it is %s, not a regular file"
                       % re.escape(named)):
        fastbp.load(path)
    with pytest.raises(io.ModelFileError, match="cannot read it as a fastbp checkpoint: it is %s" % re.escape(named)):
        fastbp.resume(path, np.zeros((2, 3)), np.zeros((2, 2)))
    with pytest.raises(datasets.DataError, match="cannot read: it is %s" % re.escape(named)):
        datasets.read_idx(path)
    done = subprocess.run([sys.executable, "-m", "fastbp.cli", "evaluate", str(path)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and "it is %s, not a regular file" % named in done.stderr
