"""The kernels' threads: the result does not depend on them (per-sample and batched),
FASTBP_THREADS and the process's limits are obeyed, the per-sample chooser follows the
timings it is given and the batched one the load, and BLAS runs on one thread in a run."""
import os
import subprocess
import sys
import time

import numba
import numpy as np
import pytest
import threadpoolctl

import fastbp
from fastbp import backends, kernels, threads
from fastbp.optimizers import Optimizer


def _problem(dtype, m=203, seed=4, activation=("relu", "tanh")):
    # both the first layer and the second have at least PARALLEL_MIN_WEIGHTS weights
    net = fastbp.Network([300, 121, 300, 3], activation=list(activation), output="softmax",
                         loss="cross_entropy", init="he", seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed)
    X = net.check_inputs(rng.random((m, 300)))
    T = net.check_targets(rng.integers(0, 3, m), m)
    assert 300 * 121 >= kernels.PARALLEL_MIN_WEIGHTS and 121 * 300 >= kernels.PARALLEL_MIN_WEIGHTS
    return net, X, T


def _epoch(net, X, T, order, n_threads, parts=((0, None),)):
    opt = Optimizer("sgd", lr=0.05).bind(net)
    total = 0.0
    for first, last in parts:
        total += net.train_epoch(X, T, order[first:last], 1, 0.05, 1e-3, opt, None,
                                    "numba", n_threads)
    return total


@pytest.mark.parametrize("activation", [("relu", "tanh"), ("relu", "softplus")])   # (the two builds)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_thread_count_does_not_change_the_result(dtype, activation):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.fail("this test needs Numba to have at least 2 threads")
    results = []
    for n_threads in (1, 2):
        net, X, T = _problem(dtype, activation=activation)
        order = np.random.default_rng(0).permutation(X.shape[0])
        loss = _epoch(net, X, T, order, n_threads)
        results.append((loss, net._w.copy(), net._b.copy()))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
    np.testing.assert_array_equal(results[0][2], results[1][2])


BATCHED = [                     # (batch size, rule, sample weights): every kind of batched step
    (16, "sgd", False), (50, "adam", False), (50, "momentum", True), (203, "rmsprop", False), (1, "adam", False)]


@pytest.mark.parametrize("batch_size, rule, weighted", BATCHED)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_thread_count_does_not_change_a_batched_result(dtype, batch_size, rule, weighted):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.fail("this test needs Numba to have at least 2 threads")
    results = []
    for n_threads in (1, 2, 1):
        net, X, T = _problem(dtype)
        S = np.random.default_rng(2).random(X.shape[0]).astype(dtype) if weighted else None
        opt = Optimizer(rule, lr=0.01).bind(net)
        order = np.random.default_rng(0).permutation(X.shape[0])
        loss = net.train_epoch(X, T, order, batch_size, 0.01, 1e-3, opt, None, "numba", n_threads, S)
        results.append((loss, np.concatenate([net._w, net._b]), opt.state["w"].copy()))
    for other in results[1:]:
        assert other[0] == results[0][0]
        np.testing.assert_array_equal(other[1], results[0][1])
        np.testing.assert_array_equal(other[2], results[0][2])


@pytest.mark.parametrize("rule, shuffle, dtype", [("sgd", True, "float32"), ("adam", False, "float32"),
                                                  ("sgd", True, "float64")])
def test_thread_count_does_not_change_the_gradients_by_ranges(rule, shuffle, dtype):
    """kernels.batch_epoch's gradients "by ranges" (the weights, 12,120, at most twice the
    other ranges' rows times the layers' inputs, 340: with Numba's 2, 3 or 4 threads 50, 66
    or 75 rows), each range's partial of every layer's weights and biases summed in
    order: the same bits on one thread and on two; and the same epoch as the reference's,
    within the dtype's tolerance (a partial left out or summed twice is far outside it)."""
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.fail("this test needs Numba to have at least 2 threads (2 ranges of rows)")
    rng = np.random.default_rng(5)
    X, y = rng.random((203, 300)), rng.integers(0, 3, 203)
    order = rng.permutation(203) if shuffle else np.arange(203)
    results = []
    for backend, n_threads in (("numba", 1), ("numba", 2), ("numba", 1), ("numpy", 1)):
        net = fastbp.Network([300, 40, 3], activation="relu", output="softmax", loss="cross_entropy",
                             init="he", seed=1, dtype=dtype)
        opt = Optimizer(rule, lr=0.01).bind(net)
        loss = net.train_epoch(net.check_inputs(X), net.check_targets(y, 203), order, 100, 0.01, 1e-3, opt,
                               None, backend, n_threads)
        results.append((loss, np.concatenate([net._w, net._b])))
    for other in results[1:3]:
        assert other[0] == results[0][0]
        np.testing.assert_array_equal(other[1], results[0][1])
    tol = 2e-5 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(results[0][1], results[3][1], rtol=tol, atol=tol / 10)
    assert abs(results[0][0] - results[3][0]) <= tol * abs(results[3][0])


