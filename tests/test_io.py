"""Saving and loading: an exact round trip; foreign, truncated and tampered files refused."""
import json
import zipfile

import numpy as np
import pytest

import fastbp
from fastbp import io


@pytest.mark.parametrize("kwargs", [
    dict(sizes=[5, 4, 3], activation="tanh", output="softmax", loss="cross_entropy", dtype="float32"),
    dict(sizes=[5, 4, 4, 1], activation=["relu", "sigmoid"], bias=False, propagate="error"),
])
def test_round_trip_is_exact(tmp_path, kwargs):
    net = fastbp.Network(seed=3, **kwargs)
    rng = np.random.default_rng(0)
    X = rng.random((20, 5))
    net.train(X, rng.random((20, net.sizes[-1])) if net.loss_name != "cross_entropy" else np.arange(20) % 3)
    path = net.save(tmp_path / "model.npz")
    back = fastbp.load(path)
    assert repr(back) == repr(net) and back.init == net.init
    for a, b in zip(net.weights + (net.biases or []), back.weights + (back.biases or [])):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(net.predict(X), back.predict(X))
    # the random generator's state travels too: further training continues identically
    Y = rng.random((20, net.sizes[-1])) if net.loss_name != "cross_entropy" else np.arange(20) % 3
    net.train(X, Y, epochs=2)
    back.train(X, Y, epochs=2)
    np.testing.assert_array_equal(net.weights[0], back.weights[0])
    assert not list(tmp_path.glob(".*.tmp"))                    # no temporary left behind


def tampered(tmp_path, change):
    net = fastbp.Network([3, 2, 1], seed=0)
    path = net.save(tmp_path / "m.npz")
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    change(arrays)
    out = tmp_path / ("bad%d.npz" % len(list(tmp_path.glob("bad*.npz"))))
    np.savez(out, **arrays)
    return out


def test_bad_files_are_clear_errors(tmp_path):
    good = fastbp.Network([3, 2, 1], seed=0).save(tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(good[: len(good) // 2])
    (tmp_path / "text.npz").write_text("hello")
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))

    def edit_meta(arrays, **changes):
        meta = json.loads(arrays["metadata"].tobytes())
        meta.update(changes)
        arrays["metadata"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)

    cases = [
        (tmp_path / "truncated.npz", "not a readable fastbp model"),
        (tmp_path / "text.npz", "not a readable fastbp model"),
        (tmp_path / "foreign.npz", r"not a fastbp model \(no metadata"),
        (tmp_path / "absent.npz", "no such model file"),
        (tampered(tmp_path, lambda a: a.__setitem__("w0", a["w0"] + 1e-9)), "do not match their recorded checksum"),
        (tampered(tmp_path, lambda a: edit_meta(a, format="other")), r"not a fastbp model \(format 'other'\)"),
        (tampered(tmp_path, lambda a: edit_meta(a, format_version=99)), "format version 99"),
        (tampered(tmp_path, lambda a: a.__setitem__("metadata", np.frombuffer(b"{oops", np.uint8))),
         "corrupt metadata"),
        (tampered(tmp_path, lambda a: edit_meta(a, sizes=[3, 5, 1])), "inconsistent model file"),
    ]
    for path, message in cases:
        with pytest.raises(fastbp.ModelFileError, match=message):
            fastbp.load(path)


def test_save_is_atomic(tmp_path, monkeypatch):
    """A write that fails midway leaves the previous model untouched and no debris."""
    path = tmp_path / "model.npz"
    fastbp.Network([3, 2, 1], seed=0).save(path)
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK half a file")
        raise OSError("disk full")

    monkeypatch.setattr(io.np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        fastbp.Network([3, 2, 1], seed=1).save(path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]
    assert zipfile.is_zipfile(path)
