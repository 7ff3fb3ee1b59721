import numpy as np

import fastbp
from fastbp.functions import HIDDEN_ACTIVATIONS, LOSSES, OUTPUT_ACTIVATIONS

# every (output, loss) pair the library accepts
OUTPUT_LOSS = [(o, name) for name, (_, pairs) in LOSSES.items()
               for o in (pairs or OUTPUT_ACTIVATIONS)]


def make_targets(rng, m, n_out, output, loss):
    """Targets a loss accepts: rows summing to 1 for cross-entropy, [0, 1] for log-loss."""
    if loss == "cross_entropy":
        T = rng.random((m, n_out)) + 0.05
        return T / T.sum(axis=1, keepdims=True)
    if loss == "binary_cross_entropy" or output in ("sigmoid", "softmax"):
        return rng.random((m, n_out))
    return rng.normal(size=(m, n_out))


def make_problem(sizes, activation, output, loss, m, seed, dtype="float64", **kwargs):
    rng = np.random.default_rng(seed)
    net = fastbp.Network(sizes, activation=activation, output=output, loss=loss, seed=seed,
                         dtype=dtype, **kwargs)
    if net.bias:                                   # non-zero biases, so they matter
        net.biases = [rng.normal(0, 0.5, b.shape) for b in net.biases]
    X = rng.normal(size=(m, sizes[0]))
    return net, X, make_targets(rng, m, sizes[-1], output, loss)


__all__ = ["HIDDEN_ACTIVATIONS", "OUTPUT_LOSS", "make_problem", "make_targets"]
