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
CHECKPOINT = "fastbp-checkpoint"
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


def _network_record(net):
    """The arrays and JSON description of a network."""
    from . import __version__
    arrays = {"w%d" % l: W for l, W in enumerate(net.weights)}
    if net.bias:
        arrays.update({"b%d" % l: b for l, b in enumerate(net.biases)})
    meta = {
        "fastbp_version": __version__,
        "sizes": net.sizes, "activation": net.activations[:-1], "output": net.output,
        "loss": net.loss_name, "bias": net.bias, "propagate": net.propagate, "init": net.init,
        "dtype": str(net.dtype), "rng_state": net._rng.bit_generator.state,
    }
    return arrays, meta


def _write(path, kind, arrays, meta):
    meta = dict(meta, format=kind, format_version=FORMAT_VERSION, sha256=_digest(arrays))
    arrays = dict(arrays, metadata=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return Path(path)


def _read(path, kinds):
    """(arrays, metadata) of a file written by _write as one of `kinds`, every check made."""
    what = "model" if FORMAT in kinds else "checkpoint"
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except FileNotFoundError:
        raise ModelFileError("%s: no such %s file" % (path, what)) from None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, zlib.error) as error:
        raise ModelFileError("%s: not a readable fastbp %s (truncated or not an .npz file: %s)"
                             % (path, what, error)) from error
    if "metadata" not in arrays:
        raise ModelFileError("%s: not a fastbp %s (no metadata in the .npz file)" % (path, what))
    try:
        meta = json.loads(arrays.pop("metadata").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError("%s: corrupt metadata: %s" % (path, error)) from error
    found = meta.get("format") if isinstance(meta, dict) else meta
    if found not in kinds:
        hint = "; it is a saved model, not a training run" if found == FORMAT else ""
        raise ModelFileError("%s: not a fastbp %s (format %r)%s" % (path, what, found, hint))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ModelFileError("%s: %s format version %r; this fastbp reads version %d"
                             % (path, what, meta.get("format_version"), FORMAT_VERSION))
    if _digest(arrays) != meta.get("sha256"):
        raise ModelFileError("%s: the arrays do not match their recorded checksum: the file "
                             "was modified or damaged" % path)
    return arrays, meta


def _network(path, arrays, meta, what):
    from .network import Network
    try:
        net = Network(meta["sizes"], activation=meta["activation"], output=meta["output"],
                      loss=meta["loss"], bias=meta["bias"], init=meta["init"],
                      propagate=meta["propagate"], dtype=meta["dtype"])
        net.weights = [arrays["w%d" % l] for l in range(net.n_layers)]
        if net.bias:
            net.biases = [arrays["b%d" % l] for l in range(net.n_layers)]
        net._rng.bit_generator.state = meta["rng_state"]
    except (KeyError, ValueError, TypeError) as error:
        raise ModelFileError("%s: inconsistent %s file: %s" % (path, what, error)) from error
    return net


def save(net, path):
    """Write net to path (an .npz file), atomically. Returns the path."""
    return _write(path, FORMAT, *_network_record(net))


def load(path):
    """Read a network written by save (or Network.save), or the network of a training
    checkpoint (see fastbp.resume to continue its training)."""
    arrays, meta = _read(path, (FORMAT, CHECKPOINT))
    return _network(path, arrays, meta, "model")


def save_checkpoint(loop, path):
    """Write a training run's whole state (a training.Loop) to path, atomically: the
    network, the optimizer's state and step count, the schedule's state, the random
    generator, the validation rows, the best weights so far and the history."""
    arrays, meta = _network_record(loop.net)
    arrays.update(opt_w=loop.optimizer.state["w"], opt_b=loop.optimizer.state["b"])
    if loop.best is not None:
        arrays.update(best_w=loop.best[0], best_b=loop.best[1])
    if loop.val_rows is not None:
        arrays["val_rows"] = loop.val_rows
    meta["training"] = loop.describe()
    return _write(path, CHECKPOINT, arrays, meta)


def load_checkpoint(path):
    """(network, training description, arrays) from a checkpoint written by save_checkpoint."""
    arrays, meta = _read(path, (CHECKPOINT,))
    try:
        return _network(path, arrays, meta, "checkpoint"), meta["training"], arrays
    except KeyError as error:
        raise ModelFileError("%s: inconsistent checkpoint: no %s" % (path, error)) from error
