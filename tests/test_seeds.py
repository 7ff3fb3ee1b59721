"""The seeds' own numbers and programs, reproduced (../shared/seeds/README.md).

The seeds, reproduced
=====================

The five documents in `../shared/seeds/` define what fastbp computes; their numbers are
tests (`tests/test_seeds.py`).

- **Seed 000** ("Make Your Own Neural Network"): `Network(sizes, bias=False, init="normal",
  propagate="error")` with sigmoid and mse is the book's network; trained per sample it
  reproduces the book's `train()` to 1e-12 (the test runs the seed's own class beside it).
  One epoch on Fashion-MNIST reaches at least 0.82 test accuracy (tested).
- **Seed 001**: `fastbp seed001` trains its 3-3-2-1 network on its two clusters (random
  mini-batches of 128, lr 0.1) until the mean loss of the last 1000 steps is below 0.01,
  with sigmoid and with ReLU hidden layers, and prints the mean |error term| per layer:
  each layer's is several times smaller than the next one's, the vanishing gradient the
  seed shows. The seed took 1037 s and 309 s; fastbp's runs, with the true gradient (the
  seed averages activations over the batch, which is not backpropagation), take a few
  thousand steps and under a second. Its XOR example (tanh hidden layer, softmax,
  cross-entropy) is a test.
- **Seed 002**: both worked examples, to the digits the text gives.
- **Seeds 003 and 004**: any depth, per-layer activations, biases, log-loss, full-batch
  descent, L2, softmax with cross-entropy; the finite-difference check covers every
  activation, output and loss.
"""
import numpy as np
import pytest

import fastbp
from fastbp import reference

BACKENDS = ["numpy", "numba"]


