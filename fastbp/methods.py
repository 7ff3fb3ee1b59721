"""The full-batch methods with a step of their own: Levenberg-Marquardt, Bayesian
regularisation and scaled conjugate gradient (optimizers.RULES names them, with their
settings; ``Network.train_epoch`` hands them the epoch).

Each is one function: one epoch is one step of the method, on the whole training set,
taken in float64 whatever the network's dtype. What a method needs of the network comes
through four of its operations, each by either backend (the NumPy reference or the
kernels, which tests hold together): the flat parameters (``parameter_vector``,
``set_parameter_vector``), the products of the Jacobian (``jacobian_products`` here: J^T J,
J^T r and r^T r of the residuals r = o - t, accumulated over blocks of samples), the
outputs, and the mean loss's gradient (``loss_gradient``). Their scalar state (mu; gamma,
alpha, beta; lambda) lives in ``Optimizer.scalars`` and goes into every checkpoint.

Sample weights s weigh each sample's squared errors (J^T S J, J^T S r); the error sums
E_D are sum_i s_i ||o_i - t_i||^2, twice the summed mean-squared-error loss.


The classical trainers: RPROP, Levenberg-Marquardt, Bayesian regularisation, SCG
================================================================================

The methods MATLAB's shallow-network toolbox and FANN made standard for small networks,
each an `optimizers.RULES` entry, in `Network.train`, the estimators' `solver=`, the
command line's `--optimizer`, checkpoints and exact resume, and the divergence guard. All
are full batch: each epoch is one step on the whole training set, `batch_size` is left
unset (any other is a clear error), and `fastbp.distributed` refuses them.

```python
net = fastbp.Network([1, 10, 1], activation="tanh", output="identity", init="nguyen_widrow")
history = net.train(x, y, epochs=100, optimizer="lm")        # history["mu"]: mu after each epoch
net.train(x, y, epochs=100, optimizer=fastbp.Optimizer("br"))  # history["gamma"], ["alpha"], ["beta"]
fastbp.MLPRegressor((10,), solver="lm", init="nguyen_widrow").fit(X, y)
```

- `rprop`: iRPROP- (Igel and Hüsken, 2000), `torch.optim.Rprop`'s: each parameter's step size
  grows by `eta_plus` while its gradient keeps its sign, shrinks by `eta_minus` when it flips
  (that gradient then counts as 0); `w -= sign(g) d`; its settings (defaults): `lr` 0.01 (every
  first step size), `eta_minus` 0.5, `eta_plus` 1.2, `step_min` 1e-6, `step_max` 50
- `irprop+`: iRPROP+: as `rprop`, and where a sign flips while the loss rose above the last
  epoch's, the last change is taken back; its settings (defaults): as `rprop`
- `lm`: Levenberg-Marquardt (MATLAB's `trainlm`): `(J^T J + mu I) dx = -J^T e`; mu times
  `mu_dec` after a step that lowers the sum of squared errors, times `mu_inc` and the step
  retried after one that does not; the run stops (`history["stopped"] == "mu at mu_max"`) once
  mu passes `mu_max`; its settings (defaults): `mu` 0.001, `mu_dec` 0.1, `mu_inc` 10, `mu_max`
  1e10; `l2` adds `m l2` to J^T J's weight diagonal
- `br`: Bayesian regularisation (MacKay, 1992; Foresee and Hagan, 1997; `trainbr`): LM on `beta
  E_D + alpha E_W`, then `gamma = P - 2 alpha tr(H^-1)`, `alpha = gamma / (2 E_W)`, `beta = (N -
  gamma) / (2 E_D)`; its settings (defaults): as `lm`; no `l2` (it sets its own)
- `scg`: Møller's (1993) scaled conjugate gradient (`trainscg`), on any loss: the curvature
  along the direction from two gradients `sigma /; its settings (defaults): p

`lm` and `br` minimise the squared error (`loss="mse"`; any other loss is a clear error).
The classifier with `solver="lm"` or `"br"` trains its softmax or sigmoid outputs on the
squared error, as MATLAB's `patternnet` allows; `br` ignores `alpha`. `init="nguyen_widrow"`
(`initnw`): each hidden unit's incoming weights are uniform, scaled to the norm
`0.7 H^(1/n)` (H units, n inputs), its biases spread evenly over `[-0.7 H^(1/n), 0.7 H^(1/n)]`
(signed as its first weight), the output layer's weights and biases U(-1, 1); it assumes
inputs scaled to [-1, 1].

**Where they differ from MATLAB.** Errors and Jacobians are those of the raw outputs: MATLAB
maps inputs and targets to [-1, 1] first (`mapminmax`); scale them yourself. Levenberg-
Marquardt works on the sum of squared errors (the loss reported is the mean squared-error
loss, `E_D / 2m`), as `trainlm` does; it stops only on `epochs`, `mu_max`, the shared
`n_iter_no_change`, `tol` and `target_loss`, not on `min_grad` or a validation check
(`validation_fraction` keeps the best validation epoch instead). Bayesian regularisation's
`E_W` counts every parameter, biases included, and it starts from `alpha = 0, beta = 1`
(the first step is plain LM); `N - gamma` is kept at 1 or more. SCG raises lambda after a
step with `Delta < 0.25` by Møller's `delta (1 - Delta) / |p_k|^2` with the old direction's
norm (`trainscg` divides by the new one's), and stops on `epochs` or a zero gradient.
`nguyen_widrow` leaves out `initnw`'s scaling to each transfer function's active input range.

**Checked against the outside world** (`tests/test_methods.py`, `tests/test_optimizers.py`):
- `rprop` takes `torch.optim.Rprop`'s steps: 50 epochs on a 3-4-2 network, float64, weights
  equal to 1e-10 (values written down from PyTorch 2.13, the script beside them);
  `irprop+` and `rprop` by hand on a one-weight network.
- `lm` with pyrenn's settings (mu from 3) follows pyrenn's LM epoch by epoch from the same
  start, to 1e-8 in the sum of squared errors, at 1-10-1 on a noisy sine and 10-20-1 on
  scikit-learn's diabetes data; so it reaches as low an error in as many epochs.
- `lm`'s final error equals `scipy.optimize.least_squares(method="lm")`'s from the same
  start to 1% (1-3-1 and 1-4-1 on a noisy sine). Not always: on some starts the two end in
  different local minima (1-6-1 from `seed=2`: 0.614 against MINPACK's 0.516, 19% apart).
- `br` beats unregularised `lm` on test error at 1-30-1 on 40 noisy samples, with gamma below P / 2.
- `scg` reaches a lower training loss on digits (64-32-10, softmax and cross-entropy) than
  full-batch momentum at its best of four learning rates, after as many gradient evaluations.
- `net.jacobian(X)` (an `(m, n_out, P)` array; `net.jacobian(X, Y)` that of the errors) is
  held to finite differences; J^T J is accumulated over blocks of samples
  (`methods.jacobian_products`), O(P^2) memory, and a network whose P x P system would not fit
  in memory is refused by name.

Threads: from BLAS_THREADS_FROM parameters, Levenberg-Marquardt's and Bayesian
regularisation's products and solves run on as many BLAS threads as the CPUs other
processes leave free (threads.LoadChooser, as batched epochs choose theirs;
FASTBP_THREADS=N fixes it), below it on one. Scaled conjugate gradient's full-batch
products of at least threads.LOOK_FROM rows x weights take LoadChooser.products threads,
as predicting does, smaller ones one. J^T J, J^T r, the factorisations and every dot
product here go to SciPy's BLAS and LAPACK, which Numba's kernels call too, not to
NumPy's own copy of OpenBLAS (whose idle threads would spin on the CPUs the other copy's
need).
"""
import math
import os

