"""No stale kernels: Numba's cache is keyed on kernels.py alone, so the code the kernels
compile in from other modules is fingerprinted there (kernels.COMPILED_AGAINST)."""
import fastbp.functions
from fastbp import kernels


def test_the_kernels_record_what_they_compile_in():
    assert kernels.dependencies() == kernels.COMPILED_AGAINST, (
        "functions.py or a table of codes changed, but the kernels' cache would not see it: "
        "set kernels.COMPILED_AGAINST = %r (editing kernels.py invalidates the cache)"
        % kernels.dependencies())


def test_every_function_the_kernels_compile_in_is_fingerprinted():
    compiled = {f.py_func for f in vars(kernels).values() if hasattr(f, "py_func")}
    from_functions = {f for f in compiled if f.__module__ == fastbp.functions.__name__}
    assert from_functions and from_functions <= set(kernels.COMPILED_IN)


def test_a_change_changes_the_fingerprint(monkeypatch):
    before = kernels.dependencies()
    monkeypatch.setitem(kernels.RULE_CODES, "sgd", 99)
    assert kernels.dependencies() != before
