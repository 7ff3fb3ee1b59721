"""The tests' problems come from fastbp.cases, the one table of cases (built from the
tables of activations, losses and rules) that also drives the asv benchmarks.

Tests of optional parts need their extras. The whole suite (the README's test command,
which installs `.[test]`) refuses to start without them, so nothing is dropped unseen; a
run that selects by marker (the quick loop, `pytest -m "not slow"` with only `.[dev]`)
leaves those tests out and names them at the end."""
import importlib.util

import pytest

from fastbp.cases import OUTPUT_LOSS, problem, targets
from fastbp.functions import HIDDEN_ACTIVATIONS

make_problem = problem            # (the tests' name for it)
make_targets = targets

__all__ = ["HIDDEN_ACTIVATIONS", "OUTPUT_LOSS", "make_problem", "make_targets"]

# test file, or one test's node id -> the modules it imports beyond `.[dev]`
NEEDS = {
    "tests/test_export.py": ("onnx", "onnxruntime"),
    "tests/test_distributed.py": ("distributed", "dask_ml"),
    "tests/test_bench.py::test_jax_peer_trains": ("jax",),
    "tests/test_bench.py::test_peer_table_has_fastbp_and_ratios": ("jax",),
    "tests/test_bench.py::test_the_peers_predict_the_same_probabilities": ("jax",),
    "tests/test_parity.py::test_feature_names_from_data_frames": ("pandas",),
    "tests/test_methods.py::test_lm_follows_pyrenns_lm_from_the_same_start": ("pyrenn",),
}


def _installed(module):
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:                    # (a finder that refuses it: see test_readme)
        return False


def _missing():
    return {key: [m for m in modules if not _installed(m)] for key, modules in NEEDS.items()}


def pytest_configure(config):
    missing = {key: mods for key, mods in _missing().items() if mods}
    config._fastbp_left_out = missing
    if missing and not config.option.markexpr:
        names = sorted({m for mods in missing.values() for m in mods})
        raise pytest.UsageError(
            "the whole suite needs %s, which %s not installed: pip install -e '.[test]' (or select by marker, "
            "as the quick loop does: pytest -m \"not slow\" leaves out the tests that need them)"
            % (", ".join(names), "is" if len(names) == 1 else "are"))


def pytest_ignore_collect(collection_path, config):
    relative = collection_path.relative_to(config.rootpath).as_posix() if collection_path.is_relative_to(
        config.rootpath) else None
    return True if relative in config._fastbp_left_out else None


def pytest_collection_modifyitems(config, items):
    left_out = config._fastbp_left_out
    dropped = [item for item in items if item.nodeid.split("[")[0] in left_out]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [item for item in items if item not in dropped]


def pytest_terminal_summary(terminalreporter, config):
    for key, modules in config._fastbp_left_out.items():
        terminalreporter.write_line("left out: %s (needs %s: pip install -e '.[test]')" % (key, ", ".join(modules)))
