"""The asv benchmarks: every benchmark imports (asv check), and a small published
dashboard renders its graphs in headless Chromium."""
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ASV = [sys.executable, "-m", "asv"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def asv_conf(tmp_path_factory):
    """asv.conf.json with its results, html and environments in a temporary folder."""
    tmp = tmp_path_factory.mktemp("asv")
    text = (ROOT / "asv_benchmarks" / "asv.conf.json").read_text()
    for key, value in [("repo", str(ROOT)), ("benchmark_dir", str(ROOT / "asv_benchmarks" / "benchmarks")),
                       ("results_dir", str(tmp / "results")), ("html_dir", str(tmp / "html")),
                       ("env_dir", str(tmp / "env"))]:
        text, count = re.subn(r'"%s": "[^"]*"' % key, '"%s": "%s"' % (key, value), text)
        assert count == 1, key
    conf = tmp / "asv.conf.json"
    conf.write_text(text)
    env = {"HOME": str(tmp), "PATH": "%s:/usr/bin:/bin" % Path(sys.executable).parent}
    return conf, tmp, env


def asv(conf, env, *args, timeout=900):
    result = subprocess.run(ASV + list(args) + ["--config", str(conf)], env=env, capture_output=True,
                            text=True, timeout=timeout, cwd=conf.parent)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_every_benchmark_imports(asv_conf):
    conf, _, env = asv_conf
    out = asv(conf, env, "check", "--python=same")
    assert "No problems found" in out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_published_dashboard_renders_graphs(asv_conf):
    conf, tmp, env = asv_conf
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "the dashboard test needs Debian's chromium package (apt-get install chromium)"
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    asv(conf, env, "machine", "--yes", "--machine", "ci-box")
    asv(conf, env, "run", "--python=same", "--quick", "--machine", "ci-box", "--set-commit-hash", commit,
        "--bench", "Forward.time_forward", "--bench", "Threads")
    asv(conf, env, "publish")
    html = tmp / "html"
    subprocess.run([sys.executable, str(ROOT / "asv_benchmarks" / "offline.py"), str(html)], check=True)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                               "--directory", str(html)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = "http://127.0.0.1:%d/#bench_kernels.Forward.time_forward" % port
        browse = [chromium] + CHROMIUM_FLAGS + ["--user-data-dir=%s" % (tmp / "chromium"),
                                                "--virtual-time-budget=20000", "--window-size=1400,900"]
        dom = subprocess.run(browse + ["--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
        subprocess.run(browse + ["--screenshot=%s" % (tmp / "dashboard.png"), url],
                       capture_output=True, timeout=180)
    finally:
        server.terminate()
        server.wait()
    # the graph page drew its plot: flot's canvases, and the benchmark's name
    assert 'class="flot-base"' in dom, dom[-2000:]
    assert "Forward.time_forward" in dom
    assert (tmp / "dashboard.png").stat().st_size > 10000