import numpy as np
from scipy import linalg

from .checks import is_sparse
from .functions import mean_loss
from .threads import LOOK_FROM, batch_chooser, blas_threads

MU_FLOOR = 1e-20            # mu never falls below this (trainlm's floor)
# Parameters from which the P x P products and solves take more than one BLAS thread: as
# many as the CPUs other processes leave free (threads.LoadChooser, as batched epochs do).
# On the 2-core Intel Xeon, 10 epochs of 20-60-1 (P = 1,321) on 2,000 rows: two threads
# 1.22x as fast as one alone, but 0.60x beside one busy process and 0.58x beside two
# (BLAS splits each product and factorisation evenly and waits for the thread that shares
# a CPU; beside two, LAPACK's many short parallel steps wait as often).
BLAS_THREADS_FROM = 1000


def lm_scalars(optimizer):
    return {"mu": optimizer.mu}


def br_scalars(optimizer):
    """gamma: the effective number of parameters (0 before the first estimate); alpha
    and beta as Foresee and Hagan (1997) start them: the first step is plain LM."""
    return {"mu": optimizer.mu, "gamma": 0.0, "alpha": 0.0, "beta": 1.0}


def scg_scalars(optimizer):
    """lambda and lambda_bar: the scale parameter and its raise; delta: the curvature
    along the direction, kept after a failed step; success: whether the last step was
    taken (1) or not (0); gradients: the gradient evaluations so far."""
    return {"lambda": optimizer.lambda_init, "lambda_bar": 0.0, "delta": 0.0, "success": 1.0, "gradients": 0.0}


