"""What `fastbp info` prints: the versions, the threading layer, the BLAS libraries in
the process, Numba's cache directory (and whether it can be written), and which kernels
are in it for this version of fastbp, compiled for this processor."""
import os
import platform
import sys

from .version import __version__

# the kernels a training mode or predicting calls from Python (kernels.py): what a first
# call compiles, or loads from the cache
# (the training kernels' common builds too: kernels.py, "builds")
COMMON = "_common"
ENTRY_POINTS = ("sgd_epoch", "sgd_epoch_sparse", "batch_epoch_serial", "batch_epoch", "forward_batch",
                "predict_batch", "backward_batch", "sgd_epoch_common", "sgd_epoch_sparse_common",
                "batch_epoch_serial_common", "batch_epoch_common")


def versions():
    import llvmlite
    import numba
    import numpy
    import scipy
    import threadpoolctl

    return {"fastbp": __version__, "python": platform.python_version(), "numpy": numpy.__version__,
            "numba": numba.__version__, "llvmlite": llvmlite.__version__, "scipy": scipy.__version__,
            "threadpoolctl": threadpoolctl.__version__}


def cached_signatures(kernel):
    """How many compiled versions of kernel Numba's on-disk cache holds for this source
    (an index written for another version of the file counts as none) and this processor."""
    from .kernels import cached_keys
    return len(cached_keys(kernel))


def writable(directory):
    """Whether files can be made in directory, or in its nearest existing parent."""
    path = os.path.abspath(directory)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return False
        path = parent
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def cache_writable():
    """Whether Numba can write the kernels' on-disk cache."""
    from . import kernels
    directory = kernels.cache_dir(kernels.batch_epoch)      # (every kernel's: one module)
    return writable(directory) if directory else False


AVX512_KERNELS = {"skylakex", "cooperlake", "sapphirerapids"}    # OpenBLAS's core types that use AVX-512


def cpu_flags(path="/proc/cpuinfo"):
    """The processor's feature flags (Linux; empty elsewhere)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def processor(path="/proc/cpuinfo"):
    """The processor's model name (Linux's /proc/cpuinfo; else platform.processor())."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def blas_core_note(blas, environ=os.environ, flags=None):
    """A warning line when OPENBLAS_CORETYPE holds OpenBLAS to kernels narrower than the
    processor's (Haswell's AVX2 on an AVX-512 machine), else None. fastbp leaves the
    variable as the user set it: this says what it costs."""
    forced = environ.get("OPENBLAS_CORETYPE")
    if not forced or forced.lower() in AVX512_KERNELS:
        return None
    if "avx512f" not in (cpu_flags() if flags is None else flags):
        return None
    used = sorted({lib.get("architecture") for lib in blas if lib.get("internal_api") == "openblas"} - {None})
    if not used or any(arch.lower() in AVX512_KERNELS for arch in used):
        return None
    return ("OPENBLAS_CORETYPE=%s is set: OpenBLAS runs its %s kernels, but this processor has AVX-512; "
            "without the variable OpenBLAS picks its SkylakeX kernels "
            "(asv_benchmarks/README.md: \"Which OpenBLAS kernels run\")"
            % (forced, "/".join(used)))


def blas_libraries():
    """The BLAS libraries loaded, SciPy's (the one Numba's np.dot calls) among them."""
    import scipy.linalg.cython_blas  # noqa: F401 (loaded to be seen)
    from threadpoolctl import threadpool_info
    return [{key: lib.get(key) for key in ("internal_api", "version", "num_threads", "architecture",
                                           "threading_layer", "filepath")}
            for lib in threadpool_info() if lib.get("user_api") == "blas"]


def info():
    """A dict of everything `fastbp info` prints."""
    from . import kernels
    directory = kernels.cache_dir(kernels.batch_epoch)      # (every kernel's: one module)
    blas = blas_libraries()
    return {"versions": versions(), "executable": sys.executable, **kernels.threading_info(),
            "blas": blas, "blas_note": blas_core_note(blas), "cache_dir": directory,
            "cache_dir_writable": cache_writable(),
            "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR"),
            "cached": {name: cached_signatures(kernels.common_build(name[:-len(COMMON)]) if name.endswith(COMMON)
                                               else getattr(kernels, name)) for name in ENTRY_POINTS}}


def report(facts):
    """info() as lines of text."""
    lines = ["fastbp %s" % facts["versions"]["fastbp"],
             "  " + ", ".join("%s %s" % kv for kv in facts["versions"].items() if kv[0] != "fastbp"),
             "threading layer: %s, %d threads" % (facts["threading_layer"], facts["threads"])]
    for lib in facts["blas"] or [{"internal_api": "none loaded yet"}]:
        lines.append("BLAS: %s %s, %s threads, %s (%s)" % (
            lib.get("internal_api"), lib.get("version") or "", lib.get("num_threads") or "-",
            lib.get("architecture") or "-", lib.get("filepath") or "-"))
    if facts.get("blas_note"):
        lines.append("note: " + facts["blas_note"])
    lines.append("Numba's cache: %s (%s%s)" % (
        facts["cache_dir"], "writable" if facts["cache_dir_writable"] else "NOT writable: every process compiles",
        ", from NUMBA_CACHE_DIR" if facts["NUMBA_CACHE_DIR"] else ""))
    lines.append("cached for this version and processor (compiled signatures):")
    for name, count in facts["cached"].items():
        lines.append("  %-25s %s" % (name, count if count else "none: its first call compiles"))
    return lines
