"""No stale kernels: Numba's cache is keyed on kernels.py alone, so the code the kernels
compile in from other modules is fingerprinted (kernels.FINGERPRINT) and added to the
stamp each cache entry is checked against. Where no cache can be written, the kernels
still run; and `fastbp warm-up` fills the cache with every mode ahead of the first fit."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest
from numba.core import event
from numba.core.caching import NullCache

import fastbp
import fastbp.functions
from fastbp import backends, info, kernels


def test_every_function_the_kernels_compile_in_is_fingerprinted():
    namespaces = list(vars(kernels).values()) + list(kernels._namespace.values())   # (and the dispatch's)
    compiled = {f.py_func for f in namespaces if hasattr(f, "py_func")}
    from_functions = {f for f in compiled if f.__module__ == fastbp.functions.__name__}
    assert from_functions and from_functions <= set(kernels.COMPILED_IN)
    assert kernels.FINGERPRINT == kernels.dependencies()


SAVES = """
import sys, time
from fastbp.kernels import _LockedIndex
index = _LockedIndex(sys.argv[1], "f", "stamp")
name, start = sys.argv[2], float(sys.argv[3])
while time.time() < start:                          # (every process saves at once)
    pass
for i in range(40):
    index.save((name, i), "%s %d" % (name, i))
"""


def test_processes_saving_versions_of_one_kernel_at_once_keep_every_entry(tmp_path):
    """Numba's index is read, added to and written back: without the lock, processes that
    save at once drop entries and share data files (with Numba's own save, this test lost
    entries in each of three runs)."""
    import time
    assert isinstance(kernels.sgd_epoch._cache._cache_file, kernels._LockedIndex)
    start = str(time.time() + 3)
    names = ["p%d" % k for k in range(4)]
    running = [subprocess.Popen([sys.executable, "-c", SAVES, str(tmp_path), name, start]) for name in names]
    assert [process.wait(120) for process in running] == [0] * len(names)
    index = kernels._LockedIndex(str(tmp_path), "f", "stamp")
    assert sorted(index._load_index()) == sorted((name, i) for name in names for i in range(40))
    assert all(index.load((name, i)) == "%s %d" % (name, i) for name in names for i in range(40))


def test_a_changed_fingerprint_recompiles_the_kernels(tmp_path):
    """A cache entry written under one fingerprint is not loaded under another: the run
    compiles (a miss), and the next run with the same fingerprint loads it (a hit). (Each
    run's functions.py "changes" by the word it appends to the source that is fingerprinted.)"""
    code = ("import inspect, sys; source = inspect.getsource; "
            "inspect.getsource = lambda f: source(f) + sys.argv[1]; "
            "import numpy as np, fastbp; from fastbp import kernels; "
            "fastbp.Network([3, 2], seed=0).predict(np.ones((2, 3))); s = kernels.predict_batch.stats; "
            "print(sum(s.cache_hits.values()), sum(s.cache_misses.values()))")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    seen = [subprocess.run([sys.executable, "-c", code, fingerprint], env=env, capture_output=True, text=True,
                           timeout=300).stdout.split() for fingerprint in ("one", "one", "two", "two", "one")]
    assert seen == [["0", "1"], ["1", "0"], ["0", "1"], ["1", "0"], ["0", "1"]]


def test_a_change_changes_the_fingerprint(monkeypatch):
    before = kernels.dependencies()
    monkeypatch.setitem(kernels.RULE_CODES, "sgd", 99)
    assert kernels.dependencies() != before
    monkeypatch.undo()
    monkeypatch.setattr(fastbp.functions, "GELU_C", 0.05)     # a constant a compiled function reads
    assert kernels.dependencies() != before


def unwritable_install(tmp_path):
    """A copy of the package where nothing the cache needs can be written, even by root
    (who ignores permissions): its __pycache__ and the home and cache directories are
    files, so no directory can be made in them. (As an unprivileged user a read-only
    site-packages and home give the same: Numba finds no cache location.)"""
    import shutil
    site = tmp_path / "site"
    shutil.copytree(Path(fastbp.__file__).parent, site / "fastbp",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (site / "fastbp" / "__pycache__").write_text("")
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "XDG_"))}
    env.update(PYTHONPATH=str(site), HOME=str(blocked), XDG_CACHE_HOME=str(blocked / "cache"))
    return site, env


