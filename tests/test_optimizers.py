"""Optimizers, L2, clipping and schedules: the kernels agree with the reference, and both
agree with a hand calculation on a one-weight network."""
import math
import re

import numpy as np
import pytest
from conftest import make_problem

import fastbp
from fastbp.cases import DTYPES, FORMULA_RULES, MODES, REGULARISERS, RULE_CASES, TOLERANCE, case_id
from fastbp.optimizers import (
    RULES,
    ExponentialDecay,
    InverseScaling,
    Optimizer,
    ReduceOnPlateau,
    StepDecay,
    make_schedule,
)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec, rule, batch_size", [
    pytest.param(spec, rule, MODES[mode], id="%s-%s-%s" % (case_id(spec), rule, mode))
    for spec, rule, mode in RULE_CASES])
def test_kernels_agree_with_the_reference(spec, rule, batch_size, dtype):
    for regularise, clip, schedule, bias in [("none", None, None, True), ("l2", 0.5, ("step", {"step_size": 2}), True),
                                             ("all", 0.05, "inverse_scaling", False)]:
        runs = []
        for backend in ("numpy", "numba"):
            net, X, T = make_problem(*spec, 43, seed=3, dtype=dtype, bias=bias)
            lr = 0.003 if spec[2] == "identity" else 0.05
            if batch_size is None:                   # 3 steps in all: larger ones
                lr *= 10
            opt = Optimizer(rule, lr=0.01 if rule == "adam" else lr)
            settings = dict(REGULARISERS[regularise])
            if dtype == "float32" and rule == "adam":
                # Adam's steps (about lr each, whatever the gradient) carry small weights across
                # 0, where L1's subgradient jumps: float32's rounding then decides the sign,
                # and the two backends part. Exact at 1e-10 in float64; float32 Adam runs
                # without L1.
                settings.pop("l1", None)
            h = net.train(X, T, epochs=3, optimizer=opt, batch_size=batch_size, clip=clip,
                          schedule=schedule, backend=backend, **settings)
            runs.append((net, h, opt))
        (ref, h_ref, o_ref), (fast, h_fast, o_fast) = runs
        tol = TOLERANCE[dtype]
        for a, b in zip(ref.weights, fast.weights):
            np.testing.assert_allclose(b, a, rtol=tol, atol=tol)
        if bias:
            for a, b in zip(ref.biases, fast.biases):
                np.testing.assert_allclose(b, a, rtol=tol, atol=tol)
        np.testing.assert_allclose(h_fast["loss"], h_ref["loss"], rtol=tol, atol=tol)
        for p in ("w", "b"):                     # velocities and moments too
            np.testing.assert_allclose(o_fast.state[p], o_ref.state[p], rtol=tol, atol=tol)
        assert o_fast.t == o_ref.t == 3 * (43 if batch_size == 1 else -(-43 // (batch_size or 43)))
        start, _, _ = make_problem(*spec, 43, seed=3, dtype=dtype, bias=bias)
        assert max(np.abs(w - w0).max() for w, w0 in zip(fast.weights, start.weights)) > 1e-4


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", FORMULA_RULES)
@pytest.mark.parametrize("batch_size", [50, 7])
def test_a_step_beside_its_gradient_equals_the_step_after_the_whole_gradient(rule, batch_size, dtype):
    # Without clipping, each block of units of a dense mini-batch step applies the rule to
    # its own weights as soon as their gradient is made (kernels._units_pass); a clip too
    # large to act takes the other path, the whole gradient first (optimizer_step). The
    # same formula for every element (a block missed or stepped twice would be far off);
    # compiled in two places, where fastmath may reassociate it differently (SGD's and
    # momentum's lr (g gscale + penalty) came out 1 ulp apart), so to rounding.
    if RULES[rule].full_batch:
        batch_size = None
    runs = []
    for clip in (None, 1e30):
        net, X, T = make_problem([9, 40, 17, 3], "relu", "softmax", "cross_entropy", 120, seed=5, dtype=dtype)
        opt = Optimizer(rule, lr=0.01)
        net.train(X, T, epochs=2, optimizer=opt, batch_size=batch_size, clip=clip, l2=0.01, diagnostics=False)
        runs.append((net, opt))
    (a, o_a), (b, o_b) = runs
    tol = {"float64": 1e-12, "float32": 1e-5}[dtype]
    for x, y in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol)
    for p in ("w", "b"):
        np.testing.assert_allclose(o_a.state[p], o_b.state[p], rtol=tol, atol=tol)
    assert o_a.t == o_b.t


# ---------------------------------------------------------------- by hand
# A network with one weight and one bias, identity output, mse: o = w x + b and
# E = (o - t)^2 / 2, so dE/dw = (o - t) x and dE/db = o - t. One sample, x = 2, t = 1,
# from w = 0.5, b = 0.1: o = 1.1, dE/dw = 0.2, dE/db = 0.1. Each epoch is one step.

def one_weight(backend, epochs, **train):
    net = fastbp.Network([1, 1], output="identity", seed=0)
    net.weights = [np.array([[0.5]])]
    net.biases = [np.array([0.1])]
    h = net.train(np.array([[2.0]]), np.array([[1.0]]), epochs=epochs, backend=backend,
                  diagnostics=False, **train)
    return net.weights[0][0, 0], net.biases[0][0], h


BY_HAND = {
    # w <- w - lr g
    "sgd": (dict(optimizer="sgd", lr=0.1), 1, 0.5 - 0.1 * 0.2, 0.1 - 0.1 * 0.1),
    # L2 on the weight only: g_w = 0.2 + 0.5 * 0.5
    "l2": (dict(optimizer="sgd", lr=0.1, l2=0.5), 1, 0.5 - 0.1 * 0.45, 0.1 - 0.1 * 0.1),
    # L1 on the weight only: g_w = 0.2 + 0.3 * sign(0.5)
    "l1": (dict(optimizer="sgd", lr=0.1, l1=0.3), 1, 0.5 - 0.1 * 0.5, 0.1 - 0.1 * 0.1),
    # clip: ||(0.2, 0.1)|| = sqrt(0.05), scaled down to 0.1
    "clip": (dict(optimizer="sgd", lr=0.1, clip=0.1), 1,
             0.5 - 0.1 * 0.2 * 0.1 / math.sqrt(0.05), 0.1 - 0.1 * 0.1 * 0.1 / math.sqrt(0.05)),
    # momentum 0.9, two steps. 1: v = -0.02, w = 0.48; v_b = -0.01, b = 0.09.
    # 2: o = 1.05, g = (0.1, 0.05); v = 0.9 * -0.02 - 0.01 = -0.028, w = 0.452;
    #    v_b = 0.9 * -0.01 - 0.005 = -0.014, b = 0.076
    "momentum": (dict(optimizer=Optimizer("momentum", lr=0.1, momentum=0.9)), 2, 0.452, 0.076),
    # Nesterov. 1: v = -0.02, w = 0.5 + 0.9 * -0.02 - 0.02 = 0.462; b = 0.1 - 0.009 - 0.01 = 0.081.
    # 2: o = 1.005, g = (0.01, 0.005); v = -0.018 - 0.001 = -0.019, w = 0.462 - 0.0171 - 0.001
    #    = 0.4439; v_b = -0.009 - 0.0005 = -0.0095, b = 0.081 - 0.00855 - 0.0005 = 0.07195
    "nesterov": (dict(optimizer=Optimizer("nesterov", lr=0.1, momentum=0.9)), 2, 0.4439, 0.07195),
    # iRPROP-, step sizes from lr = 0.1. 1: w = 0.4, b = 0. 2: o = 0.8, g = (-0.4, -0.2), both
    # signs flip: step sizes 0.05, no move, g set aside. 3: the same g, nothing to compare:
    # w = 0.45, b = 0.05. 4: o = 0.95, g = (-0.1, -0.05), the sign holds: sizes 0.06,
    # w = 0.51, b = 0.11
    "rprop": (dict(optimizer="rprop", lr=0.1), 4, 0.51, 0.11),
    # iRPROP+. 1: E = 0.005; w = 0.4, b = 0. 2: o = 0.8, E = 0.02 rose and the signs flip:
    # the last change is taken back, w = 0.5, b = 0.1, sizes 0.05. 3: g = (0.2, 0.1),
    # w = 0.45, b = 0.05. 4: o = 0.95, E = 0.00125 fell, the signs flip: sizes 0.025, no
    # move. 5: w = 0.475, b = 0.075
    "irprop+": (dict(optimizer="irprop+", lr=0.1), 5, 0.475, 0.075),
}


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("case", BY_HAND)
def test_by_hand(case, backend):
    train, epochs, w, b = BY_HAND[case]
    train = dict(train)
    if isinstance(train["optimizer"], Optimizer):          # a fresh one for each backend
        o = train["optimizer"]
        train["optimizer"] = Optimizer(o.rule, lr=o.lr, momentum=o.momentum)
    got_w, got_b, _ = one_weight(backend, epochs, **train)
    assert got_w == pytest.approx(w, abs=1e-14)
    assert got_b == pytest.approx(b, abs=1e-14)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_max_norm_by_hand(backend):
    """1-1-1, identity, no biases, x = 1, t = 0, w1 = 3, w2 = 1: o = 3, g_w1 = 3, g_w2 = 9.
    At lr 0.1, w1 = 2.7, scaled down to the max norm 2; the output layer's w2 = 0.1 is not
    constrained. And L1's subgradient is 0 at 0: with x = (0, 2) and w = (0, 0.5), o = t, so
    the loss's gradient is 0; L1 moves w_2 by lr * 0.3 and leaves w_1 at 0."""
    net = fastbp.Network([1, 1, 1], activation="identity", output="identity", bias=False, seed=0)
    net.weights = [np.array([[3.0]]), np.array([[1.0]])]
    net.train(np.array([[1.0]]), np.array([[0.0]]), epochs=1, lr=0.1, max_norm=2.0, backend=backend,
              diagnostics=False)
    assert net.weights[0][0, 0] == pytest.approx(2.0, abs=1e-14)
    assert net.weights[1][0, 0] == pytest.approx(0.1, abs=1e-14)
    net = fastbp.Network([2, 1], output="identity", bias=False, seed=0)
    net.weights = [np.array([[0.0, 0.5]])]
    net.train(np.array([[0.0, 2.0]]), np.array([[1.0]]), epochs=1, lr=0.1, l1=0.3, backend=backend,
              diagnostics=False)
    assert net.weights[0][0, 0] == 0.0 and net.weights[0][0, 1] == pytest.approx(0.47, abs=1e-14)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_adam_by_hand(backend):
    eps = 1e-12
    opt = Optimizer("adam", lr=0.1, beta1=0.9, beta2=0.999, epsilon=eps)
    w, b, _ = one_weight(backend, 1, optimizer=opt)
    # step 1: m = 0.1 g, v = 0.001 g^2, lr_t = 0.1 sqrt(0.001) / 0.1: each parameter moves
    # by lr against its gradient's sign
    assert w == pytest.approx(0.4, abs=1e-9) and b == pytest.approx(0.0, abs=1e-9)
    opt = Optimizer("adam", lr=0.1, beta1=0.9, beta2=0.999, epsilon=eps)
    w, b, _ = one_weight(backend, 2, optimizer=opt)
    # step 2: o = 0.8, g = (-0.4, -0.2).
    #   m_w = 0.9 * 0.02 + 0.1 * -0.4 = -0.022;   v_w = 0.999 * 4e-5 + 0.001 * 0.16 = 1.9996e-4
    #   m_b = 0.9 * 0.01 + 0.1 * -0.2 = -0.011;   v_b = 0.999 * 1e-5 + 0.001 * 0.04 = 4.999e-5
    #   lr_t = 0.1 * sqrt(1 - 0.999^2) / (1 - 0.9^2) = 0.1 * sqrt(0.001999) / 0.19
    lr_t = 0.1 * math.sqrt(0.001999) / 0.19
    assert w == pytest.approx(0.4 + lr_t * 0.022 / math.sqrt(1.9996e-4), abs=1e-9)
    assert b == pytest.approx(0.0 + lr_t * 0.011 / math.sqrt(4.999e-5), abs=1e-9)


def test_schedules_by_hand():
    assert [StepDecay(2, 0.5).factor(e) for e in range(5)] == [1, 1, 0.5, 0.5, 0.25]
    assert [ExponentialDecay(0.9).factor(e) for e in range(3)] == pytest.approx([1, 0.9, 0.81])
    assert [InverseScaling(0.5).factor(e) for e in range(3)] == pytest.approx([1, 2 ** -0.5, 3 ** -0.5])
    plateau = ReduceOnPlateau(factor=0.5, patience=2, tol=0.01)
    factors = []
    for loss in [1.0, 0.5, 0.495, 0.49, 0.3, 0.3, 0.3, 0.3]:
        plateau.observe(loss)
        factors.append(plateau.factor(0))
    # 0.495 and 0.49 are within tol of 0.5: two bad epochs halve the factor
    assert factors == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]
    again = make_schedule((plateau.name, plateau.settings()))
    again.set_state(plateau.get_state())
    assert again.factor(0) == 0.25 and again.settings() == plateau.settings()


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_the_schedule_sets_each_epochs_lr(backend):
    _, _, h = one_weight(backend, 5, optimizer="sgd", lr=0.01, schedule=("step", {"step_size": 2, "gamma": 0.5}))
    assert h["lr"] == pytest.approx([0.01, 0.01, 0.005, 0.005, 0.0025])
    # reduce-on-plateau on a loss that cannot fall (lr too small to move it by tol)
    _, _, h = one_weight(backend, 6, optimizer="sgd", lr=1e-12,
                         schedule=("reduce_on_plateau", {"factor": 0.1, "patience": 2}))
    assert h["lr"] == pytest.approx([1e-12, 1e-12, 1e-12, 1e-13, 1e-13, 1e-14])


