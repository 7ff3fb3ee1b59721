"""The IDX reader on the real Fashion-MNIST files and on broken ones; the seeds' data."""
import gzip
import struct

import numpy as np
import pytest

from fastbp import datasets
from fastbp.datasets import DataError


def write_idx(path, array, type_byte=0x08, compress=False):
    header = b"\x00\x00" + bytes([type_byte, array.ndim]) + struct.pack(">%dI" % array.ndim, *array.shape)
    raw = header + array.astype(np.dtype(datasets.IDX_TYPES[type_byte])).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)
    return path


@pytest.fixture(scope="module")
def fashion():
    return datasets.load_fashion_mnist(scaling=None)


def test_real_fashion_mnist(fashion):
    X_train, y_train, X_test, y_test = fashion
    assert X_train.shape == (60000, 784) and X_test.shape == (10000, 784)
    assert X_train.dtype == np.uint8 and y_train.dtype == np.int64
    assert set(np.unique(y_train)) == set(range(10)) and np.bincount(y_test).tolist() == [1000] * 10
    assert X_train.max() == 255 and X_train.min() == 0


def test_scaling_options(fashion):
    X = fashion[0][:100]
    unit, offset = datasets.scale_pixels(X, "unit"), datasets.scale_pixels(X, "offset")
    assert unit.min() >= 0 and unit.max() <= 1
    np.testing.assert_allclose(offset, X / 255 * 0.99 + 0.01)
    assert offset.min() >= 0.01 and offset.max() <= 1.0
    T = datasets.one_hot(np.array([2, 0]), 3, style="soft")
    np.testing.assert_array_equal(T, [[0.01, 0.01, 0.99], [0.99, 0.01, 0.01]])
    np.testing.assert_array_equal(datasets.one_hot(np.array([1]), 2), [[0.0, 1.0]])
    with pytest.raises(ValueError, match="labels out of range"):
        datasets.one_hot(np.array([3]), 3)
    with pytest.raises(ValueError, match="unknown scaling 'zscore'; choose from 'unit', 'offset'"):
        datasets.scale_pixels(X, "zscore")
    with pytest.raises(ValueError, match="unknown style 'hard'; choose from 'plain', 'soft'"):
        datasets.one_hot(np.array([0]), 2, style="hard")


def test_the_old_seed000_spelling_still_names_the_offset_scaling_and_the_soft_targets(fashion):
    X = fashion[0][:100]
    np.testing.assert_array_equal(datasets.scale_pixels(X, "seed000"), datasets.scale_pixels(X, "offset"))
    np.testing.assert_array_equal(datasets.one_hot(np.array([2, 0]), 3, style="seed000"),
                                  datasets.one_hot(np.array([2, 0]), 3, style="soft"))


@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip_every_type(tmp_path, compress):
    rng = np.random.default_rng(0)
    for type_byte, dtype in datasets.IDX_TYPES.items():
        a = (rng.random((3, 4, 2)) * 100).astype(dtype)
        back = datasets.read_idx(write_idx(tmp_path / ("a%d" % type_byte), a, type_byte, compress))
        np.testing.assert_array_equal(back, a)
        assert back.dtype.isnative


def test_corrupt_idx_files_name_the_file_and_the_problem(tmp_path):
    good = write_idx(tmp_path / "good", np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
    raw = good.read_bytes()
    cases = {
        "truncated": (raw[:-5], r"truncated: dimensions 2x3x4 need 24 data bytes, the file has 19"),
        "too-long": (raw + b"\x00", r"wrong length: dimensions 2x3x4 need 24 data bytes, the file has 25"),
        "magic": (b"\x01\x02" + raw[2:], r"not an IDX file \(wrong magic number 0102"),
        "type": (raw[:2] + b"\x07" + raw[3:], "not an IDX file"),
        "empty": (b"", r"wrong magic number <empty>"),
        "header": (raw[:6], "truncated IDX header"),
        "gzip": (gzip.compress(raw)[:-10], "corrupt or truncated gzip data"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(DataError, match=message) as caught:
            datasets.read_idx(path)
        assert str(path) in str(caught.value)
    with pytest.raises(DataError, match="cannot read"):
        datasets.read_idx(tmp_path / "absent")


def test_dataset_directory_checks(tmp_path):
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 255, (5, 2, 2)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(4))          # one label short
    write_idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 255, (3, 2, 2)), compress=True)
    with pytest.raises(DataError, match="missing t10k-labels-idx1-ubyte"):
        datasets.load_idx_dataset(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(3), compress=True)
    with pytest.raises(DataError, match="has 5 images but train-labels-idx1-ubyte has 4 labels"):
        datasets.load_idx_dataset(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(5))
    X, y, X_test, y_test = datasets.load_idx_dataset(tmp_path)    # as MNIST is read
    assert X.shape == (5, 4) and X_test.shape == (3, 4) and y.tolist() == [0, 1, 2, 3, 4]


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "DEBIAN_FASHION_MNIST", tmp_path / "none")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("FASTBP_DATA", raising=False)
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        datasets.load_fashion_mnist(tmp_path / "nowhere")


def test_fastbp_data_variable_is_searched(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("t10k", 2)):
        write_idx(tmp_path / ("%s-images-idx3-ubyte.gz" % split), rng.integers(0, 255, (n, 28, 28)), compress=True)
        write_idx(tmp_path / ("%s-labels-idx1-ubyte.gz" % split), rng.integers(0, 10, n), compress=True)
    monkeypatch.setenv("FASTBP_DATA", str(tmp_path))
    X, y, X_test, y_test = datasets.load_fashion_mnist()
    assert X.shape == (6, 784) and X_test.shape == (2, 784) and X.max() <= 1.0


def test_seed001_data():
    X, y = datasets.two_clusters(100, seed=0)
    assert X.shape == (200, 3) and y.tolist() == [1] * 100 + [0] * 100
    for label, centre in ((1, (1, 1, 1)), (0, (-1, 2, -7))):
        distances = np.linalg.norm(X[y == label] - centre, axis=1)
        assert distances.max() <= 1.0 and distances.mean() > 0.5
    X, y = datasets.xor()
    assert X.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]] and y.tolist() == [0, 1, 1, 0]