def test_gradient_rows_matches_numpy_for_every_block():
    """kernels.gradient_rows: its BLAS product, reading D's columns where they are, against
    the plain NumPy function it overloads."""
    rng = np.random.default_rng(5)
    run = numba.njit(lambda X, D, j0, j1, out: kernels.gradient_rows(X, D, j0, j1, out))
    for dtype, tol in (("float64", 1e-13), ("float32", 1e-5)):
        for B, n_in, n_units, j0, j1 in ((7, 5, 9, 2, 6), (40, 33, 10, 0, 10), (3, 4, 5, 4, 5), (0, 3, 4, 1, 3)):
            X, D = rng.random((B, n_in)).astype(dtype), rng.random((B, n_units)).astype(dtype)
            ours, expected = np.full(n_units * n_in, 7.0, dtype), np.full(n_units * n_in, 7.0, dtype)
            run(X, D, j0, j1, ours)
            kernels.gradient_rows(X, D, j0, j1, expected)
            np.testing.assert_allclose(ours, expected, rtol=tol, atol=tol)
            assert (ours[:j0 * n_in] == 7.0).all() and (ours[j1 * n_in:] == 7.0).all()   # only its rows


def test_sum_rows_adds_every_partial_in_order_and_only_its_columns():
    """kernels._sum_rows, which sums the ranges' partial gradients: for 1 to 4 partials
    (more than 2 arise only with more than 2 threads), the same bits as adding the rows
    one after another in order, written shift places to the left (the biases' sums go to
    db from behind the weights' in a partial), and nothing outside them."""
    rng = np.random.default_rng(6)
    run = numba.njit(lambda P, lo, hi, out, shift: kernels._sum_rows(P, lo, hi, out, shift))
    for ranges in (1, 2, 3, 4):
        P = rng.standard_normal((ranges, 50)).astype(np.float32)
        expected = P[0].copy()
        for row in P[1:]:
            expected += row
        for shift in (0, 10):
            out = np.full(50, 7.0, np.float32)
            run(P, 3 + shift, 41, out, shift)
            np.testing.assert_array_equal(out[3:41 - shift], expected[3 + shift:41])
            assert (out[:3] == 7.0).all() and (out[41 - shift:] == 7.0).all()


