"""Data: the IDX reader (MNIST, Fashion-MNIST), the preprocessing the seeds use, and
seed 001's generated data sets. Nothing here downloads anything.

Data
====

`fastbp.datasets`:

- `read_idx(path)` reads one IDX file (MNIST's format), gzipped or raw, checking the magic
  number, the dimensions and the file length; a truncated, corrupt or foreign file raises
  `DataError` naming the file and the problem. Sizes are computed in exact integers, and no
  more data than the header declares is read or decompressed.
- `load_fashion_mnist(path=None, scaling="unit")` returns `(X_train, y_train, X_test,
  y_test)`: images `(n, 784)`, labels int64. It reads `path` if given, else `$FASTBP_DATA`
  (or its `fashion-mnist/`) if set, else `/usr/share/datasets/fashion-mnist/` (Debian's
  `dataset-fashion-mnist`) or `~/.cache/fastbp/fashion-mnist`; nothing is downloaded. A
  directory you named that lacks the files is an error, never passed over; a missing data
  set is an error saying how to get it. `find_fashion_mnist(path)` says which directory is
  read. `load_idx_dataset(directory)` reads original MNIST the same way.
- `scaling="unit"` (pixels/255), `"offset"` (pixels/255*0.99 + 0.01: seed 000's, no input
  exactly 0) or `None` (uint8); `one_hot(y, n, style="plain"|"soft")` (0/1 targets, or
  seed 000's 0.01/0.99, which a sigmoid output can reach). `"seed000"`, the spelling of
  earlier versions, still names both (ALIASES).
- `two_clusters(n=100)` is seed 001's data: n 3-D points uniform in the unit ball around
  (1, 1, 1) labelled 1, and n around (-1, 2, -7) labelled 0. `xor()` is its XOR example.
"""
import gzip
import math
import os
import zlib
from pathlib import Path

import numpy as np

