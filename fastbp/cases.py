"""One table of cases, built from the tables of functions.py and optimizers.py (as numbagg's
COMPARISONS): the agreement tests, the optimizer tests, the finite-difference check and the
asv benchmarks all draw their networks, activations, losses, rules, training modes and
dtypes from here. A new ACTIVATIONS, LOSSES or RULES entry is therefore tested against
the reference, checked by finite differences and benchmarked without editing a test.
"""
import numpy as np

from .functions import HIDDEN_ACTIVATIONS, LOSSES, OUTPUT_ACTIVATIONS, PENALTIES
from .optimizers import RULES

DTYPES = ("float64", "float32")
MODES = {"per-sample": 1, "mini-batch": 7, "full-batch": None}      # name -> batch_size
TOLERANCE = {"float64": 1e-10, "float32": 2e-4}                     # kernels vs reference

# every (output, loss) pair the library accepts
OUTPUT_LOSS = [(output, name) for name, loss in LOSSES.items()
               for output in (loss.outputs or OUTPUT_ACTIVATIONS)]

# (sizes, hidden activations, output, loss): chosen shapes first, ...
_CHOSEN = [
    ([6, 5, 3], "sigmoid", "sigmoid", "mse"),
    ([6, 7, 4, 3], ["tanh", "relu"], "softmax", "cross_entropy"),
    ([6, 5, 3], "identity", "softmax", "mse"),
    ([6, 4, 4, 4, 2], ["relu", "sigmoid", "tanh"], "sigmoid", "binary_cross_entropy"),
    ([6, 3], [], "identity", "mse"),
    ([6, 5, 2], "relu", "tanh", "mse"),
    ([6, 5, 2], "tanh", "relu", "mse"),
    # wide enough for the kernels' parallel (prange) paths
    ([200, 180, 4], "sigmoid", "sigmoid", "mse"),
    ([12, 200, 200, 3], ["relu", "tanh"], "softmax", "cross_entropy"),
]


def _covered(networks):
    hidden, pairs = set(), set()
    for _, activation, output, loss in networks:
        hidden.update([activation] if isinstance(activation, str) else activation)
        pairs.add((output, loss))
    return hidden, pairs


def _completed(networks):
    """... then one small network for each hidden activation and each (output, loss) pair
    the chosen ones leave out: every table entry is in some case."""
    hidden, pairs = _covered(networks)
    extra = [([6, 5, 4, 3], name, "identity", "mse") for name in HIDDEN_ACTIVATIONS if name not in hidden]
    extra += [([6, 5, 3], "tanh", output, loss) for output, loss in OUTPUT_LOSS if (output, loss) not in pairs]
    return networks + extra


NETWORKS = _completed(_CHOSEN)
# the optimizer tests: every rule on these, in every mode and dtype
OPTIMIZER_NETWORKS = [
    ([6, 5, 3], "sigmoid", "sigmoid", "mse"),
    ([6, 7, 4, 3], ["tanh", "relu"], "softmax", "cross_entropy"),
    ([30, 40, 2], "tanh", "identity", "mse"),
]
RULE_NAMES = tuple(RULES)
# the rules with a formula (an elementwise update) and the methods with a step of their own
FORMULA_RULES = tuple(name for name, rule in RULES.items() if rule.step is None)
METHOD_RULES = tuple(name for name, rule in RULES.items() if rule.step is not None)
# every formula rule in every training mode it takes (a full-batch rule: full batch only)
RULE_MODES = [(rule, mode) for rule in FORMULA_RULES for mode, size in MODES.items()
              if size is None or not RULES[rule].full_batch]
RULE_CASES = [(network, rule, mode) for network in OPTIMIZER_NETWORKS for rule, mode in RULE_MODES]
# the full-batch rules' benchmarks, rule -> (network, samples): the Jacobian's methods (LM,
# BR) on a small regression network, the others on a digits-sized classifier
FULL_BATCH_CASES = {rule: (([13, 20, 1], "tanh", "identity", "mse"), 400) if RULES[rule].jacobian
                    else (([64, 32, 10], "tanh", "softmax", "cross_entropy"), 2048)
                    for rule in RULE_NAMES if RULES[rule].full_batch}
