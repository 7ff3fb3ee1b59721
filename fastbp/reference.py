"""The NumPy reference: backpropagation written to be read, one seed formula to a line.

This is fastbp's executable specification; the Numba kernels in ``kernels.py`` must
agree with it (tests/test_agreement.py), and a finite-difference check holds it to the
mathematics (tests/test_gradients.py).

Conventions (seeds 003 and 004, with samples as rows):
  layer l has W[l] of shape (n_out, n_in) and b[l] of shape (n_out,);
  Z[l] = A[l-1] @ W[l].T + b[l],  A[l] = g_l(Z[l]),  A[0] = X;
  the per-sample loss E is a sum over output units; a batch's loss is its mean.
What each activation, loss and rule is and does is in the tables of functions.py and
optimizers.py; this module applies them.
"""
import math

import numpy as np

from . import functions
from .functions import ACTIVATIONS, LOSSES, mean_loss


def named(activation):
    """An activation as (name, parameter): each entry of ``activations`` below is a name
    (its parameter, if it has one, at the table's default) or a (name, parameter) pair."""
    return (activation, None) if isinstance(activation, str) else tuple(activation)


def layers(weights, biases, activations, X, masks=None):
    """(Z, A): every layer's pre-activations [Z1, ..., ZL] and outputs [A0 = X, A1, ..., AL]
    for a batch X of shape (m, n_in). masks: training's dropout, one (m, n_l) array (or
    None) per hidden layer (dropout_masks)."""
    Z, A = [], [X]
    for l, W in enumerate(weights):
        z = A[-1] @ W.T                                  # z_j = sum_i w_ji a_i
        if biases is not None:
            z = z + biases[l]                            # ... + b_j
        Z.append(z)
        name, parameter = named(activations[l])
        a = functions.activate(name, z, parameter)       # a_j = g(z_j)
        if masks is not None and l < len(masks) and masks[l] is not None:
            a = a * masks[l]                             # dropout: a_j = m_j g(z_j)
        A.append(a)
    return Z, A


def dropout_masks(rng, m, sizes, rates, dtype):
    """One batch's inverted-dropout masks: for each hidden layer with rate p > 0, an (m, n)
    array of 0 (dropped, where a uniform draw is below p) and 1 / (1 - p) (kept); None
    for the others. A unit is dropped when its 32-bit uniform number (dropout_draws) is
    below p 2^32; drawn row by row, layer by layer, as the kernels draw them."""
    drawn = [l for l, p in enumerate(rates) if p > 0]
    U = dropout_draws(rng, m, sum(sizes[l + 1] for l in drawn))
    masks, first = [None] * len(rates), 0
    for l in drawn:
        u = U[:, first:first + sizes[l + 1]]
        masks[l] = np.where(u < rates[l] * 2.0 ** 32, 0.0, 1.0 / (1.0 - rates[l])).astype(dtype)
        first += sizes[l + 1]
    return masks


