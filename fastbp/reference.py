"""The NumPy reference: backpropagation written to be read, one seed formula to a line.

This is fastbp's executable specification; the Numba kernels in ``kernels.py`` must
agree with it (tests/test_agreement.py), and a finite-difference check holds it to the
mathematics (tests/test_gradients.py).

Conventions (seeds 003 and 004, with samples as rows):
  layer l has W[l] of shape (n_out, n_in) and b[l] of shape (n_out,);
  Z[l] = A[l-1] @ W[l].T + b[l],  A[l] = g_l(Z[l]),  A[0] = X;
  the per-sample loss E is a sum over output units; a batch's loss is its mean.
"""
import numpy as np

from .functions import ACTIVATIONS, LOSSES, softmax


def activate(name, Z):
    return softmax(Z) if name == "softmax" else ACTIVATIONS[name][0](Z)


def forward(weights, biases, activations, X):
    """All layers' outputs [A0 = X, A1, ..., AL] for a batch X of shape (m, n_in)."""
    A = [X]
    for l, W in enumerate(weights):
        Z = A[-1] @ W.T                                  # z_j = sum_i w_ji a_i
        if biases is not None:
            Z = Z + biases[l]                            # ... + b_j
        A.append(activate(activations[l], Z))            # a_j = g(z_j)
    return A


def loss(weights, biases, activations, loss_name, X, T):
    """Mean over the samples of the per-sample loss."""
    O = forward(weights, biases, activations, X)[-1]
    return float(np.mean(LOSSES[loss_name][0](O, T)))


def output_delta(O, T, output, loss_name):
    """The output error term dE/dz of each output unit, per sample."""
    if loss_name != "mse":
        return O - T                                     # log-loss + sigmoid, cross-entropy + softmax
    E = O - T                                            # dE/do for E = 1/2 sum (t - o)^2
    if output == "softmax":                              # softmax's Jacobian is not diagonal:
        return O * (E - np.sum(O * E, axis=1, keepdims=True))   # do_k/dz_j = o_k (1[j=k] - o_j)
    return E * ACTIVATIONS[output][1](O)                 # (o - t) g'(z), g' written in o


def backward(weights, A, T, activations, loss_name, propagate="delta"):
    """Error terms [delta_1, ..., delta_L], each (m, n_l), from the forward pass A.

    propagate="delta" (seeds 002-004, the true gradient):
        delta_h = (delta_next @ W_next) * g'(a_h)        i.e. (W^T delta) * g'(z)
    propagate="error" (seed 000, "Make Your Own Neural Network"): the raw error is sent
    back instead, error_h = error_next @ W_next (W^T e, from e_out = o - t), and each
    layer's error term is its own raw error times its derivative: delta_h = error_h * g'(a_h).
    """
    L = len(weights)
    deltas = [None] * L
    deltas[-1] = output_delta(A[L], T, activations[-1], loss_name)
    sent = A[L] - T if propagate == "error" else deltas[-1]
    for l in range(L - 1, 0, -1):
        back = sent @ weights[l]                         # W^T (delta or error) of the layer above
        deltas[l - 1] = back * ACTIVATIONS[activations[l - 1]][1](A[l])
        sent = back if propagate == "error" else deltas[l - 1]
    return deltas


def gradients(A, deltas, scale=1.0):
    """Yield each layer's (dW, db), times scale: the mean over the batch of the per-sample
    gradients (seed 003: dW = (1/m) dZ A^T, db = (1/m) sum dZ).

    Layer by layer, with the scale applied to the small factor, so that a training step
    holds one weight-sized temporary at a time: with several, glibc hands the memory back
    to the system after every step and faults it in again, which made this reference up
    to three times slower, and erratically so."""
    m = A[0].shape[0]
    for a_in, delta in zip(A, deltas):
        # dE/dw_ji = delta_j a_i. (np.dot rather than @: for one sample this is an outer
        # product, which matmul computes without BLAS, several times slower.)
        yield np.dot(delta.T * (scale / m), a_in), delta.mean(axis=0) * scale


def step(weights, biases, activations, loss_name, X, T, lr, l2=0.0, propagate="delta"):
    """One gradient-descent step on the batch (X, T), in place. Returns the per-sample
    losses of the batch before the step.

    The step minimises mean(E) + (l2 / 2) * sum ||W||^2: weights are penalised, biases
    are not, and the penalty does not scale with the batch size.
    """
    A = forward(weights, biases, activations, X)
    losses = LOSSES[loss_name][0](A[-1], T)
    deltas = backward(weights, A, T, activations, loss_name, propagate)   # before any update
    for l, (lr_dW, lr_db) in enumerate(gradients(A, deltas, scale=lr)):
        if l2:
            weights[l] *= 1.0 - lr * l2                  # w <- w - lr l2 w  (the penalty's part)
        weights[l] -= lr_dW                              # w <- w - lr dE/dw
        if biases is not None:
            biases[l] -= lr_db                           # b <- b - lr dE/db
    return losses


def train_epoch(weights, biases, activations, loss_name, X, T, order, batch_size,
                lr, l2=0.0, propagate="delta"):
    """One epoch over the samples X[order], in batches of batch_size (the last one may be
    smaller): batch_size=1 is per-sample SGD, batch_size=len(order) full-batch descent.
    Returns the sum over samples of the per-sample loss, each taken before its step."""
    total = 0.0
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        total += float(np.sum(step(weights, biases, activations, loss_name,
                                   X[rows], T[rows], lr, l2, propagate)))
    return total