def mu_stop(optimizer):
    """Why a Levenberg-Marquardt run ends, or None."""
    return "mu at mu_max" if optimizer.scalars["mu"] > optimizer.mu_max else None


def scg_stop(optimizer):
    return "zero gradient" if optimizer.t > 0 and not np.any(optimizer.state["w"][1]) \
        and not np.any(optimizer.state["b"][1]) else None


# ---------------------------------------------------------------- Levenberg-Marquardt

def _penalised(net, l2, total):
    """The diagonal that l2 adds to J^T J on the sum-of-squares scale (F = E_D + M l2
    ||W||^2, M the total weight: twice M times the mean loss plus its (l2 / 2) ||W||^2):
    M l2 on the weights, 0 on the biases."""
    n_w = net.n_parameters[0]
    d = np.zeros(net.n_trainable)
    d[:n_w] = total * l2
    return d


def levenberg_marquardt(net, X, T, S, optimizer, l2, backend, bayesian=False):
    """One Levenberg-Marquardt epoch (MATLAB's trainlm): the products of the Jacobian
    at the weights w, then dx from (J^T J + D + mu I) dx = -(J^T r + D w) (D: l2's
    diagonal, or Bayesian regularisation's alpha), tried at w + dx; a step that lowers F
    is kept and mu falls by mu_dec, one that does not is undone and retried with mu
    raised by mu_inc, until one is kept or mu passes mu_max (no step; the run stops).
    Returns the epoch's summed loss at w (E_D / 2)."""
    scalars = optimizer.scalars
    total = X.shape[0] if S is None else float(S.sum())
    with blas_threads(batch_chooser().threads() if net.n_trainable >= BLAS_THREADS_FROM else 1):
        w = net.parameter_vector()
        JtJ, Jtr, sse = jacobian_products(net, X, T, S, backend)
        if bayesian:
            alpha, beta = scalars["alpha"], scalars["beta"]
            H, g, D = beta * JtJ, beta * Jtr + alpha * w, np.full(w.size, alpha)
            objective = lambda e_d, v: beta * e_d + alpha * dot(v, v)       # noqa: E731
        else:
            D = _penalised(net, l2, total)
            H, g = JtJ, Jtr + D * w
            objective = lambda e_d, v: e_d + dot(v, D * v)                 # noqa: E731
        before = objective(sse, w)
        mu, kept, e_d = scalars["mu"], None, None
        while mu <= optimizer.mu_max:
            dx = _damped_solve(H, D + mu, g)
            if dx is None:                          # not positive definite at this mu: damp more
                mu *= optimizer.mu_inc
                continue
            net.set_parameter_vector(w + dx)
            e_d = squared_errors(net, X, T, S, backend)
            if objective(e_d, w + dx) < before:     # (NaN is never lower: the step is refused)
                kept = w + dx
                mu = max(mu * optimizer.mu_dec, MU_FLOOR)
                break
            mu *= optimizer.mu_inc
        if kept is None:
            net.set_parameter_vector(w)             # no step lowered F: the weights stay
        scalars["mu"] = mu
        if bayesian and kept is not None:
            _reestimate(scalars, JtJ, kept, e_d, total * T.shape[1])   # N: errors (weighted: the total's)
    optimizer.t += 1
    return sse / 2.0


