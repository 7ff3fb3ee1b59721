"""The seeds' experiments, reproduced with fastbp.

seed001: seed 001's vanishing-gradient experiment. A 3-3-2-1 network with biases, sigmoid
output and mse, trained on its two clusters by mini-batches of 128 drawn at random, lr
0.1, until the mean loss over the last 1000 steps is below 0.01; once with sigmoid hidden
layers and once with ReLU. The seed took 1037 s (sigmoid) and 309 s (ReLU) in NumPy.
"""
import time

import numpy as np

from .datasets import two_clusters
from .network import Network

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