TRAIN = ("import warnings, numpy as np, fastbp; warnings.simplefilter('always'); "
         "net = fastbp.Network([3, 4, 2], seed=0); "
         "net.train(np.ones((8, 3)), np.zeros((8, 2)), epochs=2, batch_size=1); "
         "print(fastbp.__file__, net.loss(np.ones((8, 3)), np.zeros((8, 2))))")


@pytest.mark.slow                      # (cold compiles in fresh processes)
def test_a_read_only_install_trains_without_an_on_disk_cache(tmp_path):
    """No writable NUMBA_CACHE_DIR, package directory or home: training works, compiling
    in the process, after one warning that says so and what to do."""
    site, env = unwritable_install(tmp_path)
    for cache_dir in (None, str(tmp_path / "a-file" / "numba")):         # unset, and set but unwritable
        if cache_dir:
            env["NUMBA_CACHE_DIR"] = cache_dir
        done = subprocess.run([sys.executable, "-c", TRAIN], env=env, capture_output=True, text=True,
                              timeout=600, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.startswith(str(site))                          # (the copy ran)
        assert done.stderr.count("no directory for Numba's on-disk cache can be written") == 1, done.stderr
        assert "Set NUMBA_CACHE_DIR to a writable directory" in done.stderr
        assert "no locator" not in done.stderr


@pytest.mark.slow
def test_an_unwritable_install_uses_a_writable_numba_cache_dir(tmp_path):
    site, env = unwritable_install(tmp_path)
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "cache")
    done = subprocess.run([sys.executable, "-c", TRAIN], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "on-disk cache" not in done.stderr, done.stderr[-3000:]
    assert list((tmp_path / "cache").rglob("*.nbi"))                      # the kernels went there


AFTER_WARM_UP = """
import warnings, numpy as np, fastbp
from scipy.sparse import csr_matrix
from fastbp import kernels
warnings.simplefilter("ignore")
rng = np.random.default_rng(0)
X = rng.random((300, 8)); y = rng.integers(0, 3, 300); Y = rng.random((300, 2))
with kernels.refusing_compiles():                   # WouldCompile if anything is not cached
    for solver in ("adam", "sgd", "lbfgs"):
        fastbp.MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, solver=solver).fit(X, y).predict_proba(X)
        fastbp.MLPRegressor(hidden_layer_sizes=(5,), max_iter=2, solver=solver).fit(X, Y).predict(X)
    fastbp.MLPClassifier(hidden_layer_sizes=(5,), max_iter=2, early_stopping=True).fit(X, y)
    fastbp.MLPClassifier(hidden_layer_sizes=(5,), max_iter=2).fit(csr_matrix(X), y).predict(csr_matrix(X))
    net = fastbp.Network([8, 4, 2], activation="relu", seed=0)
    for settings in ({"batch_size": 1}, {"batch_size": 32, "optimizer": "momentum"}, {"optimizer": "rprop"},
                     {"optimizer": "lm"}, {"optimizer": "br"}, {"optimizer": "scg"}):
        net.train(X, Y, epochs=1, diagnostics=False, **settings)
    net.train(csr_matrix(X), Y, epochs=1, batch_size=1, diagnostics=False)
    full = fastbp.Network([8, 4, 2], activation="gelu", seed=0)          # (the full build's per-sample kernels)
    full.train(X, Y, epochs=1, batch_size=1, diagnostics=False)
    full.train(csr_matrix(X), Y, epochs=1, batch_size=1, diagnostics=False)
    full.train(csr_matrix(X), Y, epochs=1, batch_size=32, optimizer="rmsprop", diagnostics=False)
    net.train(X, Y, epochs=1, batch_size=16, optimizer="adam", dropout=0.2, input_noise=0.1, l1=1e-4,
              max_norm=3.0, sample_weight=rng.random(300), shuffle=False, diagnostics=False)
    net.predict(X); net.deltas(X, Y)
    seed000 = fastbp.Network([8, 6, 2], bias=False, propagate="error", seed=0)     # (fastbp demo's kind)
    seed000.train(X, Y, epochs=1, lr=0.1, batch_size=1, shuffle=False, diagnostics=False)
print("ok")
"""


@pytest.mark.slow                      # (every mode's cold compile, in fresh processes)
def test_after_fastbp_warm_up_a_new_process_compiles_nothing(tmp_path):
    """`fastbp warm-up` fills an empty cache with every mode's kernels, both builds: a new
    process, on one thread or on two, then fits the estimators (each solver, dense and
    sparse) and trains every kind of rule and activation without compiling, and a second
    warm-up finds it all cached."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    warm = [sys.executable, "-m", "fastbp.cli", "warm-up", "--dtypes", "float64"]
    first = subprocess.run(warm, env=env, capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, first.stderr[-2000:]
    assert " compiled in " in first.stdout and str(tmp_path) in first.stdout
    for threads in ("1", "2"):         # (each build of the batched kernel: which a run takes depends on the load)
        after = subprocess.run([sys.executable, "-c", AFTER_WARM_UP], env=dict(env, FASTBP_THREADS=threads),
                               capture_output=True, text=True, timeout=600)
        assert after.returncode == 0 and after.stdout.strip() == "ok", (threads, after.stderr[-2000:])
    again = subprocess.run(warm + ["--json"], env=env, capture_output=True, text=True, timeout=600)
    cases = json.loads(again.stdout)
    assert {case["mode"] for case in cases} == set(fastbp.warmup.MODES)
    assert not any(case["compiled"] for case in cases)


WARM_UP_SETTINGS = """
import numpy as np, fastbp
from fastbp import kernels
rng = np.random.default_rng(0)
X, Y = rng.random((40, 6)), rng.random((40, 2))
net = fastbp.Network([6, 4, 2], seed=0)
run = dict(epochs=1, batch_size=8, optimizer="adam", dropout=0.2, diagnostics=False)
assert net.warm_up(8, optimizer="adam")             # the common build
try:
    with kernels.refusing_compiles():
        net.train(X, Y, **run)
    print("trained")
except kernels.WouldCompile:
    print("would compile")
assert net.warm_up(8, optimizer="adam", dropout=0.2)        # the full build, compiled now
assert not net.warm_up(8, optimizer="adam", dropout=0.5)    # (any rate: the same kernels)
with kernels.refusing_compiles():
    net.train(X, Y, **run)
print("ok")
"""


@pytest.mark.slow                      # (two builds' cold compiles, in a fresh process)
def test_warm_up_with_the_runs_settings_compiles_the_kernels_they_take(tmp_path):
    """Network.warm_up takes the run's settings that choose its kernels (KERNEL_SETTINGS):
    warmed without dropout, a run with it would compile the full build; warmed with it,
    the run compiles nothing."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path), NUMBA_NUM_THREADS="1")   # (no parallel builds)
    done = subprocess.run([sys.executable, "-c", WARM_UP_SETTINGS], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["would", "compile", "ok"]


def test_warm_up_refuses_a_cache_it_cannot_write_before_compiling(monkeypatch):
    from fastbp import warmup
    monkeypatch.setattr(warmup, "cache_writable", lambda: False)
    monkeypatch.setattr(fastbp.Network, "warm_up", lambda *args, **kwargs: pytest.fail("compiled"))
    with pytest.raises(OSError, match="cannot be written, so nothing compiled now would be kept"):
        warmup.warm_up()
    with pytest.raises(ValueError, match="mode"):
        warmup.warm_up(modes=["per-sample", "batched"])


def test_a_kernel_that_only_kernels_call_refuses_a_call_from_python():
    """An internal kernel has no CPython wrapper (kernels._compiled): called from Python it
    raises TypeError naming itself, where without the wrapper it would crash the
    interpreter; called from a kernel, it runs."""
    assert isinstance(kernels._adam, kernels._Internal) and isinstance(kernels._activate_rows, kernels._Internal)
    p = np.zeros(4)
    with pytest.raises(TypeError, match="_adam is called only from other kernels"):
        kernels._adam(p, p, (p, p), 0, 4, 1.0, p[:0], p, 1)
    with pytest.raises(TypeError, match="_activate_rows is called only from other kernels"):
        kernels._activate_rows(0, 0.0, p.reshape(2, 2), p[:2])


def test_no_module_calls_an_internal_kernel_from_python():
    """Every kernel that fastbp's other modules, the tests or the benchmarks call is
    compiled with its CPython wrapper."""
    root = Path(fastbp.__file__).parent.parent
    sources = [p for p in (root / "fastbp").glob("*.py") if p.name != "kernels.py"]
    sources += list((root / "tests").glob("*.py")) + list((root / "asv_benchmarks").rglob("*.py"))
    named = set()
    for path in sources:
        named.update(re.findall(r"\bkernels\.(\w+)\(", path.read_text()))
    internal = sorted(name for name in named if isinstance(getattr(kernels, name, None), kernels._Internal))
    # (this file's test above, and test_threads.py's of _sum_rows, from inside an njit function)
    assert internal == ["_activate_rows", "_adam", "_sum_rows"]


ONE_SIGNATURE = """
import os, numpy as np, fastbp
from numba.core.registry import CPUDispatcher
from fastbp import kernels
rng = np.random.default_rng(0)
X, Y = rng.random((64, 8)), rng.random((64, 2))
for activation in ("relu", "softplus"):                      # (the common build, the full one)
    net = fastbp.Network([8, 5, 2], activation=activation, seed=0)
    net.train(X, Y, epochs=1, batch_size=1, diagnostics=False)
    for threads in ("1", "2"):                                # (the one-thread build, the parallel one)
        os.environ["FASTBP_THREADS"] = threads
        net.train(X, Y, epochs=1, batch_size=16, optimizer="adam", diagnostics=False)
    net.predict(X)
    net.deltas(X, Y)
every = list(vars(kernels).values()) + list(kernels._common.values()) + list(kernels._namespace.values())
print(sorted({d.py_func.__qualname__ for d in every if isinstance(d, CPUDispatcher) and len(d.signatures) > 1}))
"""


@pytest.mark.slow                      # (both builds' cold compiles, in a fresh process)
def test_a_kernel_compiles_once_for_one_dtype(tmp_path):
    """Each kernel compiles one signature for float64 dense rows, whatever calls it: a
    literal argument (a 0, a False) is a type of its own, and where one call passed a
    literal and another a value, the kernel, and every kernel it calls, compiled twice.
    (_left_out is called with three argument lists, and raises.)"""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    done = subprocess.run([sys.executable, "-c", ONE_SIGNATURE], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "['_left_out_common']"


# Numba's implementations of np.ones, np.zeros and an array's sum (see OWN_AND_CHILDS)
NUMPYS = ("ol_np_ones", "ol_np_zeros", "array_sum")
SIDE_BY_SIDE = """
import json, sys, warnings, numpy as np, fastbp
from numba.core import event
warnings.simplefilter("ignore")
rng = np.random.default_rng(0)
X, y = rng.random((64, 8)), rng.integers(0, 3, 64)
with event.install_recorder("numba:compile") as compiled:
    if sys.argv[1] == "batch_epoch":
        fastbp.MLPClassifier(max_iter=1).fit(X, y)
    else:
        fastbp.Network([8, 6, 3], seed=0).train(X, np.eye(3)[y], epochs=1, batch_size=1)
functions = [e.data["dispatcher"].py_func for _, e in compiled.buffer if e.is_start]
print(json.dumps(sorted({f.__qualname__ for f in functions
                         if f.__module__.startswith("fastbp") or f.__qualname__.startswith(%r)})))
""" % (NUMPYS,)
# training kernel -> what this process compiles of it, what the child's part begins with,
# and what neither compiles (the common build's clipped step is _left_out: no optimizer_step;
# and none of Numba's implementations of np.ones, np.zeros and an array's sum, which it would
# compile once for each set of options of the kernels calling them: kernels._summed, and
# gradient_rows' alpha and beta)
OWN_AND_CHILDS = {"batch_epoch": ({"batch_epoch_serial_common", "forward_batch_common", "_units_pass_common"},
                                  ("backward_batch", "_delta_into"), ("optimizer_step", "_squared_norm") + NUMPYS),
                  "sgd_epoch": ({"sgd_epoch_common", "_activate_inplace_common", "_output_delta_common",
                                 "_dot_common"}, ("_first_layer_block", "_block_row"), ())}


@pytest.mark.slow                      # (a cold first run, in a fresh process)
@pytest.mark.parametrize("kernel", sorted(OWN_AND_CHILDS))
def test_a_cold_training_kernel_loads_the_part_a_child_compiled(tmp_path, kernel):
    """A first run in an empty cache (an estimator's fit; per-sample SGD): a child process
    compiles one part of the training kernel (backends.compile_side_by_side; the delta
    propagation, the first layer's block pass) with the signature the kernel calls it
    with, so this process compiles the kernel and its other parts, and loads that one
    from the cache; a process after it compiles none of fastbp's functions (Numba's
    typed-list helpers, which Network.train calls from Python, are never cached)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "FASTBP_THREADS")}
    env["NUMBA_CACHE_DIR"] = str(tmp_path)
    first, second = (subprocess.run([sys.executable, "-c", SIDE_BY_SIDE, kernel], env=env, capture_output=True,
                                    text=True, timeout=900) for _ in range(2))
    assert first.returncode == 0, first.stderr[-2000:]
    names = json.loads(first.stdout.strip().splitlines()[-1])
    own, childs, never = OWN_AND_CHILDS[kernel]
    assert own <= set(names)
    assert not [name for name in names if name.startswith(childs)]      # (the child's)
    assert not [name for name in names if never and name.startswith(never)]
    assert second.returncode == 0 and second.stdout.strip().splitlines()[-1] == "[]", second.stderr[-2000:]


def test_the_side_by_side_compile_starts_a_child_only_where_it_helps(monkeypatch):
    """backends.compile_side_by_side: for a training kernel not built yet, a child
    process compiles its CHILD_PARTS and this one the others, once in a process; none where
    the kernel is built, where the process has one CPU, where the cache cannot be written
    (the child's work would not reach this process), or where compiles are refused."""
    children, parts = [], []

    class Child:
        def __init__(self, command, **kwargs):
            children.append(command)

        def wait(self, timeout=None):
            return 0

        def kill(self):
            children.append("killed")
    monkeypatch.setattr(subprocess, "Popen", Child)
    monkeypatch.setattr(backends, "compile_parts", lambda net, kernel, common, which: parts.append(list(which)))
    built = {"kernel": True}
    monkeypatch.setattr(kernels, "built_for",
                        lambda dispatcher, dtype: built["kernel"] and "epoch" in dispatcher.py_func.__name__)
    net = fastbp.Network([3, 4, 2], dtype="float32")

    def first_call(common, kernel="batch_epoch"):                                   # (as in a new process)
        monkeypatch.setattr(backends, "_seen", set())
        return backends.compile_side_by_side(net, kernel, common)
    assert not first_call(True)                                                     # built
    built["kernel"] = False
    for cpus, writable in ((1, True), (2, False)):
        monkeypatch.setattr(backends, "available_cpus", lambda cpus=cpus: cpus)
        monkeypatch.setattr(info, "cache_writable", lambda writable=writable: writable)
        assert not first_call(True)
    monkeypatch.setattr(backends, "available_cpus", lambda: 2)
    monkeypatch.setattr(info, "cache_writable", lambda: True)
    with kernels.refusing_compiles():                       # (Network.warm_up asking what is cached)
        assert not first_call(True)
    assert children == [] and parts == []
    assert first_call(False)
    assert len(children) == 1 and children[0][-4:] == ["float32", "batch_epoch", "full", "backward"]
    assert parts == [["forward", "update"]]
    assert not backends.compile_side_by_side(net, "batch_epoch", False)            # once in a process
    assert len(children) == 1 and len(parts) == 1
    assert first_call(True, "sgd_epoch")
    assert children[1][-4:] == ["float32", "sgd_epoch", "common", "first layer"] and parts[1] == ["sample"]

    def failing(net, kernel, common, which):
        raise RuntimeError("a part failed")
    monkeypatch.setattr(backends, "compile_parts", failing)
    with pytest.raises(RuntimeError, match="a part failed"):
        first_call(True)
    assert children[-1] == "killed"                             # (no child left behind)


@pytest.mark.parametrize("kernel, batch_size, rule", [("batch_epoch", 4, "adam"), ("sgd_epoch", 1, "sgd")])
def test_the_parts_compile_with_the_kernels_signatures_and_change_no_network(kernel, batch_size, rule):
    """compile_parts, after a run of the same training kernel, build and dtype: no part
    compiles a second signature for the dtype (they are compiled with the kernel's), a
    part kept in Numba's cache loads from there, and the network it ran on is unchanged. (The
    functions generated at import, kernels.py's dispatch, have no cache: where the kernel
    came from the cache they compile here, once.)"""
    net = fastbp.Network([3, 4, 2], activation="relu", seed=0, dtype="float32")
    net.train(np.ones((8, 3), np.float32), np.zeros((8, 2), np.float32), epochs=1, batch_size=batch_size,
              optimizer=rule)
    before = net.parameter_vector().copy()
    with event.install_recorder("numba:compile") as recorded:
        backends.compile_parts(net, kernel, True)
    compiled = {e.data["dispatcher"] for _, e in recorded.buffer if e.is_start}
    assert not [d.py_func.__name__ for d in compiled if not isinstance(d._cache, NullCache)]
    kind = numba.from_dtype(net.dtype)          # (another dtype's kernel compiled here before has its own)
    ours = [[s for s in d.signatures if any(getattr(t, "dtype", None) == kind for t in s)] for d in compiled]
    assert not [d.py_func.__name__ for d, signatures in zip(compiled, ours) if len(signatures) > 1]
    np.testing.assert_array_equal(net.parameter_vector(), before)
