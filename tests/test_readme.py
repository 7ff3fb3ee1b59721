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


def shell_commands():
    """The fastbp commands of the README's bash blocks: (subcommand, [--options])."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|;", line.split(" # ")[0]):
                words = part.split()
                for k, word in enumerate(words[:-1]):
                    if word.endswith("fastbp") and not words[k + 1].startswith("-"):
                        commands.append((words[k + 1], [w.split("=")[0] for w in words[k + 2:] if w.startswith("--")]))
    return commands


def test_each_command_in_the_readme_exists_with_its_options(capsys):
    from fastbp import cli
    commands = shell_commands()
    assert {"demo", "train", "evaluate", "bench"} <= {name for name, _ in commands}
    for name, options in commands:
        with pytest.raises(SystemExit) as done:
            cli.main([name, "--help"])
        assert done.value.code == 0, name
        usage = capsys.readouterr().out
        for option in options:
            assert re.search(re.escape(option) + r"\b", usage), "fastbp %s has no %s" % (name, option)


@pytest.mark.slow
def test_the_readme_python_blocks_run_in_order_in_one_interpreter(tmp_path):
    """Every Python block of the README, in order, in one interpreter (its examples train on
    subsets, as the README says; the scripts' __main__ parts run too)."""
    blocks = python_blocks()
    assert len(blocks) >= 6
    code = ("import re, sys\nfrom pathlib import Path\n"
            "blocks = re.findall(r'```python\\n(.*?)```', Path(%r).read_text(), re.S)\n"
            "namespace = {'__name__': '__main__'}\n"
            "for k, block in enumerate(blocks):\n"
            "    print('block', k, flush=True)\n"
            "    exec(compile(block, 'README block %%d' %% k, 'exec'), namespace)\n" % str(ROOT / "README.md"))
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.count("block ") == len(blocks)


def test_the_performance_table_is_the_one_its_json_file_makes(tmp_path):
    """The README's table is asv_benchmarks/readme_table.py's output for the bench run it
    names, not figures typed by hand; and the script rewrites a table in place."""
    import importlib.util
    import json
    spec = importlib.util.spec_from_file_location("readme_table", ROOT / "asv_benchmarks" / "readme_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    from fastbp.bench import peers_markdown
    source, table = script.table_in((ROOT / "README.md").read_text())
    figures = json.loads((ROOT / source).read_text())
    assert figures["processor"] and table == peers_markdown(figures)
    readme = tmp_path / "README.md"
    readme.write_text("before\n<!-- the table from old.json, written by asv_benchmarks/readme_table.py -->\n"
                      "| stale |\n<!-- end of the table -->\nafter\n")
    (tmp_path / "run.json").write_text(json.dumps(figures))
    script.write(tmp_path / "run.json", readme)
    assert script.table_in(readme.read_text()) == ("run.json", peers_markdown(figures))
    assert readme.read_text().startswith("before\n") and readme.read_text().endswith("\nafter\n")


def test_each_kept_bench_run_is_quoted_as_the_table_it_makes():
    """Every `fastbp bench --peers --json` run kept in asv_benchmarks/figures/ appears, in
    the README or asv_benchmarks/README.md, as bench.peers_markdown's table of it, beside
    its file's name: no figure of those tables is typed by hand."""
    import json

    from fastbp.bench import peers_markdown
    runs = sorted((ROOT / "asv_benchmarks" / "figures").glob("*.json"))
    assert len(runs) >= 2
    for run in runs:
        quoting = [doc for doc in (ROOT / "README.md", ROOT / "asv_benchmarks" / "README.md")
                   if "figures/" + run.name in doc.read_text()]
        assert quoting, "nothing names %s" % run.name
        assert peers_markdown(json.loads(run.read_text())) in quoting[0].read_text(), run.name