# the methods' tests (methods.py): networks with the squared error Levenberg-Marquardt needs
METHOD_NETWORKS = [
    ([3, 5, 2], "tanh", "identity", "mse"),
    ([4, 5, 3, 2], ["sigmoid", "relu"], "sigmoid", "mse"),
    ([5, 4, 3], "tanh", "softmax", "mse"),
]
# the regularisers as training settings: the weight penalties (functions.PENALTIES), the
# max-norm constraint, dropout and input noise, each on its own and all at once (max_norm
# 0.9 is below the norm of these networks' rows at the start, so that it acts)
_EACH = {"max_norm": 0.9, "dropout": 0.2, "input_noise": 0.1, **{name: 0.01 for name in PENALTIES}}
REGULARISERS = {"none": {}, **{name: {name: value} for name, value in _EACH.items()},
                "all": dict(_EACH, **{name: 0.005 for name in PENALTIES})}


def case_id(network):
    sizes, activation, output, loss = network
    hidden = "-".join([activation] if isinstance(activation, str) else activation) or "none"
    return "%s-%s-%s-%s" % ("-".join(map(str, sizes)), hidden, output, loss)


def targets(rng, m, n_out, output, loss):
    """Targets the loss takes (functions.LOSSES' kinds of targets), near the output's range."""
    kind = LOSSES[loss].targets
    if kind == "distribution":
        T = rng.random((m, n_out)) + 0.05
        return T / T.sum(axis=1, keepdims=True)
    if kind == "nonnegative":
        return rng.integers(0, 3, (m, n_out)).astype(float)      # counts
    if kind == "unit" or output in ("sigmoid", "softmax"):
        return rng.random((m, n_out))
    if output == "exp":                          # positive, as the output is
        return rng.random((m, n_out)) + 0.5
    if kind != "any":
        raise ValueError("no targets for the kind %r" % kind)
    return rng.normal(size=(m, n_out))


def problem(sizes, activation, output, loss, m, seed, dtype="float64", **kwargs):
    """(network, X, T): a network of the case with non-zero biases (so they matter), and
    m samples of inputs and targets for it, all from seed."""
    from .network import Network
    rng = np.random.default_rng(seed)
    net = Network(sizes, activation=activation, output=output, loss=loss, seed=seed, dtype=dtype, **kwargs)
    if net.bias:
        net.biases = [rng.normal(0, 0.5, b.shape) for b in net.biases]
    X = rng.normal(size=(m, sizes[0]))
    return net, X, targets(rng, m, sizes[-1], output, loss)


# ---------------------------------------------------------------- benchmarks (asv)
# name -> (sizes, hidden activation, output, loss): seed 001's network, seed 000's at three
# widths and a deeper one, sigmoid/mse as the seeds; and relu/softmax/cross-entropy, the
# estimators' kind
BENCHMARK_NETWORKS = {
    "3-3-2-1": ([3, 3, 2, 1], "sigmoid", "sigmoid", "mse"),
    "784-100-10": ([784, 100, 10], "sigmoid", "sigmoid", "mse"),
    "784-200-10": ([784, 200, 10], "sigmoid", "sigmoid", "mse"),
    "784-1000-10": ([784, 1000, 10], "sigmoid", "sigmoid", "mse"),
    "784-256-128-64-10": ([784, 256, 128, 64, 10], "sigmoid", "sigmoid", "mse"),
    "784-200-10-relu-softmax-ce": ([784, 200, 10], "relu", "softmax", "cross_entropy"),
}
# every table entry on one small network: each activation (hidden, with an identity output
# and mse) and each (output, loss) pair (tanh hidden)
BENCHMARK_FUNCTIONS = (["hidden %s" % name for name in HIDDEN_ACTIVATIONS]
                       + ["%s + %s" % pair for pair in OUTPUT_LOSS])


def benchmark_function_network(name):
    """(sizes, hidden activation, output, loss) of a BENCHMARK_FUNCTIONS entry."""
    if name.startswith("hidden "):
        return [64, 48, 8], name[len("hidden "):], "identity", "mse"
    output, loss = name.split(" + ")
    return [64, 48, 8], "tanh", output, loss