def _damped_solve(H, diagonal, g):
    """-(H + diag(diagonal))^-1 g by Cholesky (LAPACK's potrf and potrs, called directly:
    scipy's cho_factor and cho_solve check and copy around them, which is most of a small
    network's solve), or None where that matrix is not positive definite."""
    A = H.copy(order="F")
    A.flat[::A.shape[0] + 1] += diagonal
    factor, info = _potrf(A, lower=0, clean=0, overwrite_a=1)
    if info != 0:
        return None
    dx, info = _potrs(factor, g, lower=0)
    return -dx if info == 0 else None


_potrf, _potrs, _trtri = linalg.lapack.get_lapack_funcs(("potrf", "potrs", "trtri"), dtype=np.float64)


def dot(a, b):
    """a . b, in float64, by SciPy's BLAS (see the module's Threads): for every dot product
    between the kernels' products (methods here, the estimators' lbfgs)."""
    return float(linalg.blas.ddot(np.asarray(a, np.float64), np.asarray(b, np.float64)))


def _inverse_trace(A, alpha):
    """tr((A + alpha I)^-1) for the symmetric positive semidefinite A (overwritten) and
    alpha > 0. With A + alpha I = U^T U (Cholesky), its inverse is U^-1 U^-T, whose trace
    is the sum of U^-1's squared entries: one triangular inverse (P^3 / 3 multiply-adds)
    where solving for the P columns of the identity took six times as many (Bayesian
    regularisation's re-estimate at P = 1,321 on the 2-core Intel Xeon: 154 ms on one
    BLAS thread, now 59 ms; at P = 2,201, 624 and 238 ms)."""
    if not A.flags.f_contiguous:
        A = A.T                                     # (the same matrix, in the order LAPACK takes)
    A.flat[::A.shape[0] + 1] += alpha
    U, info = _potrf(A, lower=0, clean=1, overwrite_a=1)   # (clean: U's lower triangle 0)
    if info == 0:
        U, info = _trtri(U, lower=0, overwrite_c=1)
    trace = float(np.sum(U * U)) if info == 0 else math.nan
    if not math.isfinite(trace):                    # (OpenBLAS's potrf passes NaN through)
        raise linalg.LinAlgError("Bayesian regularisation: beta J^T J + alpha I is not positive definite "
                                 "(alpha %g; it has NaN or inf, or the rounding broke it)" % alpha)
    return trace


def jacobian_products(net, X, T, S, backend):
    """(J^T S J, J^T S r, r^T S r) in float64 for the residuals r = o - t of the network
    net on the checked (X, T), S the sample weights (None: ones), accumulated over blocks
    of samples (net.jacobian_blocks): memory O(P^2), never O(m P)."""
    P = net.n_trainable
    JtJ, Jtr, sse = np.zeros((P, P), order="F"), np.zeros(P), 0.0
    if is_sparse(X):
        X = X.toarray()
    r0 = 0
    for J, O in net.jacobian_blocks(X, backend):
        B = O.shape[0]
        J = J.astype(np.float64, copy=False)
        r = (O.astype(np.float64) - T[r0:r0 + B]).reshape(-1)
        if S is not None:                                # J^T S J = (S^1/2 J)^T (S^1/2 J), ...
            root = np.sqrt(np.repeat(S[r0:r0 + B].astype(np.float64), net.sizes[-1]))
            J, r = J * root[:, None], r * root
        # J^T J's upper triangle by BLAS's syrk, half a general product's work (J.T is
        # the Fortran-ordered matrix it takes, no copy); J^T r and r^T r by the same BLAS
        # (SciPy's, which Numba's kernels call too): NumPy's @ calls NumPy's own copy of
        # OpenBLAS, whose idle threads then spin on the CPUs the other copy's threads need
        # (the products of 10,000 rows at P = 1,321 on two threads took 347 ms, now 184-198)
        JtJ = linalg.blas.dsyrk(1.0, J.T, beta=1.0, c=JtJ, trans=0, lower=0, overwrite_c=True)
        Jtr = linalg.blas.dgemv(1.0, J.T, r, beta=1.0, y=Jtr, overwrite_y=True)
        sse += float(linalg.blas.ddot(r, r))
        r0 += B
    full = JtJ + JtJ.T                                   # (syrk left the lower triangle at 0)
    full.flat[::P + 1] = JtJ.flat[::P + 1]
    return full, Jtr, sse


