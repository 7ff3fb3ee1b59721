"""The benchmark helpers behind fastbp bench and fastbp compare, on small inputs (the
figures themselves are measured, never asserted)."""
import os

import numpy as np
import pytest

from fastbp import bench, compare


def test_flop_counts():
    # per sample: a forward product and an update per first-layer weight, and the layers
    # above also send their error back; 2 flops per multiply-add
    assert bench.per_sample_flops([784, 100, 10]) == 2 * (2 * 78400 + 3 * 1000)
    assert bench.batched_flops([784, 100, 10], 60000) == 60000 * bench.per_sample_flops([784, 100, 10])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fma_peak_is_a_rate(dtype):
    peak = bench.fma_peak_gflops(dtype, seconds=0.05)
    assert 0.5 < peak < 10000


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_blas_peak_is_the_fastest_square_product_on_one_thread(dtype, monkeypatch):
    from fastbp.threads import _controller

    def blas_threads():
        return [lib.num_threads for lib in _controller().select(user_api="blas").lib_controllers]
    calls, before, real = [], blas_threads(), bench._square_products

    def counting(A, B, C, rounds):
        calls.append((A.shape[0], A.dtype, blas_threads()))
        real(A, B, C, rounds)
        np.testing.assert_allclose(C, A @ B, rtol=1e-5)
    monkeypatch.setattr(bench, "_square_products", counting)
    peak = bench.blas_peak_gflops(dtype, seconds=0.03, sizes=(32, 64))
    assert 0.01 < peak < 100000
    assert {n for n, _, _ in calls} == {32, 64} and {d for _, d, _ in calls} == {np.dtype(dtype)}
    assert all(set(threads) == {1} for _, _, threads in calls)         # one core's rate
    assert blas_threads() == before


@pytest.mark.parametrize("products", list(bench.GEMM_PRODUCTS))
def test_the_gemm_floor_runs_the_products_it_names(products):
    from numba.typed import List
    rng = np.random.default_rng(0)
    sizes, rows = [6, 5, 4, 3], 7
    Xb = rng.random((rows, sizes[0]))
    Ws = List([rng.random((o, i)) for i, o in zip(sizes, sizes[1:])])
    Zs = List([np.zeros((rows, o)) for o in sizes[1:]])
    Es = List([rng.random((rows, o)) for o in sizes[1:]])
    Gs = List([np.zeros_like(W) for W in Ws])
    E_in = [E.copy() for E in Es]
    code = bench.GEMM_PRODUCTS[products]
    bench._gemm_epoch(Xb, Ws, Zs, Es, Gs, 1, code)
    a = Xb
    for l in range(3):                                  # every layer's forward product
        np.testing.assert_allclose(Zs[l], a @ Ws[l].T)
        a = Zs[l]
    # the delta propagation's E W, for every layer but the first (each layer's E is read
    # before the layer above writes it)
    np.testing.assert_allclose(Es[0], E_in[1] @ Ws[1] if code >= 1 else E_in[0])
    np.testing.assert_allclose(Es[1], E_in[2] @ Ws[2] if code >= 1 else E_in[1])
    np.testing.assert_allclose(Es[2], E_in[2])
    for l in range(3):                                  # the gradient's D^T A, only for a step
        a_in = Xb if l == 0 else Zs[l - 1]
        np.testing.assert_allclose(Gs[l], E_in[l].T @ a_in if code == 2 else 0.0)
    assert bench.gemm_seconds(sizes, 20, rows, "float64", repeats=1, products=products) > 0


def test_batched_table_rows():
    rows = bench.batched_table(16, 512, 1, cases=((64, "sgd"), (128, "adam")))
    assert [(r[0], r[1]) for r in rows] == [(64, "sgd"), (128, "adam")]
    for _, _, epoch_s, gflops, gemm_s, gemm_gflops, ratio in rows:
        assert epoch_s > 0 and gemm_s > 0 and gflops > 0 and gemm_gflops > 0 and ratio > 0
        assert gflops == pytest.approx(bench.batched_flops([784, 16, 10], 512) / epoch_s / 1e9)


