"""The file layer: portable .npz files (NumPy arrays, no pickle) with a JSON description,
written atomically and checked when read. Saved models and checkpoints are such files.

This module is the file layer and imports nothing of fastbp: what a file holds is its
caller's schema. The network's record (Network.record, network.network_members) lives with
the network, the checkpoint's (save_checkpoint, checkpoint_arrays) in run.py. A file's
JSON records its format and version, and a SHA-256 of every array and of the JSON itself,
so a truncated, foreign or tampered file is an error, never a silently different network.

Reading trusts nothing in the file. The zip directory, the .npy headers and the JSON are
read and checked first: every member must be one the metadata calls for (the caller's
schema), with the shape and dtype it calls for, and the network no larger than
MAX_PARAMETERS, before any array is read. Reading a file therefore costs about twice the
memory of the network it declares, and any bad file, however made, is a ModelFileError.


Saved models
============

`net.save(path)` writes an `.npz` file of plain arrays (no pickle) with JSON metadata: the
format and its version, fastbp's version, sizes, activations, output, loss, bias,
propagate, init, dtype, the random generator's state, and a SHA-256 of the parameters and
of the JSON itself. `fastbp.load(path)` gives back the same network exactly.

- **Any bad file is a `fastbp.ModelFileError`**, whatever is wrong with it: truncated,
  foreign (an `.npy`, a zip of something else), encrypted or oddly compressed members, a
  byte flipped anywhere (tested for every byte of a file), metadata that is not a JSON
  object or nests absurdly deep, an edited JSON (under the checksum), or a re-signed one
  whose fields do not pass the constructor's checks. `fastbp evaluate` reports it in one
  line, without a traceback.
- **Loading is memory-bounded.** The zip directory, the `.npy` headers and the JSON are
  read first; every array must have exactly the shape and dtype the JSON's network calls
  for, and the network must have at most `fastbp.io.MAX_PARAMETERS` (2^28, 2 GiB of
  float64) parameters, before anything is decompressed or allocated. A file costs about
  twice the memory of the network it declares (a 257 KB deflated 256 MiB array, or a 2 KB
  file declaring a 6000x6000 layer, is refused having allocated under 8 MiB: tested with
  tracemalloc).
- **Writing** is atomic (a temporary file beside the target, fsync, rename), so a crash
  leaves the old file or the new one. The temporary's name holds the writer's process id;
  a save removes those of earlier saves to the same file whose process is gone (killed
  mid-write). A new file gets the umask's mode (0666 less the umask), a replaced file keeps
  its mode, and a save through a symbolic link writes the file the link points to.
- Files of format version 1 (fastbp 0.1.0, whose checksum covered the arrays only) still
  load, their JSON checked field by field; saving writes version 2.
"""
import hashlib
import json
import os
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FORMAT = "fastbp-model"
CHECKPOINT = "fastbp-checkpoint"
FORMAT_VERSION = 2            # 2: the checksum covers the JSON too
READS = (1, 2)                # version 1 files (fastbp 0.1.0) load; their JSON is checked
MAX_PARAMETERS = 2 ** 28      # weights and biases a file may declare (2 GiB of float64)
MAX_METADATA_BYTES = 2 ** 24  # the JSON: a checkpoint's history grows by ~0.5 KB an epoch
MAX_JSON_DEPTH = 32


class ModelFileError(ValueError):
    """A model file that is not a valid fastbp model."""


def hash_array(h, a, name=""):
    """Feed an array's name, dtype, shape and bytes to the hash h (a hashlib object): the
    one way fastbp hashes arrays (a file's checksum, a checkpoint's data fingerprint)."""
    a = np.ascontiguousarray(a)
    h.update(name.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())


def _digest(arrays, meta=None):
    """SHA-256 of the arrays (names, dtypes, shapes, bytes) and, from format 2 on, of the
    JSON description without its own sha256 field."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        hash_array(h, arrays[name], name)
    if meta is not None:
        h.update(json.dumps({k: v for k, v in meta.items() if k != "sha256"}, sort_keys=True).encode())
    return h.hexdigest()


# ---------------------------------------------------------------- writing

def _umask():
    """The process's umask, read without changing it where Linux tells it."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return pid > 0 and not isinstance(pid, bool)
    return True