def test_an_optimizer_keeps_its_state_between_calls():
    """Two calls of one epoch with one Optimizer are one call of two epochs."""
    nets = []
    for split in (False, True):
        net, X, T = make_problem([6, 5, 3], "tanh", "softmax", "cross_entropy", 30, seed=1)
        opt = Optimizer("adam", lr=0.01)
        if split:
            net.train(X, T, epochs=1, optimizer=opt, batch_size=4)
            net.train(X, T, epochs=1, optimizer=opt, batch_size=4)
        else:
            net.train(X, T, epochs=2, optimizer=opt, batch_size=4)
        nets.append(net)
    for a, b in zip(nets[0].weights, nets[1].weights):
        np.testing.assert_array_equal(a, b)
    other = fastbp.Network([6, 4, 3], output="softmax", loss="cross_entropy")
    with pytest.raises(ValueError, match="belongs to another network"):
        other.train(np.zeros((2, 6)), np.eye(3)[[0, 1]], optimizer=opt)


def test_bad_optimizer_settings_are_clear_errors():
    with pytest.raises(ValueError, match="momentum must be a finite number >= 0 and < 1"):
        Optimizer("momentum", momentum=1.0)
    with pytest.raises(ValueError, match="beta2 must be a finite number >= 0 and < 1"):
        Optimizer("adam", beta2=float("nan"))
    with pytest.raises(TypeError, match="optimizer must be a name"):
        fastbp.Network([2, 1]).train(np.zeros((1, 2)), np.zeros((1, 1)), optimizer=3)
    for bad, message in [(dict(eta_minus=1.0), "eta_minus must be a finite number > 0 and < 1"),
                         (dict(eta_plus=1.0), "eta_plus must be a finite number > 1"),
                         (dict(step_max=0.0), "step_max must be a finite number > 0"),
                         (dict(step_min=2.0, step_max=1.0), r"step_min \(2\) must not be above step_max \(1\)")]:
        with pytest.raises(ValueError, match=message):
            Optimizer("rprop", **bad)