def one_step_change(net, x, t, lr, backend):
    """Weight changes of one per-sample SGD step."""
    before = [W.copy() for W in net.weights]
    net.train(np.atleast_2d(x), np.atleast_2d(t), epochs=1, lr=lr, batch_size=1,
              shuffle=False, backend=backend)
    return [W - W0 for W, W0 in zip(net.weights, before)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_seed002_worked_example(backend):
    """x = (0.1, 0.3), w = (0.4, -0.2), W = 0.1, y = 1, lr = 0.5; the text's figures are
    rounded, and its dw uses the hidden error term already rounded to 0.003."""
    net = fastbp.Network([2, 1, 1], bias=False)
    net.weights = [[[0.4, -0.2]], [[0.1]]]
    x, y = np.array([[0.1, 0.3]]), np.array([[1.0]])

    weights, _ = net._params()
    A = reference.forward(weights, None, net.activations, x)
    deltas = reference.backward(weights, A, y, net.activations, "mse")
    assert round((x @ net.weights[0].T).item(), 2) == -0.02            # h
    assert round(A[1].item(), 3) == 0.495                             # a = f(h)
    assert round(A[2].item(), 3) == 0.512                             # y_hat
    assert round(-deltas[1].item(), 3) == 0.122                       # output error term
    assert round(-deltas[0].item(), 3) == 0.003                       # hidden error term

    dW_hidden, dW_out = one_step_change(net, x, y, 0.5, backend)
    assert round(dW_out.item(), 4) == 0.0302
    np.testing.assert_allclose(dW_hidden.ravel(), [0.00015, 0.00045], atol=1e-5)
    # ... and exactly, from the unrounded error term
    np.testing.assert_allclose(dW_hidden.ravel(), 0.5 * -deltas[0].item() * x.ravel(), rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_seed002_exercise(backend):
    net = fastbp.Network([3, 2, 1], bias=False)
    weights_input_hidden = np.array([[0.5, -0.6], [0.1, -0.2], [0.1, 0.7]])
    weights_hidden_output = np.array([0.1, -0.3])
    net.weights = [weights_input_hidden.T, weights_hidden_output[None, :]]
    dW_hidden, dW_out = one_step_change(net, [0.5, 0.1, -0.2], [0.6], 0.5, backend)
    np.testing.assert_allclose(dW_out.ravel(), [0.00804047, 0.00555918], rtol=1e-6)
    np.testing.assert_allclose(dW_hidden.T, [[1.77005547e-04, -5.11178506e-04],
                                             [3.54011093e-05, -1.02235701e-04],
                                             [-7.08022187e-05, 2.04471402e-04]], rtol=1e-6)


class Threelayer_net:
    """Seed 000's network as the seed writes it (names and all); the reference to match."""

    def __init__(self, inode, hnode, onode, learningrate):
        self.wh = np.random.normal(0.0, pow(inode, -0.5), (hnode, inode))
        self.wo = np.random.normal(0.0, pow(hnode, -0.5), (onode, hnode))
        self.lr = learningrate

    def train(self, input_, target_):
        sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
        inputs = np.array(input_, ndmin=2).T
        targets = np.array(target_, ndmin=2).T
        h_output = sigmoid(np.dot(self.wh, inputs))
        o_output = sigmoid(np.dot(self.wo, h_output))
        o_error = targets - o_output
        h_error = np.dot(self.wo.T, o_error)
        self.wo += self.lr * np.dot((o_error * o_output * (1.0 - o_output)), h_output.T)
        self.wh += self.lr * np.dot((h_error * h_output * (1.0 - h_output)), inputs.T)


def seed000_data(m, n_in, n_out, seed=0):
    """Seed 000's preprocessing of random 'images': inputs in [0.01, 1], targets 0.01/0.99."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 256, (m, n_in)) / 255.0 * 0.99 + 0.01
    Y = np.full((m, n_out), 0.01)
    Y[np.arange(m), rng.integers(0, n_out, m)] = 0.99
    return X, Y


@pytest.mark.parametrize("backend", BACKENDS)
def test_seed000_network_reproduced(backend):
    np.random.seed(0)
    book = Threelayer_net(784, 50, 10, 0.1)
    X, Y = seed000_data(300, 784, 10)
    net = fastbp.Network([784, 50, 10], activation="sigmoid", output="sigmoid", loss="mse",
                         bias=False, init="normal", propagate="error")
    net.weights = [book.wh, book.wo]
    start = [book.wh.copy(), book.wo.copy()]
    for x, y in zip(X, Y):
        book.train(x, y)
    net.train(X, Y, epochs=1, lr=0.1, batch_size=1, shuffle=False, backend=backend)
    np.testing.assert_allclose(net.weights[0], book.wh, rtol=0, atol=1e-12)
    np.testing.assert_allclose(net.weights[1], book.wo, rtol=0, atol=1e-12)
    # the book's rule is not the gradient: the delta rule gives other weights
    other = fastbp.Network([784, 50, 10], bias=False, propagate="delta")
    other.weights = start
    other.train(X, Y, epochs=1, lr=0.1, batch_size=1, shuffle=False, backend=backend)
    assert np.abs(other.weights[0] - net.weights[0]).max() > 1e-3


def test_seed000_initialisation():
    """init='normal' draws N(0, n_in^-1/2), shaped (n_out, n_in), as the seed does."""
    net = fastbp.Network([400, 300, 10], bias=False, seed=1)
    assert net.weights[0].shape == (300, 400) and net.weights[1].shape == (10, 300)
    assert abs(net.weights[0].std() - 400 ** -0.5) < 0.02 * 400 ** -0.5
    assert abs(net.weights[0].mean()) < 0.01 * 400 ** -0.5 * 10
    assert abs(net.weights[1].std() - 300 ** -0.5) < 0.1 * 300 ** -0.5


@pytest.mark.parametrize("backend", BACKENDS)
def test_seed001_xor_with_tanh_and_softmax(backend):
    """The end of seed 001: XOR learned by a tanh hidden layer of 3 and a softmax output."""
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
    y = np.array([0, 1, 1, 0])
    net = fastbp.Network([2, 3, 2], activation="tanh", output="softmax", loss="cross_entropy",
                         init="glorot", seed=3)
    history = net.train(X, y, epochs=3000, lr=0.5, batch_size=4, backend=backend)
    assert history["loss"][-1] < 0.05
    assert list(net.predict(X).argmax(axis=1)) == [0, 1, 1, 0]
