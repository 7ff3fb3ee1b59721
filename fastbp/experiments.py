"""The seeds' experiments, reproduced with fastbp.

seed001: seed 001's vanishing-gradient experiment. A 3-3-2-1 network with biases, sigmoid
output and mse, trained on its two clusters by mini-batches of 128 drawn at random, lr
0.1, until the mean loss over the last 1000 steps is below 0.01; once with sigmoid hidden
layers and once with ReLU. The seed took 1037 s (sigmoid) and 309 s (ReLU) in NumPy.

dropout_fashion: does dropout matter on real data? 784-512-512-10 ReLU networks on
Fashion-MNIST with Adam, the same seed and epochs, one with dropout and one without.
"""
import time

import numpy as np

from .datasets import two_clusters
from .network import Network
from .optimizers import Optimizer

SEED001_SECONDS = {"sigmoid": 1037.160441, "relu": 309.193749}   # as the seed reports them


def seed001(activation="sigmoid", target=0.01, window=1000, max_steps=5_000_000, lr=0.1,
            batch_size=128, seed=0, backend="numba", init="standard_normal", record_every=100):
    """Train seed 001's network until the mean loss of the last `window` steps is below
    `target`, checked every `window` steps as the seed does (or until max_steps).

    Returns a dict: steps, seconds (training only), converged, final_loss, the network,
    and a 'history' recorded every `record_every` steps: the step count, the mean loss of
    those steps and each layer's mean |error term| over the whole data set."""
    X, y = two_clusters(100, seed=seed)
    net = Network([3, 3, 2, 1], activation=activation, output="sigmoid", loss="mse", bias=True,
                  init=init, seed=seed)
    net.warm_up(batch_size, backend)         # compile outside the timing
    history = {"steps": [], "loss": [], "mean_abs_delta": []}
    steps, seconds, mean_loss = 0, 0.0, np.inf
    per_window = window // record_every
    while steps < max_steps and not mean_loss < target:
        start = time.perf_counter()
        chunk_loss = net.train_steps(X, y, record_every, lr=lr, batch_size=batch_size, backend=backend)
        seconds += time.perf_counter() - start
        steps += record_every
        history["steps"].append(steps)
        history["loss"].append(chunk_loss)
        history["mean_abs_delta"].append([float(np.abs(d).mean()) for d in net.deltas(X, y)])
        if steps % window == 0:
            mean_loss = float(np.mean(history["loss"][-per_window:]))
    return dict(activation=activation, steps=steps, seconds=seconds, converged=mean_loss < target,
                final_loss=mean_loss, network=net, history=history)


def dropout_fashion(rate=0.2, epochs=10, batch_size=128, lr=0.001, seed=0, dtype="float32", data=None,
                    hidden=(512, 512)):
    """Train two networks of [784, *hidden, 10] (ReLU, softmax, cross-entropy, He init, Adam
    at lr), from the same seed, for the same epochs: one with `rate` dropout on every
    hidden layer, one without. Their epochs alternate, so that the two are timed
    interleaved. data: (X_train, y_train, X_test, y_test), else Fashion-MNIST.

    Returns {"dropout": ..., "plain": ...}, each a dict: test_accuracy, train_loss and
    test_loss (after the last epoch, without dropout), gap (test_loss - train_loss),
    epoch_seconds (a list); and "epoch_ratio", the median over the epochs of the dropout
    epoch's time over the plain one's."""
    from .datasets import load_fashion_mnist
    from .functions import accuracy
    X, y, X_test, y_test = data if data is not None else load_fashion_mnist(dtype=dtype)
    sizes = [X.shape[1], *hidden, int(max(y.max(), y_test.max())) + 1]
    arms = {}
    for name in ("dropout", "plain"):
        net = Network(sizes, activation="relu", output="softmax", loss="cross_entropy", init="he", seed=seed,
                      dtype=dtype)
        arms[name] = dict(net=net, optimizer=Optimizer("adam", lr=lr), epoch_seconds=[])   # (its state carries)
    for arm in arms.values():
        arm["net"].warm_up(batch_size)                       # compile outside the timing
    for _ in range(epochs):
        for name, arm in arms.items():
            started = time.perf_counter()
            arm["net"].train(X, y, epochs=1, batch_size=batch_size, optimizer=arm["optimizer"],
                             dropout=rate if name == "dropout" else None, diagnostics=False)
            arm["epoch_seconds"].append(time.perf_counter() - started)
    results = {}
    for name, arm in arms.items():
        net = arm["net"]
        train_loss, test_loss = net.loss(X, y), net.loss(X_test, y_test)
        results[name] = dict(test_accuracy=accuracy(net.predict(X_test), y_test), train_loss=train_loss,
                             test_loss=test_loss, gap=test_loss - train_loss, epoch_seconds=arm["epoch_seconds"])
    ratios = [a / b for a, b in zip(results["dropout"]["epoch_seconds"], results["plain"]["epoch_seconds"])]
    results["epoch_ratio"] = float(np.median(ratios))
    return results