def test_a_run_keeps_blas_on_one_thread_with_the_kernels_only():
    net, X, T = _problem("float64")
    seen = []

    def callback(net, history):
        seen.append({lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"})
    before = {lib["filepath"]: lib["num_threads"] for lib in threadpoolctl.threadpool_info()}
    net.train(X, T, epochs=1, batch_size=50, lr=0.01, callback=callback, diagnostics=False)
    assert seen == [{1}]
    after = {lib["filepath"]: lib["num_threads"] for lib in threadpoolctl.threadpool_info()}
    assert {k: after[k] for k in before} == before                    # restored after the run
    if max(before.values()) > 1:
        seen.clear()
        net.train(X, T, epochs=1, batch_size=50, lr=0.01, callback=callback, diagnostics=False, backend="numpy")
        assert seen and max(seen[0]) > 1                               # the reference keeps BLAS's threads


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_an_estimators_fit_checks_its_input_with_blas_on_one_thread(monkeypatch):
    """The input check's BLAS threads would keep spinning into the first epochs."""
    from fastbp import checks
    seen, check = [], checks.check_finite

    def spy(name, A, *args):
        seen.append({lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas"})
        return check(name, A, *args)
    monkeypatch.setattr(checks, "check_finite", spy)
    rng = np.random.default_rng(0)
    X, y = rng.random((64, 5)), rng.integers(0, 2, 64)
    fastbp.MLPClassifier(hidden_layer_sizes=(4,), max_iter=1).fit(X, y)
    assert seen and seen[0] == {1}


class _Machine:
    """A stand-in for /proc/stat and the clocks: CPU-seconds busy on the process's CPUs,
    this process's CPU-seconds and the wall clock, advanced by hand."""

    def __init__(self, monkeypatch, cpus=2):
        self.wall, self.busy, self.own = 100.0, 0.0, 0.0
        monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
        monkeypatch.setattr(threads, "_busy_seconds", lambda cpus: self.busy)
        self.running = 0                                    # other processes' tasks running now
        monkeypatch.setattr(threads, "_others_running", lambda: self.running)
        monkeypatch.setattr(threads.time, "monotonic", lambda: self.wall)
        monkeypatch.setattr(threads.time, "process_time", lambda: self.own)

    def run(self, seconds, own_cpus, other_cpus, running=None):
        """`seconds` pass with the CPUs so used; then `running` other processes' tasks run
        (by default, as many as the other CPUs in use, rounded)."""
        self.wall += seconds
        self.own += seconds * own_cpus
        self.busy += seconds * (own_cpus + other_cpus)
        self.running = round(other_cpus) if running is None else running


def test_load_chooser_leaves_the_cpus_other_processes_use(monkeypatch):
    machine = _Machine(monkeypatch)
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    chooser = threads.LoadChooser()
    assert chooser.threads() == 2                             # an idle machine
    machine.run(0.2, 2, 0)
    assert chooser.threads() == 2
    machine.run(0.2, 1, 1)                                    # a busy process appears
    assert chooser.threads() == 1
    machine.run(0.05, 1, 1)                                   # too soon to look again: as before
    assert chooser.threads() == 1
    machine.run(0.2, 0.9, 1.1)
    assert chooser.threads() == 1
    machine.run(0.2, 1, 0)                                    # it has gone
    assert chooser.threads() == 2
    machine.run(0.2, 0.7, 1.3)                                # steal or others: most of a CPU
    assert chooser.threads() == 1
    machine.run(5.0, 0.2, 1.8, running=0)                     # a long pause, busy most of it...
    assert chooser.threads() == 2                             # ...but nothing runs now: stale
    machine.run(3.0, 0, 0, running=1)
    assert chooser.threads() == 1                             # after a pause, one task running now
    machine.run(0.2, 1, 1, running=0)                         # the busy process has just ended
    assert chooser.threads() == 2
    machine.run(0.2, 2, 0, running=1)                         # a passing task, no CPU time: ignored
    assert chooser.threads() == 2


def test_a_stale_look_counts_the_running_tasks_again_before_it_gives_up_a_thread(monkeypatch):
    """After a pause, the count of tasks running now decides alone: a task that one count
    caught passing by costs no thread, one that runs at every count does."""
    machine = _Machine(monkeypatch)
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    chooser = threads.LoadChooser()
    counts = iter([1, 0])                                     # (a task passing by)
    monkeypatch.setattr(threads, "_others_running", lambda: next(counts))
    assert chooser.threads() == 2
    machine.run(1.0, 0, 0)
    counts = iter([1, 1, 1])                                  # (a busy process)
    assert chooser.threads() == 1
    machine.run(1.0, 0, 0)
    counts = iter([2, 1, 2])
    assert chooser.threads() == 1
    machine.run(1.0, 0, 0)
    counts = iter([0])                                        # (an idle machine: one count)
    assert chooser.threads() == 2


def test_load_chooser_looks_at_most_once_a_tenth_of_a_second(monkeypatch):
    """A look reads /proc (about a millisecond beside busy processes): slices closer than
    OTHERS_EVERY to the last look take its choice again."""
    machine = _Machine(monkeypatch)
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    looks = []
    real = threads._busy_seconds
    monkeypatch.setattr(threads, "_busy_seconds", lambda cpus: looks.append(1) or real(cpus))
    chooser = threads.LoadChooser()
    assert chooser.threads() == 2 and len(looks) == 1
    machine.run(0.02, 1, 1)                                   # a busy process, but too soon to look
    assert chooser.threads() == 2 and len(looks) == 1
    machine.run(threads.OTHERS_EVERY, 1, 1)
    assert chooser.threads() == 1 and len(looks) == 2


def test_load_chooser_obeys_the_processs_limits_and_a_fixed_count(monkeypatch):
    machine = _Machine(monkeypatch, cpus=8)
    monkeypatch.setattr(threads, "available_cpus", lambda: 3)           # OMP_NUM_THREADS, a quota
    chooser = threads.LoadChooser()
    assert chooser.threads() == 3
    machine.run(0.2, 1, 7)                                    # 1 of 8 CPUs left free
    assert chooser.threads() == 1
    monkeypatch.setattr(threads, "available_cpus", lambda: 1)
    machine.run(0.2, 1, 0)
    assert chooser.threads() == 1
    assert threads.LoadChooser(2).threads() == 2
    monkeypatch.setenv("FASTBP_THREADS", "2")
    assert threads.batch_chooser().threads() == 2
    monkeypatch.delenv("FASTBP_THREADS")
    assert threads.batch_chooser() is threads.batch_chooser()           # one for the process


def test_a_long_step_takes_every_cpu_the_process_may_use_busy_or_not(monkeypatch):
    """A step of LONG_STEP products or more outlasts many of the operating system's time
    slices: it takes available_cpus() beside busy processes too, where a shorter one
    leaves their CPUs to them; a fixed count is kept."""
    machine = _Machine(monkeypatch, cpus=8)
    cap = [3]
    monkeypatch.setattr(threads, "available_cpus", lambda: cap[0])
    chooser = threads.LoadChooser()
    machine.run(0.2, 1, 7)                                    # 1 of 8 CPUs left free
    assert chooser.threads(threads.LONG_STEP - 1) == 1
    assert chooser.threads(threads.LONG_STEP) == 3
    assert chooser.threads() == 1
    cap[0] = 1                                                # a quota of one CPU
    machine.run(0.2, 1, 7)
    assert chooser.threads(threads.LONG_STEP) == 1
    assert threads.LoadChooser(2).threads(threads.LONG_STEP) == 2


def test_blas_products_take_the_free_cpus_or_all_when_every_cpu_is_shared(monkeypatch):
    """predict's BLAS: the CPUs other processes leave free; a long product beside
    processes that keep every CPU busy, every CPU (each thread then shares one alike)."""
    machine = _Machine(monkeypatch, cpus=4)
    monkeypatch.setattr(threads, "available_cpus", lambda: 4)
    chooser = threads.LoadChooser()
    assert chooser.products(threads.LONG_STEP) == 4                     # an idle machine
    machine.run(0.2, 1, 1)
    assert chooser.products(threads.LONG_STEP) == 3                     # one CPU busy: the others
    machine.run(0.2, 1, 4)
    assert chooser.products(threads.LONG_STEP - 1) == 1                 # every CPU busy, a short product
    assert chooser.products(threads.LONG_STEP) == 4                     # ... a long one
    machine.run(0.2, 1.3, 2.7, running=4)                               # (this process's share taken from them)
    assert chooser.products(threads.LONG_STEP) == 4
    assert chooser.products(threads.LONG_STEP - 1) == 1
    assert threads.LoadChooser(2).products(threads.LONG_STEP) == 2


def test_blas_products_keep_to_the_cpus_the_process_may_use(monkeypatch):
    """A quota, OMP_NUM_THREADS or Numba's count (available_cpus()) caps predict's BLAS
    as it caps the batched kernels: busy or idle, a long product or a short one."""
    machine = _Machine(monkeypatch, cpus=4)
    cap = [2]
    monkeypatch.setattr(threads, "available_cpus", lambda: cap[0])
    chooser = threads.LoadChooser()
    assert chooser.products(threads.LONG_STEP) == 2                     # an idle machine: 4 CPUs free
    machine.run(0.2, 1, 1)
    assert chooser.products(threads.LONG_STEP - 1) == 2                 # 3 free
    machine.run(0.2, 1, 4)
    assert chooser.products(threads.LONG_STEP) == 2                     # every CPU busy, a long product
    cap[0] = 1
    machine.run(0.2, 1, 0)
    assert chooser.products(threads.LONG_STEP) == 1


def test_predict_holds_blas_to_the_threads_the_load_leaves_and_never_raises_it(monkeypatch):
    seen, real = [], kernels.predict_batch

    class Spy:
        def __call__(self, *args):
            seen.append(min(lib["num_threads"] for lib in threadpoolctl.threadpool_info()
                            if lib["user_api"] == "blas"))
            return real(*args)

        def __getattr__(self, name):
            return getattr(real, name)
    monkeypatch.setattr(kernels, "predict_batch", Spy())
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    net, X, _ = _problem("float32", m=2000)
    big = threads.LOOK_FROM // net.n_parameters[0] + 1                  # rows: a product that looks
    X = np.repeat(X, -(-big // X.shape[0]), axis=0)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        monkeypatch.setenv("FASTBP_THREADS", "1")
        net.predict(X)
        net.predict(X[:big - 2])                                        # (too small to look)
        monkeypatch.delenv("FASTBP_THREADS")
        with threadpoolctl.threadpool_limits(1, user_api="blas"):
            monkeypatch.setattr(threads.LoadChooser, "products", lambda self, step: 2 + None)  # (no look)
            net.predict(X)                                              # (the user's limit stays)
        monkeypatch.setattr(threads.LoadChooser, "products", lambda self, step: 1)  # (a busy machine)
        net.predict(X)
    assert seen == [1, 2, 1, 1]



def _blas_threads():
    return min(lib["num_threads"] for lib in threadpoolctl.threadpool_info() if lib["user_api"] == "blas")


def test_blas_following_the_load_sets_blas_until_the_next_call_and_restores_it(monkeypatch):
    """L-BFGS-B's own vector operations run between its objective's products: the count
    follow() sets stays until the next call, never above the start's, none below
    LOOK_FROM, and the start's comes back at the end."""
    free = [1]
    monkeypatch.setattr(threads.LoadChooser, "products", lambda self, step: free[0])
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        with threads.blas_following_the_load() as follow:
            follow(threads.LOOK_FROM)
            assert _blas_threads() == 1
            free[0] = 4
            follow(threads.LOOK_FROM)
            assert _blas_threads() == 2                                # (never above the start's)
            free[0] = 1
            follow(threads.LOOK_FROM - 1)
            assert _blas_threads() == 2                                # (too small to look)
            follow(threads.LOOK_FROM)
        assert _blas_threads() == 2
        with threadpoolctl.threadpool_limits(1, user_api="blas"):
            monkeypatch.setattr(threads.LoadChooser, "products", lambda self, step: 2 + None)   # (no look)
            with threads.blas_following_the_load() as follow:
                follow(threads.LOOK_FROM)
                assert _blas_threads() == 1
            assert _blas_threads() == 1


def test_an_lbfgs_fit_takes_blas_threads_from_the_load(monkeypatch):
    """solver='lbfgs' runs its products and L-BFGS-B's on BLAS's threads: as many as the
    load leaves (with both BLAS threads beside one busy process, 30 iterations of
    784-100-10 on 10,000 rows took 2.0x as long as on one)."""
    from fastbp.estimators import MLPClassifier
    seen, real = [], fastbp.Network.backprop

    def spy(self, *args, **kwargs):
        seen.append(_blas_threads())
        return real(self, *args, **kwargs)
    monkeypatch.setattr(fastbp.Network, "backprop", spy)
    monkeypatch.setattr(threads.LoadChooser, "products", lambda self, step: 1)
    rng = np.random.default_rng(0)
    n_w = 30 * 20 + 20 * 3
    X = rng.random((threads.LOOK_FROM // n_w + 1, 30))
    y = rng.integers(0, 3, X.shape[0])
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        with pytest.warns(Warning, match="lbfgs failed to converge"):
            MLPClassifier(hidden_layer_sizes=(20,), solver="lbfgs", max_iter=2, random_state=0).fit(X, y)
        assert _blas_threads() == 2                                    # (the count before the fit, back)
    assert seen and set(seen) == {1}

@pytest.mark.parametrize("batch_size", [None, 32])
def test_a_batched_run_tells_the_load_chooser_its_steps_products(monkeypatch, batch_size):
    monkeypatch.delenv("FASTBP_THREADS", raising=False)
    steps, real = [], threads.LoadChooser.threads
    monkeypatch.setattr(threads.LoadChooser, "threads", lambda self, step=0: steps.append(step) or real(self, step))
    net, X, T = _problem("float32", m=200)
    net.train(X, T, epochs=2, lr=0.01, batch_size=batch_size, diagnostics=False)
    assert steps and set(steps) == {(batch_size or 200) * net.n_parameters[0]}


def test_batched_slices_and_threads_give_one_calls_result(monkeypatch):
    """A batched run goes in slices (threads.LoadChooser looks at the load between them):
    bit for bit what one call with one thread gives."""
    nets = []
    for env in ("1", "2", None):
        if env is None:
            monkeypatch.delenv("FASTBP_THREADS", raising=False)
        else:
            monkeypatch.setenv("FASTBP_THREADS", env)
        net, X, T = _problem("float32", m=1000)
        net.train(X, T, epochs=2, lr=0.01, batch_size=32, optimizer="adam", diagnostics=False)
        nets.append(net._w.copy())
    net, X, T = _problem("float32", m=1000)
    opt = Optimizer("adam", lr=0.01).bind(net)
    for _ in range(2):
        net.train_epoch(X, T, net.rng.permutation(1000), 32, 0.01, 0.0, opt)
    for other in nets:
        np.testing.assert_array_equal(other, net._w)


def test_slices_of_whole_blocks_give_one_calls_result():
    """The training loop runs per-sample epochs in slices of whole blocks: bit for bit the
    same as one call (so a progress bar or the chooser changes nothing)."""
    results = []
    for parts in (((0, None),), ((0, 8), (8, 20), (20, 120), (120, None))):
        net, X, T = _problem("float64")
        order = np.random.default_rng(1).permutation(X.shape[0])
        _epoch(net, X, T, order, 1, parts)
        results.append(net._w.copy())
    np.testing.assert_array_equal(results[0], results[1])


def test_training_with_and_without_progress_is_identical_per_sample():
    nets = []
    for progress in (None, lambda n, loss: None):
        net, X, T = _problem("float64", m=1000)
        net.train(X, T, epochs=2, lr=0.05, progress=progress, diagnostics=False)
        nets.append(net._w.copy())
    np.testing.assert_array_equal(nets[0], nets[1])


def test_fastbp_threads_setting(monkeypatch):
    monkeypatch.delenv("FASTBP_THREADS", raising=False)
    assert threads.fixed_threads() == 1                      # the default: one thread
    monkeypatch.setenv("FASTBP_THREADS", "auto")
    assert threads.fixed_threads() is None
    monkeypatch.setenv("FASTBP_THREADS", "1000")
    assert threads.fixed_threads() == numba.get_num_threads()
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv("FASTBP_THREADS", bad)
        with pytest.raises(ValueError, match="FASTBP_THREADS"):
            threads.fixed_threads()


def test_available_cpus_obeys_omp_num_threads_and_affinity(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.available_cpus() == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert threads.available_cpus() == 1
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.setattr(threads, "_cgroup_cpus", lambda: 1.5)           # a container's quota
    assert threads.available_cpus() == 1


def _drive(chooser, seconds_per_sample, slices):
    """Run `slices` slices of 1000 samples, each taking seconds_per_sample(threads)."""
    used = []
    for _ in range(slices):
        n = chooser.threads()
        used.append(n)
        chooser.took(1000, 1000 * seconds_per_sample(n))
    return used


def test_chooser_keeps_the_faster_and_leaves_threads_that_stop_paying(monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    chooser = threads.ThreadChooser("auto")
    idle = {1: 1.0e-5, 2: 0.7e-5}.get
    used = _drive(chooser, idle, 40)
    assert used[:6] == [2, 2, 2, 1, 1, 1]                    # tries both first
    assert used[6:].count(2) >= 0.85 * len(used[6:])         # then keeps the faster
    busy = {1: 1.0e-5, 2: 5e-5}.get                          # a competitor appears
    used = _drive(chooser, busy, 300)
    assert used[:2].count(2) <= 1 and used[1] == 1           # gone after one slow slice
    assert used.count(2) <= 12                               # rare, shrinking tries
    tries = [i for i in range(1, len(used)) if used[i] == 2 and used[i - 1] == 1]
    gaps = np.diff(tries)
    assert (np.diff(gaps) >= 0).all() and gaps[-1] >= threads.LAST_PROBE
    used = _drive(chooser, idle, 200)                        # the competitor has gone
    assert used[-50:].count(2) >= 40


def test_chooser_with_one_cpu_or_a_fixed_count_never_times(monkeypatch):
    monkeypatch.setattr(threads, "available_cpus", lambda: 1)
    assert set(_drive(threads.ThreadChooser("auto"), lambda n: 1e-5, 20)) == {1}
    assert set(_drive(threads.ThreadChooser(3), lambda n: 1e-5 * n, 20)) == {3}


def _compile_a_fastbp_function():
    numba.njit(fastbp.functions.relu)(1.0)          # a new dispatcher: compiled, never cached


def test_a_slow_first_call_says_it_is_compiling_only_when_numba_compiles(monkeypatch, capsys):
    monkeypatch.setattr(kernels, "NOTICE_AFTER", 0.05)
    class Kernel:                                   # (a stand-in for a Numba dispatcher)
        def __init__(self, signatures):
            self.signatures = signatures
    fresh = Kernel([])
    with kernels.first_call(fresh, "test kernel", 3):
        _compile_a_fastbp_function()                 # a real compile (Numba's "numba:compile")
        time.sleep(0.3)
    err = capsys.readouterr().err
    assert "compiling the test kernel, once: about 3 s" in err
    with kernels.first_call(fresh, "test kernel", 3):      # slow, but no compile (a cache load): nothing
        time.sleep(0.3)
    with kernels.first_call(fresh, "test kernel", 3):      # a quick first call: nothing
        pass
    compiled = Kernel(["(float64,)"])
    with kernels.first_call(compiled, "test kernel", 3):   # already compiled: nothing
        _compile_a_fastbp_function()
        time.sleep(0.2)
    fresh.signatures.append("(float64,)")                   # compiled since: nothing, ever
    for _ in range(2):
        with kernels.first_call(fresh, "test kernel", 3):
            _compile_a_fastbp_function()
            time.sleep(0.2)
    assert capsys.readouterr().err == ""


def test_the_compile_notice_names_the_cache_directory(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(kernels, "NOTICE_AFTER", 0.05)
    kernel = numba.njit(fastbp.functions.relu)
    kernel._cache._cache_path = str(tmp_path)       # (NullCache has none: where a real one would be)
    with kernels.first_call(kernel, "relu kernel", 1):
        kernel(2.0)
        time.sleep(0.2)
    err = capsys.readouterr().err
    assert "Numba's cache in %s; `fastbp warm-up` compiles every mode ahead)" % tmp_path in err


def test_compiles_counts_fastbps_own_compiles_nested_blocks_too():
    with kernels.compiles() as outer:
        _compile_a_fastbp_function()
        with kernels.compiles() as inner:
            _compile_a_fastbp_function()
            numba.njit(lambda x: x + 1)(1)          # not fastbp's: not counted
        assert inner() == 1
    assert outer() == 2 and inner() == 1


def test_a_run_takes_the_parallel_build_only_once_it_pays(monkeypatch, tmp_path):
    """training.ParallelBuild: where kernels.batch_epoch is not built, a run whose threads
    the load chooses stays on one thread (batch_epoch_serial) until the parallel build
    would pay for its compile: at once where it is built, after two slices for a long
    run, never for a short one, and for short runs repeated once the count kept beside
    the cache says they have waited long enough. (Here no child process can compile it:
    the run takes the threads at once, and the next call compiles it; see the next test.)"""
    from fastbp import training
    built = {"yes": False}
    monkeypatch.setattr(backends, "start_parallel_build", lambda dtype, common: None)
    monkeypatch.setattr(kernels, "built_for", lambda dispatcher, dtype: built["yes"])
    monkeypatch.setattr(kernels, "cache_dir", lambda dispatcher: str(tmp_path))
    monkeypatch.setattr(training.ParallelBuild, "waited", {})
    pay = training.PARALLEL_COMPILE_SECONDS

    short = training.ParallelBuild(np.float32, 1000)
    for _ in range(10):
        assert short.threads(2) == 1
        short.took(1, 100, pay / 10)                         # the whole run: the compile's time
    assert short.threads(1) == 1
    kept = float((tmp_path / "fastbp-one-thread-seconds-float32").read_text())
    assert kept == pytest.approx(9 * pay / 10, abs=1e-3)     # (the first slice does not count)

    long = training.ParallelBuild(np.float32, 10 ** 7)
    assert long.threads(2) == 1
    long.took(1, 100, 0.01)                                  # (a first slice may compile: not timed)
    assert long.threads(2) == 1
    long.took(1, 100, 0.01)                                  # 1e-4 s a sample, 1e7 samples left
    assert long.threads(2) == 2 and long.threads(3) == 3 and long.threads(1) == 1

    monkeypatch.setattr(training.ParallelBuild, "waited", {})  # a later process reads the count kept
    (tmp_path / "fastbp-one-thread-seconds-float32").write_text("%r" % (2.5 * pay))
    assert training.ParallelBuild(np.float32, 100).threads(2) == 2
    assert training.ParallelBuild(np.float64, 100).threads(2) == 1       # (a count per dtype)
    (tmp_path / "fastbp-one-thread-seconds-float64").write_text("not a number")
    monkeypatch.setattr(training.ParallelBuild, "waited", {})
    assert training.ParallelBuild(np.float64, 100).threads(2) == 1

    built["yes"] = True
    assert training.ParallelBuild(np.float64, 100).threads(2) == 2


def test_the_parallel_build_compiles_in_a_child_while_the_run_stays_on_one_thread(monkeypatch):
    """Once a run has as many one-thread seconds left (or lost) as the parallel build takes
    to compile (fewer than it would take to stop the run for it), a child process compiles
    it (one for the process: a second run asks for the same child) and the run stays on
    one thread until the child is done; then it takes the threads the load gives, the
    build loaded from the cache (or, had the child failed, compiled at the next call)."""
    from fastbp import training
    started, running = [], {"yes": True}

    class Child:
        def poll(self):
            return None if running["yes"] else 0

    def start(dtype, common):
        started.append((np.dtype(dtype), common))
        return child
    child = Child()
    monkeypatch.setattr(backends, "start_parallel_build", start)
    monkeypatch.setattr(kernels, "built_for", lambda dispatcher, dtype: False)
    pays = 1.5 * training.PARALLEL_COMPILE_SECONDS     # (one-thread seconds waited: too few to stop the run for)
    monkeypatch.setattr(training.ParallelBuild, "waited", {"float32": pays, "batch_epoch_common-float32": pays})
    monkeypatch.setattr(kernels, "cache_dir", lambda dispatcher: None)
    run = training.ParallelBuild(np.float32, 100)
    assert [run.threads(2) for _ in range(3)] == [1, 1, 1]
    assert started == [(np.dtype(np.float32), False)]             # (kernels.batch_epoch: the full build)
    second = training.ParallelBuild(np.float32, 100, kernels.common_build("batch_epoch"))
    assert second.threads(2) == 1 and started[-1] == (np.dtype(np.float32), True)
    running["yes"] = False
    assert run.threads(2) == 2 and run.threads(3) == 3 and second.threads(2) == 2
    assert len(started) == 2


@pytest.mark.slow                      # (a cold compile of both builds, in a fresh process)
def test_the_parallel_build_a_child_compiled_computes_what_the_one_thread_build_does(tmp_path):
    """The one-thread build compiled in this process, the parallel build in a child
    (backends.start_parallel_build) and loaded from the cache, nothing compiled for it
    here: the same epochs, bit for bit, in both dtypes."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "FASTBP_THREADS")}
    env["NUMBA_CACHE_DIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "-c", BACKGROUND_BUILD], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["float64", "same", "float32", "same"]


BACKGROUND_BUILD = """
import numpy as np, fastbp
from fastbp import backends, kernels
rng = np.random.default_rng(0)
for dtype in ("float64", "float32"):
    X, Y = rng.random((600, 20)).astype(dtype), np.eye(4, dtype=dtype)[rng.integers(0, 4, 600)]
    def run(threads):
        net = fastbp.Network([20, 48, 4], activation="relu", output="softmax", loss="cross_entropy", seed=0,
                             dtype=dtype)
        optimizer = fastbp.Optimizer("adam").bind(net)
        for epoch in range(3):
            net.train_epoch(net.check_inputs(X), net.check_targets(Y, 600), rng_order, 64, 0.01, 0.0,
                            optimizer, threads=threads)
        return net.parameter_vector()
    rng_order = np.random.default_rng(1).permutation(600)
    one = run(1)
    common = kernels.common_build("batch_epoch")
    assert not kernels.built_for(common, dtype)
    backends.start_parallel_build(dtype, True).wait()
    assert kernels.built_for(common, dtype)
    with kernels.compiles() as compiled:
        two = run(2)
    assert compiled() == 0                        # (loaded from the cache: the child's)
    print(dtype, "same" if np.array_equal(one, two) else "differ")
"""


def test_the_one_thread_build_is_a_kernel_of_its_own_and_a_fixed_count_is_used_at_once(monkeypatch):
    from fastbp import training
    assert kernels.batch_epoch_serial.py_func.__qualname__ == "batch_epoch_serial"
    index = [k._cache._cache_file._index_name for k in (kernels.batch_epoch_serial, kernels.batch_epoch)]
    assert index[0] != index[1]                                  # (an entry of its own in Numba's cache)
    net, X, T = _problem("float64", m=64)
    opt = Optimizer("adam", lr=0.01).bind(net)
    net.train_epoch(X, T, np.arange(64), 32, 0.01, 0.0, opt, threads=2)
    assert kernels.built_for(kernels.common_build("batch_epoch"), np.float64)      # (relu, tanh, adam: common)
    monkeypatch.setenv("FASTBP_THREADS", "2")
    config = fastbp.RunConfig(batch_size=32, backend="numba")
    assert training.EpochPlan(net, 64, 32, opt, config).parallel is None
    monkeypatch.delenv("FASTBP_THREADS")
    assert training.EpochPlan(net, 64, 32, opt, config).parallel is not None