@pytest.mark.parametrize("mode", list(bench.CONTENTION_MODES))
def test_contention_table_times_every_mode_and_restores_the_setting(monkeypatch, mode):
    monkeypatch.setenv("FASTBP_THREADS", "1")
    rows = bench.contention_table(8, "float32", 256, 1, mode)
    assert [r[0] for r in rows] == ["default", "FASTBP_THREADS=1"]
    assert all(alone > 0 and busy > 0 and ratio > 0 for _, alone, busy, ratio in rows)
    assert os.environ["FASTBP_THREADS"] == "1"


def test_contention_table_runs_beside_as_many_busy_processes_as_asked_and_ends_them(monkeypatch):
    started = []
    real = bench.subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real(*args, **kwargs))
        return started[-1]
    monkeypatch.setattr(bench.subprocess, "Popen", popen)
    rows = bench.contention_table(8, "float32", 256, 2, "mini-batch SGD, 200", competitors=2)
    assert len(rows) == 2 and all(busy > 0 for _, _, busy, _ in rows)
    assert len(started) == 2 * 2                              # two busy processes in each of 2 rounds
    assert all(p.args[-1] == bench._BUSY and p.poll() is not None for p in started)   # all ended


@pytest.mark.parametrize("rule", ["sgd", "adam"])
@pytest.mark.parametrize("batch_size", [1, 32])
def test_jax_peer_trains(batch_size, rule):
    X, y = bench.peer_data(256)
    assert bench.jax_seconds(X, y, 8, batch_size, repeats=1, rule=rule) > 0


