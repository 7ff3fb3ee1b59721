"""The backends behind one interface (fastbp/backends.py): each has every operation, and
a Network reaches a backend only through the table, so a new one is one entry."""
import numpy as np
import pytest

import fastbp
from fastbp import backends
from fastbp.cases import problem


@pytest.mark.parametrize("name", list(backends.BACKENDS))
def test_every_backend_has_every_operation(name):
    backend = backends.BACKENDS[name]
    missing = [op for op in backends.OPERATIONS if not callable(getattr(backend, op, None))]
    missing += [a for a in backends.ATTRIBUTES if not hasattr(backend, a)]
    assert not missing, "%s lacks %s" % (name, missing)
    assert backend.blas in ("numpy", "scipy")
    assert backend.own_threads in (True, False) and backend.compiles in (True, False)


def test_an_unknown_backend_is_a_clear_error():
    net = fastbp.Network([3, 4, 2], seed=0)
    with pytest.raises(ValueError, match="unknown backend 'gpu'; choose from 'numba', 'numpy'"):
        net.predict(np.zeros((2, 3)), backend="gpu")
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        net.train(np.zeros((2, 3)), np.zeros((2, 2)), backend="gpu")


class Recording(backends.NumpyBackend):
    """The reference, noting each operation it is asked for."""

    def __init__(self):
        self.calls = set()

    def __getattribute__(self, name):
        if name in backends.OPERATIONS:
            object.__getattribute__(self, "calls").add(name)
        return object.__getattribute__(self, name)


def test_a_new_backend_is_one_entry_in_the_table(monkeypatch):
    """Registered under a new name, a backend serves every public computation of Network
    (predict, loss, gradients, deltas, jacobian, train with a gradient rule and with LM),
    with the same results as the reference it wraps."""
    recording = Recording()
    monkeypatch.setitem(backends.BACKENDS, "recording", recording)
    results = {}
    for name in ("numpy", "recording"):
        net, X, T = problem([4, 5, 3], "tanh", "identity", "mse", 24, seed=1)
        out = [net.predict(X, backend=name), net.loss(X, T, backend=name),
               *net.gradients(X, T, backend=name)[0], *net.deltas(X, T, backend=name),
               net.jacobian(X, backend=name)]
        net.train(X, T, epochs=2, batch_size=8, lr=0.05, optimizer="adam", backend=name)
        net.train(X, T, epochs=2, optimizer="lm", backend=name)
        results[name] = out + [np.concatenate([w.ravel() for w in net.weights])]
    assert recording.calls == set(backends.OPERATIONS)
    for a, b in zip(results["numpy"], results["recording"]):
        np.testing.assert_array_equal(a, b)


def test_a_network_picks_its_backend_once_and_a_call_can_override_it(monkeypatch):
    """Network(backend=...) sends every computation there, training included, without a
    backend= in any call; a call's backend= still wins for that call; the name is checked
    when the network is made and when it is set."""
    recording = Recording()
    monkeypatch.setitem(backends.BACKENDS, "recording", recording)
    net, X, T = problem([4, 5, 3], "tanh", "identity", "mse", 24, seed=1)
    reference, _, _ = problem([4, 5, 3], "tanh", "identity", "mse", 24, seed=1)
    net.backend = "recording"
    assert net.backend == "recording" and "backend='recording'" in repr(net)
    out = [net.predict(X), net.loss(X, T), *net.gradients(X, T)[0], *net.deltas(X, T), net.jacobian(X)]
    net.train(X, T, epochs=2, batch_size=8, lr=0.05, optimizer="adam")
    net.train(X, T, epochs=2, optimizer="lm")
    assert recording.calls == set(backends.OPERATIONS)
    expected = [reference.predict(X, backend="numpy"), reference.loss(X, T, backend="numpy"),
                *reference.gradients(X, T, backend="numpy")[0], *reference.deltas(X, T, backend="numpy"),
                reference.jacobian(X, backend="numpy")]
    reference.train(X, T, epochs=2, batch_size=8, lr=0.05, optimizer="adam", backend="numpy")
    reference.train(X, T, epochs=2, optimizer="lm", backend="numpy")
    for a, b in zip(out + list(net.weights), expected + list(reference.weights)):
        np.testing.assert_array_equal(a, b)
    recording.calls.clear()
    net.predict(X, backend="numba")                                   # this call only
    assert recording.calls == set() and net.backend == "recording"
    assert fastbp.Network([3, 2], backend="numpy").backend == "numpy"
    assert fastbp.Network([3, 2]).backend == "numba"
    with pytest.raises(ValueError, match="unknown backend 'gpu'; choose from 'numba', 'numpy'"):
        fastbp.Network([3, 2], backend="gpu")
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        net.backend = "gpu"


def test_a_network_pickled_before_it_had_a_backend_runs_on_numba():
    """Networks (and estimators) pickled by earlier versions carry no backend: they run on
    the kernels, as they did."""
    import pickle
    net, X, _ = problem([4, 5, 3], "tanh", "identity", "mse", 6, seed=1)
    state = dict(net.__dict__)
    del state["_backend_choice"]
    old = fastbp.Network.__new__(fastbp.Network)
    old.__dict__.update(state)
    old = pickle.loads(pickle.dumps(old))
    assert old.backend == "numba"
    np.testing.assert_array_equal(old.predict(X), net.predict(X, backend="numba"))