def _remove_stale_temporaries(path):
    """Delete the temporaries of earlier saves to path that were killed before they could
    clean up: '.NAME.PID-XXXX.tmp' files whose process is gone."""
    prefix = "." + path.name + "."
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:
        return
    for name in names:
        pid = name[len(prefix):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            try:
                os.unlink(path.parent / name)
            except OSError:
                pass


def check_writable(path, what=""):
    """Raise an OSError that names path as given (and what it is for, such as '--save')
    unless a file can be written there: its directory exists and can be written, and path
    is not a directory or other non-regular file. Called before work whose result goes
    there, so that a wrong path fails at once, not after a long run."""
    shown = "%s%s" % (what + " " if what else "", os.fspath(path))
    real = Path(os.path.realpath(path))
    parent = real.parent
    if real.is_dir():
        raise IsADirectoryError("cannot write %s: it is a directory" % shown)
    if real.exists() and not real.is_file():
        raise OSError("cannot write %s: it is not a regular file" % shown)
    if not parent.exists():
        raise FileNotFoundError("cannot write %s: the directory %s does not exist" % (shown, parent))
    if not parent.is_dir():
        raise NotADirectoryError("cannot write %s: %s is not a directory" % (shown, parent))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError("cannot write %s: the directory %s is not writable" % (shown, parent))
    return path


def atomic_write(path, write):
    """Call write(file) on a temporary file beside path, then rename it over path: a crash
    leaves the old file or the new one, never half of one.

    A path that is a symbolic link is written where the link points (the link stays). The
    file gets the mode of the file it replaces, or 0666 less the umask when new, as open()
    would give it. Temporaries left by earlier saves that were killed are removed. Errors
    name path as given, never the temporary."""
    given = check_writable(path)
    path = Path(os.path.realpath(path))
    _remove_stale_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix="." + path.name + ".%d-" % os.getpid(), suffix=".tmp",
                                   dir=path.parent)
    except OSError as error:
        raise type(error)("cannot write %s: %s" % (os.fspath(given), error.strerror or error)) from None
    try:
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.chmod(tmp, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_file(path, kind, arrays, meta):
    """Write arrays and the JSON meta as a fastbp file of this kind, atomically."""
    meta = json.loads(json.dumps(dict(meta, format=kind, format_version=FORMAT_VERSION)))
    meta["sha256"] = _digest(arrays, meta)
    arrays = dict(arrays, metadata=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))
    atomic_write(path, lambda f: np.savez(f, **arrays))
    return Path(path)


# ---------------------------------------------------------------- reading

def open_regular(path):
    """path opened for reading in binary, or an OSError at once if it is not a regular
    file (a FIFO, a device such as /dev/zero, a directory, or a symbolic link to one):
    opened without blocking and checked on the open descriptor, so that nothing waits on
    a pipe or reads without end. (The error's message does not repeat the path: the
    caller's names it.)"""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                    else "a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
            raise OSError("it is %s, not a regular file" % kind)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class _Bad(Exception):
    """A problem found in a file; _read words it as a ModelFileError."""


def _members(zf):
    """{array name: ZipInfo} of an .npz file's directory, every entry checked."""
    infos = {}
    for info in zf.infolist():
        name = info.filename
        if not name.endswith(".npy") or "/" in name or name[:-4] in infos:
            raise _Bad("unexpected member %r in the .npz file" % name)
        if info.flag_bits & 0x1:
            raise _Bad("member %r is encrypted" % name)
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise _Bad("member %r uses an unsupported compression (%d)" % (name, info.compress_type))
        infos[name[:-4]] = info
    return infos


def _read_array(zf, info, shape, dtype, limit=None):
    """One member's array, after checking that its .npy header declares exactly `shape`
    and `dtype` (C order; shape None: any 1-D length up to `limit`) and that the zip
    entry's size agrees: nothing is read or allocated for an array other than the one
    expected."""
    name = info.filename[:-4]
    with zf.open(info) as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise _Bad("member %r: unsupported .npy version %s" % (name, version))
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        found_shape, fortran, found_dtype = read_header(f)
        if shape is None and len(found_shape) == 1 and found_shape[0] <= limit:
            shape = found_shape
        if fortran or found_dtype != np.dtype(dtype) or found_shape != tuple(shape or ()):
            raise _Bad("inconsistent {what} file: member %r holds a %s array of shape %s%s; "
                       "the metadata calls for %s %s"
                       % (name, found_dtype, found_shape, " (Fortran order)" if fortran else "",
                          np.dtype(dtype), "a vector of at most %d" % limit if shape is None
                          else tuple(shape)))
        a = np.empty(shape, dtype)
        if info.file_size != f.tell() + a.nbytes:
            raise _Bad("member %r: its zip entry's size %d does not match its header"
                       % (name, info.file_size))
        view = memoryview(a.reshape(-1)).cast("B")
        done = 0
        while done < a.nbytes:
            chunk = f.read(min(a.nbytes - done, 1 << 24))
            if not chunk:
                raise _Bad("member %r is truncated" % name)
            view[done:done + len(chunk)] = chunk
            done += len(chunk)
        if f.read(1):                     # also makes zipfile check the entry's CRC
            raise _Bad("member %r is longer than its header says" % name)
    return a