def bayesian_regularisation(net, X, T, S, optimizer, l2, backend):
    """One epoch of Bayesian regularisation (MacKay, 1992; Foresee and Hagan, 1997;
    MATLAB's trainbr): a Levenberg-Marquardt step on F = beta E_D + alpha E_W (E_W the
    sum of every squared parameter, biases included), then gamma = P - alpha tr((beta J^T J
    + alpha I)^-1) (that is P - 2 alpha tr(H^-1), H = 2 beta J^T J + 2 alpha I),
    alpha = gamma / (2 E_W) and beta = (N - gamma) / (2 E_D), N the number of errors."""
    return levenberg_marquardt(net, X, T, S, optimizer, l2, backend, bayesian=True)


def _reestimate(scalars, JtJ, w, e_d, n_errors):
    alpha, beta = scalars["alpha"], scalars["beta"]
    P = w.size
    if alpha > 0:
        gamma = P - alpha * _inverse_trace(beta * JtJ, alpha)
    else:
        gamma = float(P)                            # (alpha 0: every parameter counts)
    e_w = dot(w, w)
    scalars["gamma"] = gamma
    scalars["alpha"] = gamma / (2.0 * e_w) if e_w > 0 else 1.0
    scalars["beta"] = max(n_errors - gamma, 1.0) / (2.0 * e_d) if e_d > 0 else beta


def squared_errors(net, X, T, S, backend):
    """E_D: sum_i s_i ||o_i - t_i||^2 at the network's weights."""
    R = net.outputs(X, backend).astype(np.float64) - T
    per_sample = np.sum(R * R, axis=1)
    return float(per_sample.sum()) if S is None else dot(per_sample, S)


def fits_in_memory(n_parameters, dtype_size=8, copies=3):
    """Raise ValueError, naming the size, unless `copies` P x P float64 matrices fit in
    the memory the system has available (MemAvailable, else the physical memory)."""
    need = copies * n_parameters ** 2 * dtype_size
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    if available is None and hasattr(os, "sysconf"):
        available = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if available is not None and need > available:
        raise ValueError("this network has %d parameters: Levenberg-Marquardt's %d x %d system needs about "
                         "%.3g GiB, more than the %.3g GiB of memory available; use 'scg' or 'rprop', which need "
                         "O(P)" % (n_parameters, n_parameters, n_parameters, need / 2 ** 30, available / 2 ** 30))


# ---------------------------------------------------------------- scaled conjugate gradient

def scaled_conjugate_gradient(net, X, T, S, optimizer, l2, backend):
    """_scaled_conjugate_gradient on BLAS's threads: for products of at least
    threads.LOOK_FROM rows x weights, as many as the load leaves (LoadChooser.products,
    as predicting and the estimators' lbfgs take), below it one."""
    step = X.shape[0] * net.n_parameters[0]
    with blas_threads(batch_chooser().products(step) if step >= LOOK_FROM else 1):
        return _scaled_conjugate_gradient(net, X, T, S, optimizer, l2, backend)


