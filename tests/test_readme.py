"""The README's quick start is what CI runs."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def quick_start_commands():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start.*?```bash\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line and not line.startswith("#")]


def test_ci_runs_the_readme_test_command():
    setup_and_demo, tests = quick_start_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci.splitlines()
    assert "pytest" in tests and "fastbp demo" in setup_and_demo
    assert "bash .ci/debian-packages fashion-mnist" in setup_and_demo


def python_blocks():
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_the_dask_examples_are_scripts_that_can_start_workers():
    """A LocalCluster spawns its workers, which import the script again: an example that
    starts one must keep its work under `if __name__ == "__main__":`."""
    dask_blocks = [b for b in python_blocks() if "local_cluster" in b or "distributed.train(" in b]
    assert len(dask_blocks) >= 2
    for block in dask_blocks:
        assert 'if __name__ == "__main__":' in block, block


@pytest.mark.slow
def test_the_dask_examples_run_as_scripts(tmp_path):
    """Each README example written as a script runs as one, start to end (the sweep on a
    subset: about 15 s each on a 2-core machine)."""
    scripts = [b for b in python_blocks() if 'if __name__ == "__main__":' in b]
    assert scripts
    for k, block in enumerate(scripts):
        path = tmp_path / ("example%d.py" % k)
        path.write_text(block)
        done = subprocess.run([sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]


OPTIONAL = ("onnx", "onnxruntime", "distributed", "dask", "dask_ml", "jax", "torch", "pandas")


def collect_without_optional_extras(*args):
    """pytest --co in a process where the optional extras cannot be imported: a finder
    ahead of the others refuses them, as if they were not installed."""
    code = ("import sys\nclass Refuse:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in %r: raise ModuleNotFoundError('No module named %%r' %% name)\n"
            "sys.meta_path.insert(0, Refuse())\nimport pytest\n"
            "sys.exit(pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', *%r]))" % (OPTIONAL, args))
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_quick_loop_collects_without_the_optional_extras():
    done = collect_without_optional_extras("-m", "not slow")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "left out: tests/test_export.py (needs onnx, onnxruntime" in done.stdout
    assert "left out: tests/test_distributed.py (needs distributed, dask_ml" in done.stdout
    assert "tests/test_network.py::" in done.stdout and "tests/test_export.py::" not in done.stdout


def test_the_whole_suite_refuses_to_start_without_them():
    done = collect_without_optional_extras()
    assert done.returncode != 0
    assert "the whole suite needs dask_ml, distributed, jax, onnx, onnxruntime, pandas" in done.stdout + done.stderr