from .checks import choice
from .io import open_regular

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FILES = {  # split -> (images, labels), as MNIST and Fashion-MNIST name them
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
# IDX type byte -> big-endian NumPy dtype
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DataError(ValueError):
    """A data file that is missing, truncated, corrupt or not what it should be."""


def read_idx(path):
    """Read one IDX file (gzipped or raw) into an array of its stored shape.

    Checks the magic number (two zero bytes, a known type byte, 1..4 dimensions), and that
    the file holds exactly the bytes its dimensions call for. The header is read and
    checked first (sizes in exact integers), and no more data than it declares is ever
    read or decompressed, so a corrupt or hostile file costs no more memory than the data
    it claims to hold (a raw file's size is compared before reading)."""
    path = Path(path)
    try:
        with open_regular(path) as raw_file:
            gzipped = raw_file.read(2) == b"\x1f\x8b"
            raw_file.seek(0)
            f = gzip.GzipFile(fileobj=raw_file) if gzipped else raw_file
            try:
                return _read_idx(path, f, None if gzipped else os.fstat(raw_file.fileno()).st_size)
            except (OSError, EOFError, zlib.error) as error:
                if not gzipped:
                    raise
                raise DataError("%s: corrupt or truncated gzip data (%s)" % (path, error)) from error
    except OSError as error:
        raise DataError("%s: cannot read: %s" % (path, error.strerror or error)) from error


def _read_idx(path, f, file_size):
    magic = f.read(4)
    if len(magic) < 4 or magic[:2] != b"\x00\x00" or magic[2] not in IDX_TYPES or not 1 <= magic[3] <= 4:
        raise DataError("%s: not an IDX file (wrong magic number %s)" % (path, magic.hex() or "<empty>"))
    ndim, dtype = magic[3], np.dtype(IDX_TYPES[magic[2]])
    dims = f.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError("%s: truncated IDX header" % path)
    shape = tuple(int.from_bytes(dims[4 * k:4 * k + 4], "big") for k in range(ndim))
    expected = math.prod(shape) * dtype.itemsize          # exact: no int64 overflow
    shown = "x".join(map(str, shape))
    if file_size is not None and file_size - 4 - 4 * ndim != expected:
        have = file_size - 4 - 4 * ndim
        raise DataError("%s: %s: dimensions %s need %d data bytes, the file has %d"
                        % (path, "truncated" if have < expected else "wrong length", shown, expected, have))
    chunks, have = [], 0
    while have <= expected:                # read at most one byte past what is declared
        chunk = f.read(min(expected + 1 - have, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        have += len(chunk)
    if have != expected:
        raise DataError("%s: %s: dimensions %s need %d data bytes, the file has %s"
                        % (path, "truncated" if have < expected else "wrong length", shown, expected,
                           have if have < expected else "more"))
    data = b"".join(chunks)
    return np.frombuffer(data, dtype).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory, stem):
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")):
        if (directory / name).is_file():
            return directory / name
    return None


def load_idx_dataset(directory, flatten=True):
    """(X_train, y_train, X_test, y_test) from the four MNIST-style IDX files in directory:
    images (n, rows * cols) uint8 when flatten, labels int64. Checks that counts agree."""
    directory = Path(directory)
    stems = [stem for pair in FILES.values() for stem in pair]
    found = {stem: _find(directory, stem) for stem in stems}
    missing = [stem for stem in stems if found[stem] is None]
    if missing:
        raise DataError("%s: missing %s (.gz or raw)" % (directory, ", ".join(missing)))
    out = []
    for images, labels in FILES.values():
        paths = [found[images], found[labels]]
        X, y = read_idx(paths[0]), read_idx(paths[1])
        if X.ndim != 3 or y.ndim != 1:
            raise DataError("%s: expected images of 3 dimensions and labels of 1, got %d and %d"
                            % (directory, X.ndim, y.ndim))
        if X.shape[0] != y.shape[0]:
            raise DataError("%s: %s has %d images but %s has %d labels"
                            % (directory, paths[0].name, X.shape[0], paths[1].name, y.shape[0]))
        out += [X.reshape(len(X), -1) if flatten else X, y.astype(np.int64)]
    return tuple(out)


def cache_dir():
    """The user cache directory fastbp looks in: $XDG_CACHE_HOME/fastbp (~/.cache/fastbp)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fastbp"


def fashion_mnist_dirs(path=None):
    """Where load_fashion_mnist looks, in order: only `path` when one is given; else only
    $FASTBP_DATA (and its fashion-mnist/) when that is set; else the Debian package's
    directory and the user cache directory."""
    if path is not None:
        return [Path(path)]
    if os.environ.get("FASTBP_DATA"):
        return [Path(os.environ["FASTBP_DATA"]) / "fashion-mnist", Path(os.environ["FASTBP_DATA"])]
    return [DEBIAN_FASHION_MNIST, cache_dir() / "fashion-mnist"]


HOW_TO_GET_FASHION_MNIST = (
    "Install it with 'apt-get install dataset-fashion-mnist' (Debian and Ubuntu; it goes to "
    "%s), or put the four files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) in a directory named by "
    "$FASTBP_DATA or in %s." % (DEBIAN_FASHION_MNIST, cache_dir() / "fashion-mnist"))


def find_fashion_mnist(path=None):
    """The directory load_fashion_mnist reads (see fashion_mnist_dirs). A directory the
    user named (path, or $FASTBP_DATA) must exist and hold the files: it is never passed
    over for another copy."""
    dirs = fashion_mnist_dirs(path)
    for directory in dirs:
        if directory.is_dir() and _find(directory, FILES["train"][0]) is not None:
            return directory
    named = "the directory given" if path is not None else "$FASTBP_DATA" if os.environ.get("FASTBP_DATA") else None
    if named:
        where = dirs[0] if path is not None else Path(os.environ["FASTBP_DATA"])
        problem = "does not exist" if not where.exists() else "is not a directory" if not where.is_dir() \
            else "holds no Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz] and the others)"
        raise DataError("%s, %s, %s. %s" % (named, where, problem, HOW_TO_GET_FASHION_MNIST))
    raise DataError("Fashion-MNIST not found in %s. %s" % (", ".join(map(str, dirs)), HOW_TO_GET_FASHION_MNIST))


def load_fashion_mnist(path=None, scaling="unit", dtype="float64"):
    """Fashion-MNIST as (X_train, y_train, X_test, y_test): 60,000 and 10,000 images of
    784 pixels, labels 0..9 (FASHION_MNIST_CLASSES).

    Reads `path` if given, else $FASTBP_DATA (or its fashion-mnist/) if set, else the
    Debian package's /usr/share/datasets/fashion-mnist or the user cache directory; a
    directory named by path or $FASTBP_DATA that lacks the files is an error
    (find_fashion_mnist). Reads original MNIST the same way when `path` names its
    directory (or use load_idx_dataset).
    scaling: 'unit' (pixels / 255), 'offset' (pixels / 255 * 0.99 + 0.01) or None (uint8).
    """
    X_train, y_train, X_test, y_test = load_idx_dataset(find_fashion_mnist(path))
    return scale_pixels(X_train, scaling, dtype), y_train, scale_pixels(X_test, scaling, dtype), y_test


# pixels / 255 * scale + shift, by name
SCALINGS = {"unit": (1.0, 0.0), "offset": (0.99, 0.01)}
# one-hot targets (off, on), by name
TARGET_STYLES = {"plain": (0.0, 1.0), "soft": (0.01, 0.99)}
# the names of earlier versions, which still work: option -> {old name: its name now}
ALIASES = {"scaling": {"seed000": "offset"}, "style": {"seed000": "soft"}}


def scale_pixels(X, scaling="unit", dtype="float64"):
    """0..255 pixels to 'unit' [0, 1], or 'offset' [0.01, 1.0] (seed 000's); None: unchanged."""
    if scaling is None:
        return X
    scale, shift = SCALINGS[choice("scaling", ALIASES["scaling"].get(scaling, scaling), tuple(SCALINGS))]
    X = np.asarray(X, dtype=dtype) / 255.0
    return X * scale + shift if shift else X


def one_hot(y, n_classes, style="plain", dtype="float64"):
    """Integer labels to target rows: 'plain' 0/1, or 'soft' 0.01/0.99 (seed 000's)."""
    low, high = TARGET_STYLES[choice("style", ALIASES["style"].get(style, style), tuple(TARGET_STYLES))]
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise ValueError("labels must be a 1-D integer array, got %s %s" % (y.dtype, y.shape))
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError("labels out of range: found %d..%d for %d classes" % (y.min(), y.max(), n_classes))
    T = np.full((y.size, n_classes), low, dtype=dtype)
    T[np.arange(y.size), y] = high
    return T


def two_clusters(n=100, seed=None):
    """Seed 001's data: n 3-D points around (1, 1, 1) labelled 1 and n around (-1, 2, -7)
    labelled 0, each drawn uniformly from the unit ball around its centre (the seed's
    MATLAB SphereGenerate). Returns X (2n, 3) and y (2n,) int."""
    rng = np.random.default_rng(seed)
    parts = []
    for centre in ((1.0, 1.0, 1.0), (-1.0, 2.0, -7.0)):
        direction = rng.normal(size=(n, 3))
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        parts.append(np.asarray(centre) + direction * rng.random((n, 1)) ** (1 / 3))
    return np.vstack(parts), np.repeat([1, 0], n)


def xor():
    """The XOR problem of seed 001's end: X (4, 2), y (4,)."""
    return np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float), np.array([0, 1, 1, 0])


def synthetic_images(n_train=6000, n_test=1000, n_features=784, n_classes=10, seed=0):
    """A generated stand-in for Fashion-MNIST when it is not installed: each class a random
    prototype image, each sample its class's prototype plus noise, pixels 0..255 (uint8).
    Returns (X_train, y_train, X_test, y_test) like load_idx_dataset."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((n_classes, n_features)) * 255
    out = []
    for n in (n_train, n_test):
        y = rng.integers(0, n_classes, n)
        X = prototypes[y] * 0.5 + rng.random((n, n_features)) * 127.5
        out += [X.round().astype(np.uint8), y]
    return tuple(out)
