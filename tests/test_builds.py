"""The training kernels' two builds (kernels.py, "builds"): a run within scikit-learn's
activations and rules, without dropout, input noise, max-norm or clipping, takes the common build,
compiled with only those; any other run takes the full build. Both compute what the
reference computes (tests/test_agreement.py runs both kinds of settings); here: which run
takes which, that they agree with each other, and that the common build refuses what it
leaves out rather than skipping it."""
import numpy as np
import pytest

import fastbp
from fastbp import kernels
from fastbp.backends import NumbaBackend
from fastbp.functions import ACTIVATION_CODES

COMMON = [("sigmoid", "sgd"), ("relu", "adam"), ("tanh", "momentum"), ("identity", "nesterov")]
FULL = [("softplus", "adam"), ("relu", "rmsprop"), ("gelu", "sgd"), ("relu", "rprop")]


@pytest.mark.parametrize("activation, rule", COMMON + FULL)
def test_a_run_takes_the_common_build_only_within_its_activations_and_rules(activation, rule):
    net = fastbp.Network([4, 3, 2], activation=activation, output="softmax", loss="cross_entropy", seed=0)
    common = (activation, rule) in COMMON
    for name in kernels.TRAINING:
        taken = NumbaBackend.build(net, name, rule)
        assert (taken is kernels.common_build(name)) == common
        assert (taken is getattr(kernels, name)) == (not common)
        for extras in ({"max_norm": 2.0}, {"rates": [0.1]}, {"input_noise": 0.1}, {"clip": 1.0}):
            assert NumbaBackend.build(net, name, rule, **extras) is getattr(kernels, name)   # (the full build's)


def test_the_common_build_is_a_kernel_of_its_own_that_calls_only_its_dispatch():
    for name in kernels.TRAINING:
        common, full = kernels.common_build(name), getattr(kernels, name)
        assert common.py_func.__qualname__ == name + "_common"
        assert common._cache._cache_file._index_name != full._cache._cache_file._index_name
        assert kernels.common_build(name) is common                  # (made once)
    source, _ = kernels._dispatch_source(kernels.COMMON_ACTIVATIONS)
    assert "g_relu" in source and "g_softplus" not in source and "g_gelu" not in source
    assert "g_softplus" in kernels.DISPATCH_SOURCE


def _trained(monkeypatch, common, rule, batch_size, activation):
    """A float64 epoch of a small network through one build: (its loss, its parameters)."""
    net = fastbp.Network([6, 5, 3], activation=activation, output="softmax", loss="cross_entropy", init="he",
                         seed=1)
    rng = np.random.default_rng(3)
    X, y = net.check_inputs(rng.random((40, 6))), net.check_targets(rng.integers(0, 3, 40), 40)
    opt = fastbp.Optimizer(rule, lr=0.05).bind(net)
    full = {name: getattr(kernels, name) for name in kernels.TRAINING}
    monkeypatch.setattr(kernels, "build", lambda name, *args: kernels.common_build(name) if common else full[name])
    loss = net.train_epoch(X, y, np.arange(40), batch_size, 0.05, 1e-3, opt, None, "numba", 1)
    return loss, np.concatenate([net._w, net._b])


@pytest.mark.parametrize("batch_size, rule", [(1, "sgd"), (8, "sgd"), (8, "momentum"), (8, "adam")])
def test_the_two_builds_agree(monkeypatch, batch_size, rule):
    """The same run through either build: the same arithmetic, compiled in modules that
    differ (so LLVM may order a sum differently: 1e-12, not bit for bit)."""
    for activation in ("relu", "sigmoid", "tanh", "identity"):
        common = _trained(monkeypatch, True, rule, batch_size, activation)
        full = _trained(monkeypatch, False, rule, batch_size, activation)
        assert common[0] == pytest.approx(full[0], rel=1e-12)
        np.testing.assert_allclose(common[1], full[1], rtol=1e-12, atol=1e-14)


def test_the_common_build_refuses_what_it_leaves_out(monkeypatch):
    """Were a run with max-norm, dropout, input noise or clipping given the common build,
    its kernel would raise, not train without them (NumbaBackend.build never does this).
    Clipping on CSR rows takes the full build too, though the common one can step them."""
    monkeypatch.setattr(kernels, "build", lambda name, *args: kernels.common_build(name))
    rng = np.random.default_rng(0)
    X, Y = rng.random((16, 4)), rng.random((16, 2))
    for settings in ({"max_norm": 1.0}, {"dropout": 0.2}, {"input_noise": 0.1}, {"clip": 0.5}):
        net = fastbp.Network([4, 3, 2], activation="relu", seed=0)
        with pytest.raises(ValueError, match="common build has no dropout, input noise, max-norm or clipping"):
            net.train(X, Y, epochs=1, batch_size=4, optimizer="adam", diagnostics=False, **settings)


def test_the_common_build_refuses_a_rule_or_activation_it_leaves_out():
    """Its dispatch and its rules' chain end in an error, as the full build's do."""
    namespace, _ = kernels._dispatch(kernels.COMMON_ACTIVATIONS)
    with pytest.raises(ValueError, match="no such elementwise activation code"):
        namespace["_activate"](ACTIVATION_CODES["softplus"], 0.0, 1.0)
    assert namespace["_activate"](ACTIVATION_CODES["relu"], 0.0, -1.0) == 0.0