def _json_depth_ok(text):
    """Whether the JSON text nests no deeper than MAX_JSON_DEPTH (counted on brackets
    outside strings), so that parsing it cannot exhaust the stack."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def _metadata(zf, infos):
    if "metadata" not in infos:
        raise _Bad("not a fastbp {what} (no metadata in the .npz file)")
    try:
        raw = _read_array(zf, infos["metadata"], None, np.uint8, MAX_METADATA_BYTES)
        text = raw.tobytes().decode()
    except UnicodeDecodeError as error:
        raise _Bad("corrupt metadata: %s" % error) from None
    if not _json_depth_ok(text):
        raise _Bad("corrupt metadata: JSON nested deeper than %d levels" % MAX_JSON_DEPTH)
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as error:
        raise _Bad("corrupt metadata: %s" % error) from None
    if not isinstance(meta, dict):
        raise _Bad("not a fastbp {what} (its metadata is a JSON %s, not an object)" % type(meta).__name__)
    return meta


def read_file(path, kinds, members):
    """(arrays, metadata) of a file written by write_file as one of `kinds`, every check
    made (any problem is a ModelFileError). The schema is the caller's: members(meta, kind)
    gives {name: (shape, dtype)} of the arrays the metadata calls for (a shape of None: any
    vector), raising KeyError, TypeError or ValueError where the metadata is inconsistent,
    and is called before any array is read."""
    what = "model" if FORMAT in kinds else "checkpoint"
    path = Path(path)
    try:
        source = open_regular(path)
    except FileNotFoundError:
        raise ModelFileError("%s: no such %s file" % (path, what)) from None
    except OSError as error:
        raise ModelFileError("%s: cannot read it as a fastbp %s: %s" % (path, what, error.strerror or error)) from None
    try:
        with source, zipfile.ZipFile(source) as zf:
            infos = _members(zf)
            meta = _metadata(zf, infos)
            found = meta.get("format")
            if found not in kinds:
                hint = "; it is a saved model, not a training run" if found == FORMAT else ""
                raise _Bad("not a fastbp {what} (format %r)%s" % (found, hint))
            if meta.get("format_version") not in READS:
                raise _Bad("{what} format version %r; this fastbp reads versions %s"
                           % (meta.get("format_version"), ", ".join(map(str, READS))))
            try:
                expected = members(meta, found)
            except (KeyError, TypeError, ValueError, OverflowError) as error:
                raise _Bad("inconsistent {what} file: %s" % reason(error)) from None
            names = set(infos) - {"metadata"}
            if names != set(expected):
                raise _Bad("inconsistent {what} file: members %s, but the metadata calls for %s"
                           % (sorted(names), sorted(expected)))
            arrays = {name: _read_array(zf, infos[name], *expected[name], MAX_PARAMETERS)
                      for name in sorted(expected)}
    except FileNotFoundError:
        raise ModelFileError("%s: no such %s file" % (path, what)) from None
    except _Bad as error:
        raise ModelFileError("%s: %s" % (path, str(error).replace("{what}", what))) from None
    except Exception as error:             # zipfile, zlib and .npy header errors of any kind
        raise ModelFileError("%s: not a readable fastbp %s (truncated, damaged or not an .npz "
                             "file: %s: %s)" % (path, what, type(error).__name__, error)) from None
    digest = _digest(arrays, meta if meta["format_version"] >= 2 else None)
    if digest != meta.get("sha256"):
        raise ModelFileError("%s: the arrays or the metadata do not match their recorded "
                             "checksum: the file was modified or damaged" % path)
    return arrays, meta


def check_parameters(sizes, n):
    """Refuse a file declaring a network of n parameters (sizes) above MAX_PARAMETERS; a
    members() schema calls it before any array is read."""
    if n > MAX_PARAMETERS:
        raise _Bad("declares a network %s of %d parameters, more than fastbp.io.MAX_PARAMETERS "
                   "= %d; raise that limit to load it" % (sizes, n, MAX_PARAMETERS))


def reason(error):
    return "no %s" % error if isinstance(error, KeyError) else str(error)