def _scaled_conjugate_gradient(net, X, T, S, optimizer, l2, backend):
    """One iteration of Moller's (1993) scaled conjugate gradient on the mean loss plus
    (l2 / 2) ||W||^2, with his steps: the curvature along the direction p from two
    gradients sigma / |p| apart (after a kept step), scaled by lambda (made positive
    where it is not), the step alpha = p.r / delta, the comparison Delta between the
    quadratic model and the loss at the step; kept when Delta >= 0 (the direction then
    conjugate, by Polak-Ribiere's beta, or r itself every P iterations), lambda down by 4
    when Delta >= 0.75 and up when Delta < 0.25. r is the descent (minus the gradient).
    Returns the epoch's summed loss before the step."""
    s = optimizer.scalars
    p, r = _flat_state(net, optimizer, 0), _flat_state(net, optimizer, 1)
    total = X.shape[0] if S is None else float(S.sum())
    w = net.parameter_vector()
    E = _objective(net, X, T, S, l2, backend, w)
    if optimizer.t == 0:
        r[...] = -_gradient(net, X, T, S, l2, backend, w, s)
        p[...] = r
    if dot(p, r) <= 0:                              # not a descent direction: restart from r
        p[...] = r
        s["success"] = 1.0
    norm2 = dot(p, p)
    if norm2 == 0.0:                                # a zero gradient: nothing to do
        optimizer.t += 1
        _store(net, optimizer, p, r)
        return E * total
    if s["success"]:
        sigma = optimizer.sigma / math.sqrt(norm2)
        curvature = (_gradient(net, X, T, S, l2, backend, w + sigma * p, s) + r) / sigma   # E''(w) p
        net.set_parameter_vector(w)
        s["delta"] = dot(p, curvature)
    lam, lam_bar = s["lambda"], s["lambda_bar"]
    delta = s["delta"] + (lam - lam_bar) * norm2    # scaled: as if E'' + lambda I
    if delta <= 0:                                  # make it positive definite
        lam_bar = 2.0 * (lam - delta / norm2)
        delta = -delta + lam * norm2
        lam = lam_bar
    mu = dot(p, r)
    alpha = mu / delta
    after = _objective(net, X, T, S, l2, backend, w + alpha * p)
    comparison = 2.0 * delta * (E - after) / mu ** 2
    if comparison >= 0:                             # kept
        net.set_parameter_vector(w + alpha * p)
        r_old = r.copy()
        r[...] = -_gradient(net, X, T, S, l2, backend, w + alpha * p, s)
        lam_bar, s["success"] = 0.0, 1.0
        if (optimizer.t + 1) % w.size == 0:
            p[...] = r                              # restart
        else:
            p[...] = r + (dot(r, r) - dot(r, r_old)) / mu * p
        if comparison >= 0.75:
            lam *= 0.25
    else:
        net.set_parameter_vector(w)
        lam_bar, s["success"] = lam, 0.0
    if comparison < 0.25:
        lam += delta * (1.0 - comparison) / norm2
    s["lambda"], s["lambda_bar"], s["delta"] = lam, lam_bar, delta
    optimizer.t += 1
    _store(net, optimizer, p, r)
    if not (np.isfinite(p).all() and np.isfinite(r).all() and np.isfinite(lam)):
        return math.nan                             # an overflowing gradient: the guard undoes the epoch
    return E * total


def _flat_state(net, optimizer, k):
    """The k-th state array over all parameters (weights, then biases if any), a copy."""
    parts = [optimizer.state["w"][k]] + ([optimizer.state["b"][k]] if net.bias else [])
    return np.concatenate(parts).astype(np.float64)


def _store(net, optimizer, p, r):
    n_w = net.n_parameters[0]
    for k, v in enumerate((p, r)):
        optimizer.state["w"][k][...] = v[:n_w]
        if net.bias:
            optimizer.state["b"][k][...] = v[n_w:]


def _objective(net, X, T, S, l2, backend, w):
    """The mean loss (weighted) plus (l2 / 2) ||W||^2 at the parameters w."""
    net.set_parameter_vector(w)
    W = w[:net.n_parameters[0]]
    return float(mean_loss(net.loss_name, net.outputs(X, backend), T, S)) + 0.5 * l2 * dot(W, W)


def _gradient(net, X, T, S, l2, backend, w, scalars):
    """The gradient of _objective at w, as one flat float64 vector (counted)."""
    net.set_parameter_vector(w)
    g = net.loss_gradient(X, T, S, backend)
    g[:net.n_parameters[0]] += l2 * w[:net.n_parameters[0]]
    scalars["gradients"] += 1
    return g