# ---------------------------------------------------------------- RPROP

# torch.optim.Rprop(lr=0.01) with its defaults, 50 full-batch steps on a 3-4-2 tanh/identity
# network, float64: the final weights, written down from PyTorch 2.13. Made by this, with
# the same start (fastbp.Network(..., seed=5)) and data:
#   Ws, bs = [torch.tensor(W, requires_grad=True) for W in net.weights], [... net.biases]
#   opt = torch.optim.Rprop(Ws + bs, lr=0.01)
#   50 times: opt.zero_grad(); o = torch.tanh(x @ Ws[0].T + bs[0]) @ Ws[1].T + bs[1]
#             (0.5 * ((o - y) ** 2).sum(1).mean()).backward(); opt.step()
TORCH_RPROP = {
    "W1": [-1.1782789364572814, -4.5574057674102, 0.9907869690146371, 1.714051566460131, 0.2607424491704631,
           -4.195695962223262, 0.42092290023542994, -0.9471838251288925, 1.3102363880615824, 2.9173567830238865,
           -0.07675003141756567, -0.8736190984260416],
    "W2": [-0.47659128407500817, 0.5024666678830176, 1.2815828794856914, -0.821541579941582, -0.2868616541482942,
           -0.5037072263258896, 0.09946998040215421, -0.6236585923242862],
    "b1": [-0.863332171825761, -0.7575920372418825, -0.1449102875070778, 0.3426268378682874],
    "b2": [0.1166370591574577, -0.29169283499943255],
}


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_rprop_follows_torch_optim_rprop(backend):
    net = fastbp.Network([3, 4, 2], activation="tanh", output="identity", seed=5)
    rng = np.random.default_rng(7)
    X, Y = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    net.train(X, Y, epochs=50, optimizer="rprop", lr=0.01, backend=backend, diagnostics=False)
    got = {"W1": net.weights[0], "W2": net.weights[1], "b1": net.biases[0], "b2": net.biases[1]}
    for name, values in TORCH_RPROP.items():
        np.testing.assert_allclose(got[name].ravel(), values, rtol=0, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_irprop_plus_takes_steps_back_where_the_loss_rose(backend):
    """With a large first step the loss rises; iRPROP+ takes back the changes whose sign
    flipped, and ends lower than iRPROP- from the same start."""
    losses = {}
    for rule in ("rprop", "irprop+"):
        net, X, T = make_problem([6, 8, 3], "tanh", "identity", "mse", 60, seed=2)
        h = net.train(X, T, epochs=40, optimizer=rule, lr=0.5, backend=backend, diagnostics=False)
        losses[rule] = h["loss"]
    assert any(b > a for a, b in zip(losses["irprop+"], losses["irprop+"][1:]))     # it rose somewhere
    assert losses["irprop+"][:2] == losses["rprop"][:2]                             # the same first steps
    assert losses["irprop+"] != losses["rprop"]                                     # then backtracking
    assert losses["irprop+"][-1] < losses["rprop"][-1]


def test_the_full_batch_rules_refuse_a_batch_size():
    net = fastbp.Network([2, 1], seed=0)
    for rule in ("rprop", "irprop+"):
        with pytest.raises(ValueError, match="optimizer '%s' steps on the whole training set: leave batch_size "
                           "unset" % re.escape(rule)):
            net.train(np.zeros((4, 2)), np.zeros((4, 1)), optimizer=rule, batch_size=2)
        h = net.train(np.zeros((4, 2)), np.zeros((4, 1)), optimizer=rule, batch_size=None, diagnostics=False)
        assert len(h["loss"]) == 1