def test_jax_trains_float64_with_x64_enabled_for_that_call_only():
    import warnings

    import jax.numpy as jnp
    X, y = bench.peer_data(64, dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("error")    # (float64 asked of JAX without x64 warns, and is float32)
        assert bench.jax_seconds(X, y, 8, 32, repeats=1, rule="adam") > 0
    assert jnp.asarray(1.0).dtype == jnp.float32


def test_every_installed_peer_trains_in_float64():
    # ([test] installs JAX and scikit-learn; PyTorch, where installed: '.[peers]')
    rows = bench.peer_table(256, 8, 1, cases=((1, "sgd"), (32, "sgd"), (200, "adam")), dtype="float64")
    names = {r[2] for r in rows}
    assert {"fastbp", "JAX jit + lax.scan", "scikit-learn MLPClassifier", *bench.installed_peers()} <= names
    assert all(r[3] > 0 and r[4] > 0 for r in rows)


def test_peer_table_has_fastbp_and_ratios():
    rows = bench.peer_table(256, 8, 1, cases=((32, "sgd"),))
    names = [r[2] for r in rows]
    assert names[0] == "fastbp" and "JAX jit + lax.scan" in names
    assert rows[0][4] == 1.0 and all(r[3] > 0 and r[4] > 0 for r in rows)
    # like with like: JAX in order, and the products alone, are over fastbp in order
    in_order = {r[2]: r for r in rows if r[2].endswith(", in order")}
    assert set(in_order) == {"fastbp, in order", "JAX jit + lax.scan, in order"}
    assert in_order["fastbp, in order"][4] == 1.0
    floor = [r for r in rows if r[2] == bench.PRODUCTS]
    assert len(floor) == 1 and floor[0][3] > 0
    assert floor[0][4] == pytest.approx(floor[0][3] / in_order["fastbp, in order"][3])     # (one pair: its ratio)


def test_the_products_alone_are_the_epochs_products_in_the_datas_dtype(monkeypatch):
    calls = []
    monkeypatch.setattr(bench, "gemm_seconds", lambda *args, **kwargs: calls.append((args, kwargs)) or 1.0)
    X, y = bench.peer_data(300, n_in=20, n_out=4, dtype="float64")
    assert bench.products_seconds(X, y, 8, 32, repeats=2, rule="adam") == 1.0
    assert calls == [(([20, 8, 4], 300, 32), {"dtype": np.float64, "repeats": 2})]


def test_the_products_column_gives_each_in_order_epoch_over_the_products():
    rows = [(64, "sgd", "fastbp", 1.0, 1.0), (64, "sgd", "fastbp, in order", 0.9, 1.0),
            (64, "sgd", "JAX jit + lax.scan, in order", 1.2, 1.33), (64, "sgd", bench.PRODUCTS, 0.75, 0.83)]
    figures = {"peers": [dict(hidden=8, batch_size=b, rule=r, who=w, seconds=s, ratio=q) for b, r, w, s, q in rows]}
    header, _, row = bench.peers_markdown(figures).splitlines()
    assert "products alone" in header
    assert "| 0.750 (1.20x, 1.60x) |" in row                     # 0.9 / 0.75 and 1.2 / 0.75
    figures["peers"] = figures["peers"][:3]                     # a run from before the column
    header, _, row = bench.peers_markdown(figures).splitlines()
    assert "products alone" not in header and row.count("|") == header.count("|")


def test_each_contender_starts_after_the_last_ones_threads_are_at_rest(monkeypatch):
    events = []

    def runner(name):
        def run(X, y, hidden, batch_size, repeats, rule="sgd", shuffle=True):
            events.append(name if shuffle else name + " in order")
            return 1.0
        return run
    monkeypatch.setattr(bench, "fastbp_peer_seconds", runner("fastbp"))
    monkeypatch.setattr(bench, "jax_seconds", runner("jax"))
    monkeypatch.setattr(bench, "products_seconds", runner("products"))
    monkeypatch.setattr(bench, "installed_peers", lambda: {bench.JAX: bench.jax_seconds})
    monkeypatch.setattr(bench.time, "sleep", lambda seconds: events.append(seconds))
    bench.peer_table(64, 8, 2, cases=((32, "sgd"),))
    pause = bench.BLAS_IDLE
    assert events == [pause, "fastbp", pause, "jax", pause, "fastbp in order", pause, "jax in order",
                      pause, "products in order"] * 2


def test_the_peers_predict_the_same_probabilities():
    X, _ = bench.peer_data(50)
    expected = bench.fastbp_predictor(784, 16, 10)(X)
    assert expected.shape == (50, 10) and np.ptp(expected) > 0.1
    installed = bench.installed_peers()
    assert {"JAX jit + lax.scan", "scikit-learn MLPClassifier"} <= set(installed)   # (the test extra's)
    for name in installed:
        np.testing.assert_allclose(bench.PREDICT_PEERS[name](784, 16, 10)(X), expected, rtol=1e-4, atol=1e-6,
                                   err_msg=name)


def test_predict_table_times_fastbp_and_each_peer():
    rows = bench.predict_table(8, 1, rows=300)
    assert [r[0] for r in rows] == ["fastbp", *bench.installed_peers()]
    assert rows[0][2] == 1.0 and all(seconds > 0 and ratio > 0 for _, seconds, ratio in rows)


def test_head_to_head_against_scikit_learn():
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    f = compare.head_to_head(X[:1200], y[:1200], X[1200:], y[1200:], epochs=10, pairs=1)
    assert len(f["fastbp_s"]) == len(f["sklearn_s"]) == 1
    assert 0.3 < f["fastbp_score"][0] <= 1 and 0.3 < f["sklearn_score"][0] <= 1   # chance: 0.1
    assert f["ratio"] == pytest.approx(f["sklearn_s"][0] / f["fastbp_s"][0])
    # the products alone, timed after the pair, and each fit over them
    assert len(f["products_s"]) == 1 and 0 < f["products_s"][0]
    assert f["fastbp_over_products"] == pytest.approx(f["fastbp_s"][0] / f["products_s"][0])
    assert f["sklearn_over_products"] == pytest.approx(f["sklearn_s"][0] / f["products_s"][0])


def test_head_to_head_regressors_complete_the_lower_half_of_each_image():
    from sklearn.datasets import load_digits
    X = (load_digits().data / 16).astype(np.float32)
    top, low = compare.halves(X)
    assert top.shape == low.shape == (len(X), 32) and np.array_equal(np.hstack([top, low]), X)
    f = compare.head_to_head(top[:1200], low[:1200], top[1200:], low[1200:], epochs=100, pairs=1,
                             kind="regressor")
    assert f["kind"] == "regressor" and len(f["fastbp_s"]) == len(f["sklearn_s"]) == 1
    # pooled R^2 on held-out images: well above predicting the mean (0), for both (0.40, 0.38)
    assert 0.3 < f["fastbp_score"][0] < 1 and 0.3 < f["sklearn_score"][0] < 1
    T = low[1200:]
    assert compare.pooled_r2(T, T) == 1.0
    assert compare.pooled_r2(T, np.broadcast_to(T.mean(axis=0), T.shape)) == pytest.approx(0.0, abs=1e-12)
    assert f["ratio"] == pytest.approx(f["sklearn_s"][0] / f["fastbp_s"][0])


@pytest.mark.slow
def test_compile_seconds_per_training_mode():
    times = bench.compile_seconds("float32")
    assert list(times) == list(bench.COMPILE_MODES)
    for cold, cached in times.values():
        assert cold > 0 and cached > 0
    # the per-sample kernel compiles for seconds, and loads from the cache far quicker
    assert times["per-sample SGD"][1] < times["per-sample SGD"][0]


@pytest.mark.slow
def test_first_fit_of_each_estimator_cold_and_cached():
    times = bench.first_fit_seconds()
    assert list(times) == list(bench.ESTIMATORS)
    for cold, cached in times.values():
        assert cached < cold                     # the first compiles, the second loads


def test_bench_times_the_peers_at_each_hidden_size(tmp_path, capsys):
    out = tmp_path / "figures.json"
    bench.main(["--samples", "256", "--reference-samples", "64", "--dtypes", "float32", "--no-compile",
                "--repeats", "1", "--peers", "--peer-samples", "400", "--peer-hidden", "8", "16",
                "--json", str(out)])
    import json
    peers = json.loads(out.read_text())["peers"]
    assert {row["hidden"] for row in peers} == {8, 16}
    for hidden in (8, 16):
        rows = [row for row in peers if row["hidden"] == hidden]
        assert {(row["batch_size"], row["rule"]) for row in rows} == set(bench.PEER_CASES) | {
            (bench.PREDICT_ROWS, "predict")}
        assert all(row["seconds"] > 0 for row in rows)
        assert {row["who"] for row in rows if row["rule"] == "predict"} == {"fastbp", *bench.installed_peers()}
    printed = capsys.readouterr().out
    assert "peers: 784-8-10" in printed and "peers: 784-16-10" in printed
    figures = json.loads(out.read_text())               # what asv_benchmarks/readme_table.py reads
    table = bench.peers_markdown(figures).splitlines()
    assert figures["processor"] and len(table) == 2 + 2 * (len(bench.PEER_CASES) + 1)
    assert table[2].startswith("| 784-8-10 | 1, SGD |") and table[-1].startswith("|  | predict |")


@pytest.mark.parametrize("batch_size", [1, 32])
def test_processes_table_runs_processes_alone_and_together(batch_size):
    alone, together, ratio = bench.processes_table(8, "float32", 64, 1, batch_size=batch_size)
    assert alone > 0 and together > 0 and ratio == pytest.approx(together / alone)


def test_a_forced_narrow_openblas_kernel_is_named():
    """OPENBLAS_CORETYPE=Haswell on an AVX-512 processor: fastbp info and bench say so."""
    from fastbp.info import blas_core_note
    haswell = [{"internal_api": "openblas", "architecture": "Haswell"}]
    note = blas_core_note(haswell, {"OPENBLAS_CORETYPE": "Haswell"}, {"avx2", "avx512f"})
    assert note.startswith("OPENBLAS_CORETYPE=Haswell is set: OpenBLAS runs its Haswell kernels")
    assert blas_core_note(haswell, {}, {"avx2", "avx512f"}) is None                       # its own choice
    assert blas_core_note(haswell, {"OPENBLAS_CORETYPE": "Haswell"}, {"avx2"}) is None    # no AVX-512 to lose
    skylake = [{"internal_api": "openblas", "architecture": "SkylakeX"}]
    assert blas_core_note(skylake, {"OPENBLAS_CORETYPE": "SkylakeX"}, {"avx512f"}) is None


def test_compile_profile_times_each_compiled_function_in_a_fresh_cache():
    """Two functions compiled, the caller's own time without its callee's: both are
    listed with one signature each, and the code's seconds hold every compile."""
    code = ("from numba import njit\n"
            "@njit\ndef inner(x):\n    return x * 2.0\n"
            "@njit\ndef outer(x):\n    return inner(x) + 1.0\n"
            "assert outer(1.0) == 3.0 and outer(2.0) == 5.0")
    seconds, rows = bench.compile_profile(code)
    names = {name: (count, own) for name, count, own in rows}
    assert set(names) == {"inner", "outer"}
    assert names["inner"][0] == names["outer"][0] == 1
    assert 0 < names["inner"][1] and 0 < names["outer"][1]
    assert sum(own for _, _, own in rows) <= seconds
    assert [own for _, _, own in rows] == sorted((own for _, _, own in rows), reverse=True)
