"""Saving and loading networks: a portable .npz file (NumPy arrays, no pickle) holding
the parameters and a JSON description, written atomically.

The JSON records the format, fastbp's version, the network's definition (sizes,
activations, output, loss, bias, propagate, init, dtype), the state of its random
generator, and a SHA-256 of every array, so a truncated, foreign or tampered file is an
error, never a silently different network."""
import hashlib
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

FORMAT = "fastbp-model"
FORMAT_VERSION = 1


class ModelFileError(ValueError):
    """A model file that is not a valid fastbp model."""


def _digest(arrays):
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
    return h.hexdigest()


def atomic_write(path, write):
    """Call write(file) on a temporary file beside path, then rename it over path: a crash
    leaves the old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".", suffix=".tmp", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(net, path):
    """Write net to path (an .npz file), atomically. Returns the path."""
    from . import __version__
    arrays = {"w%d" % l: W for l, W in enumerate(net.weights)}
    if net.bias:
        arrays.update({"b%d" % l: b for l, b in enumerate(net.biases)})
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "fastbp_version": __version__,
        "sizes": net.sizes, "activation": net.activations[:-1], "output": net.output,
        "loss": net.loss_name, "bias": net.bias, "propagate": net.propagate, "init": net.init,
        "dtype": str(net.dtype), "rng_state": net._rng.bit_generator.state,
        "sha256": _digest(arrays),
    }
    arrays["metadata"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return Path(path)


def load(path):
    """Read a network written by save (or Network.save)."""
    from .network import Network
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise ModelFileError("%s: no such model file" % path) from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, zlib.error) as error:
        raise ModelFileError("%s: not a readable fastbp model (truncated or not an .npz file: %s)"
                             % (path, error)) from error
    if "metadata" not in arrays:
        raise ModelFileError("%s: not a fastbp model (no metadata in the .npz file)" % path)
    try:
        meta = json.loads(arrays.pop("metadata").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError("%s: corrupt metadata: %s" % (path, error)) from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError("%s: not a fastbp model (format %r)" % (path, meta.get("format") if isinstance(meta, dict) else meta))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError("%s: model format version %r; this fastbp reads version %d"
                             % (path, meta.get("format_version"), FORMAT_VERSION))
    if _digest(arrays) != meta.get("sha256"):
        raise ModelFileError("%s: the parameters do not match their recorded checksum: the file "
                             "was modified or damaged" % path)
    try:
        net = Network(meta["sizes"], activation=meta["activation"], output=meta["output"],
                      loss=meta["loss"], bias=meta["bias"], init=meta["init"],
                      propagate=meta["propagate"], dtype=meta["dtype"])
        net.weights = [arrays["w%d" % l] for l in range(net.n_layers)]
        if net.bias:
            net.biases = [arrays["b%d" % l] for l in range(net.n_layers)]
        net._rng.bit_generator.state = meta["rng_state"]
    except (KeyError, ValueError, TypeError) as error:
        raise ModelFileError("%s: inconsistent model file: %s" % (path, error)) from error
    return net

