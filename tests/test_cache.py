"""No stale kernels: Numba's cache is keyed on kernels.py alone, so the code the kernels
compile in from other modules is fingerprinted (kernels.FINGERPRINT) and added to the
stamp each cache entry is checked against. And where no cache can be written, the
kernels still run."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import fastbp
import fastbp.functions
from fastbp import kernels


def test_every_function_the_kernels_compile_in_is_fingerprinted():
    namespaces = list(vars(kernels).values()) + list(kernels._namespace.values())   # (and the dispatch's)
    compiled = {f.py_func for f in namespaces if hasattr(f, "py_func")}
    from_functions = {f for f in compiled if f.__module__ == fastbp.functions.__name__}
    assert from_functions and from_functions <= set(kernels.COMPILED_IN)
    assert kernels.FINGERPRINT == kernels.dependencies()


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