def dropout_draws(rng, m, n):
    """(m, n rounded up to even) uniform 32-bit integers, two from each of the generator's
    64-bit outputs (its raw stream: half the steps of as many floats)."""
    return rng.bit_generator.random_raw((m, -(-n // 2))).view(np.uint32)


def forward(weights, biases, activations, X):
    """All layers' outputs [A0 = X, A1, ..., AL] for a batch X of shape (m, n_in)."""
    return layers(weights, biases, activations, X)[1]


def derivative(activation, z, a):
    """g'(z) of the activation, from z and a = g(z) (most read only a)."""
    name, parameter = named(activation)
    return functions.derivative(name, z, a, parameter)


def loss(weights, biases, activations, loss_name, X, T):
    """Mean over the samples of the per-sample loss."""
    return mean_loss(loss_name, forward(weights, biases, activations, X)[-1], T)


def output_delta(O, T, output, loss_name, Z=None):
    """The output error term dE/dz of each output unit, per sample (Z: the output layer's
    pre-activations, which an activation that needs_z reads)."""
    kind = LOSSES[loss_name].delta
    if kind == "matching":                               # the canonical pairs (functions.LOSSES):
        return O - T                                     # log-loss + sigmoid, cross-entropy + softmax, ...
    if kind != "chain":
        raise ValueError("loss %r: unknown output delta %r" % (loss_name, kind))
    E = O - T                                            # dE/do for E = 1/2 sum (t - o)^2
    if named(output)[0] == "softmax":                    # softmax's Jacobian is not diagonal:
        return O * (E - np.sum(O * E, axis=1, keepdims=True))   # do_k/dz_j = o_k (1[j=k] - o_j)
    return E * derivative(output, Z, O)                  # (o - t) g'(z)


def backward(weights, A, T, activations, loss_name, propagate="delta", Z=None, sample_weight=None, masks=None):
    """Error terms [delta_1, ..., delta_L], each (m, n_l), from the forward pass A (and Z,
    from layers(), which an activation that needs_z reads); with sample weights s, those
    of s_i E_i (every layer's terms scale with s_i, as the output's).

    propagate="delta" (seeds 002-004, the true gradient):
        delta_h = (delta_next @ W_next) * g'(a_h)        i.e. (W^T delta) * g'(z)
    propagate="error" (seed 000, "Make Your Own Neural Network"): the raw error is sent
    back instead, error_h = error_next @ W_next (W^T e, from e_out = o - t), and each
    layer's error term is its own raw error times its derivative: delta_h = error_h * g'(a_h).
    masks: the forward pass's dropout masks (layers()); a masked layer's output is
    a = m g(z), so its error term is back * m * g'(z) (delta propagation only).
    """
    L = len(weights)
    if Z is None:
        if any(ACTIVATIONS[named(a)[0]].needs_z for a in activations):
            raise ValueError("activations %s need the pre-activations: pass Z from "
                             "reference.layers" % list(activations))
        Z = [None] * L
    deltas = [None] * L
    deltas[-1] = output_delta(A[L], T, activations[-1], loss_name, Z[L - 1])
    sent = A[L] - T if propagate == "error" else deltas[-1]
    if sample_weight is not None:
        deltas[-1] = deltas[-1] * sample_weight[:, None]   # d(s_i E_i)/dz = s_i dE_i/dz
        sent = sent * sample_weight[:, None]
    for l in range(L - 1, 0, -1):
        back = sent @ weights[l]                         # W^T (delta or error) of the layer above
        M = None if masks is None or l - 1 >= len(masks) else masks[l - 1]
        if M is None:
            deltas[l - 1] = back * derivative(activations[l - 1], Z[l - 1], A[l])
        else:                                            # dropout: a = m g(z), g(z) = a / m where kept
            g = np.divide(A[l], M, out=np.zeros_like(A[l]), where=M != 0)
            deltas[l - 1] = np.where(M != 0, back * M * derivative(activations[l - 1], Z[l - 1], g), 0.0)
        sent = back if propagate == "error" else deltas[l - 1]
    return deltas


def gradients(A, deltas, total=None):
    """Yield each layer's (dW, db): the mean over the batch of the per-sample gradients
    (seed 003: dW = (1/m) dZ A^T, db = (1/m) sum dZ); with total given, their sum over
    total instead of m (weighted deltas over the batch's total weight).

    Layer by layer, so that a training step holds few weight-sized temporaries at a time:
    with more, glibc hands the memory back to the system after every step and faults it
    in again, which made this reference up to three times slower, and erratically so."""
    m = A[0].shape[0] if total is None else total
    for a_in, delta in zip(A, deltas):
        # dE/dw_ji = delta_j a_i. (np.dot rather than @: for one sample this is an outer
        # product, which matmul computes without BLAS, several times slower.)
        yield np.dot(delta.T / m, a_in), delta.mean(axis=0) if total is None else delta.sum(axis=0) / m


def jacobian(weights, biases, activations, X):
    """The Jacobian of the outputs: J[s, k, p] = d o_k / d theta_p for each sample s,
    theta the parameters flat in the network's order (each W[l] by rows, then each b[l]).
    Output unit k's row is one backward pass: mse's output error o - t is the unit
    vector e_k when t = o - e_k, so backward's error terms are then d o_k / d z."""
    Z, A = layers(weights, biases, activations, X)
    m, K = A[-1].shape
    rows = []
    for k in range(K):
        D = backward(weights, A, A[-1] - np.eye(K)[k], activations, "mse", Z=Z)   # d o_k / d z, per layer
        per_weight = [np.einsum("sj,si->sji", d, a).reshape(m, -1) for d, a in zip(D, A)]   # d o_k / d w_ji
        rows.append(np.concatenate(per_weight + (D if biases is not None else []), axis=1))   # ... / d b_j
    return np.stack(rows, axis=1)


def clip_by_norm(layers, max_norm):
    """[(dW, db), ...] scaled by min(1, max_norm / ||g||), ||g|| the norm of all of them
    together (PyTorch's clip_grad_norm_; db is None without biases)."""
    norm = np.sqrt(sum(np.sum(g * g) for layer in layers for g in layer if g is not None))
    scale = min(1.0, max_norm / norm) if norm > 0 else 1.0
    return [tuple(None if g is None else g * scale for g in layer) for layer in layers]


# ---------------------------------------------------------------- update rules
# One per optimizer (optimizers.RULES names them). p is a parameter array and g its
# gradient; s the rule's state arrays for p; all updated in place. lr is this step's
# learning rate, opt the Optimizer (its hyperparameters), t the step's number, from 1.

def sgd(p, g, s, lr, opt, t):
    g *= lr                  # in place, g is this step's own array: no second weight-sized
    p -= g                   # temporary (see gradients())        w <- w - lr g


def momentum(p, g, s, lr, opt, t):
    v, = s
    v[...] = opt.momentum * v - lr * g                   # v <- mu v - lr g
    p += v                                               # w <- w + v


def nesterov(p, g, s, lr, opt, t):
    v, = s
    v[...] = opt.momentum * v - lr * g                   # v <- mu v - lr g
    p += opt.momentum * v - lr * g                       # w <- w + mu v - lr g: the look-ahead


def adam(p, g, s, lr, opt, t):
    m, v = s
    m[...] = opt.beta1 * m + (1.0 - opt.beta1) * g       # m <- b1 m + (1 - b1) g
    v[...] = opt.beta2 * v + (1.0 - opt.beta2) * g * g   # v <- b2 v + (1 - b2) g^2
    lr_t = lr * math.sqrt(1.0 - opt.beta2 ** t) / (1.0 - opt.beta1 ** t)   # bias correction
    p -= lr_t * m / (np.sqrt(v) + opt.epsilon)           # w <- w - lr_t m / (sqrt(v) + eps)


def rmsprop(p, g, s, lr, opt, t):
    v, = s
    v[...] = opt.rho * v + (1.0 - opt.rho) * g * g      # s <- rho s + (1 - rho) g^2
    p -= lr * g / (np.sqrt(v) + opt.epsilon)             # w <- w - lr g / (sqrt(s) + eps)


def rprop(p, g, s, lr, opt, t, backtrack=False):
    """iRPROP- (torch.optim.Rprop); with backtrack, iRPROP+. s: the last gradient (0
    where it was set aside), each parameter's step size and (iRPROP+) its last change."""
    prev, size = s[0], s[1]
    if t == 1:
        size[...] = lr                                   # every step size starts at lr
    same, flipped = g * prev > 0, g * prev < 0
    size[...] = np.clip(np.where(same, size * opt.eta_plus, np.where(flipped, size * opt.eta_minus, size)),
                        opt.step_min, opt.step_max)      # grow while the sign holds, shrink when it flips
    g = np.where(flipped, 0.0, g)                        # a flipped sign: no step now, none remembered
    if not backtrack:
        p -= np.sign(g) * size                           # w <- w - sign(g) d
    else:
        change = s[2]
        undo = flipped & opt.rose                        # the loss rose: take the last change back
        change[...] = np.where(undo, -change, np.where(flipped, 0.0, -np.sign(g) * size))
        p += change
    prev[...] = g


def irprop_plus(p, g, s, lr, opt, t):
    rprop(p, g, s, lr, opt, t, backtrack=True)


def max_norm_rows(W, c):
    """Each row of W (a unit's incoming weights) scaled down to norm c where its norm is
    above c (Srivastava et al., 2014), in place."""
    norms = np.sqrt(np.sum(W * W, axis=1))
    W *= np.where(norms > c, c / np.where(norms > c, norms, 1.0), 1.0)[:, None]


def step(weights, biases, activations, loss_name, X, T, lr, l2=0.0, propagate="delta",
         optimizer=None, state=None, clip=None, sample_weight=None, total=None, l1=0.0, max_norm=None,
         noise=None, masks=None):
    """One gradient-descent step on the batch (X, T), in place. Returns the per-sample
    losses of the batch before the step (times the sample weights, if given).

    The step minimises mean(E) + (l2 / 2) * sum ||W||^2 + l1 * sum |W| (functions.
    PENALTIES): weights are penalised, biases are not, and the penalties do not scale with
    the batch size. max_norm, if given, then scales each hidden unit's incoming weights
    down to that norm where they are longer (not the output layer's; no biases). noise is
    added to X (input noise) and masks drop hidden units (dropout_masks), for this step. With sample weights s,
    mean(E) is sum_i s_i E_i / total (total: the batch's sum of s, unless given; train_epoch
    gives 1 for per-sample steps). clip, if given, caps the
    norm of the loss's gradient (all layers together) before the penalty is added.
    optimizer (an optimizers.Optimizer; None is plain SGD) gives the rule, and state its
    arrays for each parameter, weights first: [W_1, ..., W_L, b_1, ..., b_L]. optimizer.t
    counts the step.
    """
    if noise is not None:
        X = X + noise                                    # input noise: x + std * N(0, 1)
    Z, A = layers(weights, biases, activations, X, masks)
    losses = LOSSES[loss_name].per_sample(A[-1], T)
    deltas = backward(weights, A, T, activations, loss_name, propagate, Z, sample_weight, masks)   # before any update
    if sample_weight is not None:
        losses = losses * sample_weight
        total = sample_weight.sum() if total is None else total
    per_layer = gradients(A, deltas, total)
    if clip:
        per_layer = clip_by_norm([(dW, db if biases is not None else None) for dW, db in per_layer], clip)
    update, t = (sgd, 1) if optimizer is None else (optimizer.entry.update, optimizer.t + 1)
    if optimizer is not None:                            # (iRPROP+ compares the batch's loss with the last)
        mean = float(np.sum(losses)) / (len(losses) if total is None else total)
        optimizer.rose, optimizer.last_loss = mean > optimizer.last_loss, mean
    L = len(weights)
    for l, (dW, db) in enumerate(per_layer):
        if l2 or l1:                                     # the penalties' gradients, weights only
            dW = dW + functions.penalty_gradient(weights[l], {"l2": l2, "l1": l1})
        update(weights[l], dW, state[l] if state else (), lr, optimizer, t)
        if biases is not None:
            update(biases[l], db, state[L + l] if state else (), lr, optimizer, t)
    if max_norm:
        for W in weights[:-1]:                           # the hidden units' incoming weights
            max_norm_rows(W, max_norm)
    if optimizer is not None:
        optimizer.t = t
    return losses


def train_epoch(weights, biases, activations, loss_name, X, T, order, batch_size,
                lr, l2=0.0, propagate="delta", optimizer=None, state=None, clip=None, sample_weight=None,
                l1=0.0, max_norm=None, dropout=None, input_noise=0.0, rng=None):
    """One epoch over the samples X[order], in batches of batch_size (the last one may be
    smaller): batch_size=1 is per-sample SGD, batch_size=len(order) full-batch descent.
    Returns the sum over samples of the per-sample loss, each taken before its step.

    With sample weights s (over all of X's rows): a batch's step takes the weighted mean
    gradient sum_i s_i grad E_i / sum_i s_i, and a batch of total weight 0 takes none
    (scikit-learn's rule); a per-sample step takes s_i grad E_i (over one sample, the
    weighted mean would be the sample's own gradient whatever its weight). The loss
    returned is sum_i s_i E_i. dropout (a rate per hidden layer) and input_noise (a
    standard deviation) draw, for each batch that takes a step, its noise and then its
    masks from rng, as the kernels do."""
    total = 0.0
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        s = None if sample_weight is None else sample_weight[rows]
        if s is not None and not s.sum() > 0:
            continue                                     # no weight: no step
        X_rows = X[rows].toarray() if hasattr(X, "toarray") else X[rows]   # sparse rows, as dense
        noise = input_noise * rng.standard_normal(X_rows.shape).astype(X_rows.dtype) if input_noise else None
        masks = None
        if dropout is not None and any(p > 0 for p in dropout):
            sizes = [weights[0].shape[1]] + [W.shape[0] for W in weights]
            masks = dropout_masks(rng, len(rows), sizes, dropout, X_rows.dtype)
        total += float(np.sum(step(weights, biases, activations, loss_name, X_rows, T[rows],
                                   lr, l2, propagate, optimizer, state, clip, s,
                                   1.0 if s is not None and batch_size == 1 else None, l1, max_norm,
                                   noise, masks)))
    return total
