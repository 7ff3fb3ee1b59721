"""Scale-out on Dask (``pip install 'fastbp[dask]'``): a cluster for sweeps, and
data-parallel training of one network.

Every entry point takes ``client``: None starts a ``distributed.LocalCluster`` on this
machine (one worker process per available core, one thread each: see local_cluster), a
string is a scheduler's address ("tcp://host:8786"), and a ``distributed.Client`` is used
as it is. fastbp brings no scheduler, transport or parameter server of its own.

Data-parallel training (``train``) is local SGD with parameter averaging (Stich 2018,
"Local SGD converges fast and communicates little"): the rows are split into one shard per
worker and stay there; each round, every worker runs the compiled epoch loop
(Network.train_epoch) over its shard for ``sync_every`` epochs, from the same parameters
and optimizer state, and the client averages what comes back, weighted by the shards'
sizes. A round sends the parameters and the optimizer's state to each worker and back,
nothing else. Rounds are pure functions of their inputs, so a worker lost mid-round costs
that round only: its shard is sent again (or recomputed, for a Dask array) and the round is
run again, with the same result.


Scale-out on Dask
=================

`pip install 'fastbp[dask]'` adds Dask (`distributed`) and dask-ml, pinned: dask-ml
2025.1.0's `HyperbandSearchCV` fails ("asynchronous Client in a synchronous context") with
dask 2025.3.0 and later, so the extra takes dask 2025.2.0. Everything is in
`fastbp/distributed.py`; fastbp brings no scheduler or transport of its own. Every entry
point takes `client`: `None` starts a `LocalCluster` on 127.0.0.1 (one worker process per
available core, one thread each, spawned rather than forked), a string is a scheduler's
address, a `distributed.Client` is used as it is. `fastbp.distributed.local_cluster(n)`
makes the same cluster for your own use.

- **No oversubscription.** Workers run with `OMP_NUM_THREADS`, `OPENBLAS_NUM_THREADS`,
  `MKL_NUM_THREADS` and `FASTBP_THREADS` set to 1 (`distributed.WORKER_ENV`), so
  workers x threads <= cores. `NUMBA_NUM_THREADS` is left alone: a spawned worker imports
  your script, and so Numba, before Dask sets its environment, and a value changed after
  that stops Numba's first compile.
- **No recompiling.** Each worker loads the kernels from Numba's on-disk cache: the
  `__pycache__` beside fastbp's sources (which must be writable, as in an editable or user
  install), or `$NUMBA_CACHE_DIR` when set. A `LocalCluster`'s workers share this
  process's cache, so they load what it compiled (tested: a worker compiles none of
  fastbp's functions). On a real cluster set `NUMBA_CACHE_DIR` to a directory each
  worker can write, and call `fastbp.distributed.warm_workers(client, net)` before
  training: every worker compiles or loads the kernels for `net`'s dtype (per-sample and
  batch 200 by default, `batch_sizes=`), the first on each machine compiles and later
  ones load; it returns each worker's seconds, cache directory and count of compiled
  functions.
- **No fork abort.** A process forked after its parent ran GNU OpenMP threads (Numba's
  `omp` layer: batched training, or `FASTBP_THREADS` > 1) is killed when it enters a parallel
  region; fastbp's kernels keep to one thread in such a child (tested).

**Sweeps.** The estimators pickle and fit on workers:

```python
import joblib
from distributed import Client
from sklearn.model_selection import GridSearchCV

import fastbp
from fastbp.datasets import load_fashion_mnist
from fastbp.distributed import local_cluster

if __name__ == "__main__":        # a LocalCluster's workers re-import a script's __main__
    X, y, X_test, y_test = load_fashion_mnist()
    with local_cluster() as cluster, Client(cluster):        # or Client("tcp://host:8786")
        search = GridSearchCV(fastbp.MLPClassifier(max_iter=40), {"alpha": [1e-4, 1e-2]}, cv=3)
        with joblib.parallel_config(backend="dask"):
            search.fit(X[:6000], y[:6000])                   # (a subset: minutes, not an hour)
    print(search.best_params_, search.score(X_test, y_test))
```

As a script, the guard is required: Dask's `LocalCluster` starts its workers by spawning
fresh interpreters, which import the script again, and without the guard each worker
would start a cluster of its own (Python's multiprocessing then stops it with its
"bootstrapping phase" error).

dask-ml's `Incremental` and `HyperbandSearchCV` drive `partial_fit` block by block on the
workers (tested: `Incremental` gives exactly the weights of the same `partial_fit` calls
made locally).

**Data-parallel training of one network.**
`history = fastbp.distributed.train(net, X, Y, client=None, epochs=1, sync_every=1,
**settings)` trains `net` in place. X and Y are NumPy arrays (split into one shard of rows
per worker, sent once) or Dask arrays chunked by rows (their chunks grouped into shards on
the workers; nothing is gathered to the client). The settings are `Network.train`'s.

```python
import fastbp, fastbp.distributed
from fastbp.datasets import load_fashion_mnist

if __name__ == "__main__":
    X, y, X_test, y_test = load_fashion_mnist()
    X_val, y_val = X[54000:], y[54000:]                       # the last 6,000 images for validation
    net = fastbp.Network([784, 256, 10], activation="relu", output="softmax", loss="cross_entropy",
                         init="he", seed=0, dtype="float32")
    history = fastbp.distributed.train(net, X[:54000], y[:54000], client=None, epochs=20, sync_every=1,
                                       batch_size=200, optimizer="adam", lr=0.001,
                                       validation=(X_val, y_val), n_iter_no_change=5, checkpoint="run.npz")
```

- **The choice: local SGD with parameter averaging** (Stich 2018). Each round every worker
  trains `sync_every` epochs of its shard with the compiled epoch loop, from the same
  parameters and optimizer state; the client averages parameters and optimizer state
  (weighted by shard size). A round moves the parameters and the optimizer's state to each
  worker and back, once per `sync_every` epochs. Synchronous gradient averaging would move
  a gradient per *step* (300 steps an epoch at batch 200 on Fashion-MNIST): at the round
  costs measured (asv_benchmarks/README.md) it would spend far longer communicating than computing.
- **With one worker it is `net.train`, bit for bit** (weights, history, the random
  generator; tested for per-sample SGD, Adam with a schedule, momentum with clipping and
  early stopping). With more, each worker's sample order comes from seeds drawn from the
  network's generator, so a run is deterministic.
- Validation (`validation=` or `validation_fraction` with NumPy inputs), early stopping,
  `reduce_on_plateau`, `target_loss`, checkpoints and `fastbp.distributed.resume(path, X,
  Y, client=...)` work as in `Network.train`, at the end of each round, so validation and
  early stopping need `sync_every=1`. Per-epoch diagnostics are not computed (the rows are
  on the workers). The history adds `round_seconds`, `worker_seconds` (the slowest
  worker's training), `workers` and `bytes_per_round`.
- **Faults.** Rounds are pure functions of their inputs. A worker killed mid-round costs
  that round: its shard is sent again to a live worker (or recomputed from a Dask array's
  graph) and the round run again, with the same result (tested by SIGKILL of a worker
  process: the weights equal an undisturbed run's). Checkpoints are written atomically by
  the client. Shards whose columns, labels or values are wrong are errors naming the shard
  and its rows (`shard 1 (rows 300..599): X contains NaN or inf (first in row 150)`).
- **Command line.** `fastbp train ... --workers N` (a LocalCluster) or `--scheduler
  tcp://host:8786`, with `--sync-every`; the progress bar advances per round. Ctrl-C undoes
  the round in hand, as `Network.train` undoes the epoch in hand, and `--checkpoint` saves
  the last finished one.
- **A real cluster**, with Dask's own commands:

  ```bash
  dask scheduler                                            # on one machine: tcp://host:8786
  OMP_NUM_THREADS=1 FASTBP_THREADS=1 NUMBA_CACHE_DIR=/tmp/fastbp-numba \\
      dask worker tcp://host:8786 --nworkers auto --nthreads 1  # on each machine
  fastbp train --hidden 256 --activation relu --output softmax --loss cross_entropy --init he \\
      --optimizer adam --batch-size 200 --epochs 20 --scheduler tcp://host:8786
  ```
"""
import contextlib
import hashlib
import time

import numpy as np

from . import training
from .checks import is_sparse, keywords
from .io import check_writable, hash_array
from .network import Network, load_checkpoint
from .optimizers import RULES, Optimizer, make_optimizer, make_schedule
from .run import RUN_SETTINGS, RunConfig, RunState
from .threads import available_cpus

# Each worker process runs one thread: OpenMP's (BLAS) and fastbp's kernels alike
# (FASTBP_THREADS=1: no parallel region at all), so that workers x threads never exceeds
# the cores. NUMBA_NUM_THREADS is left as it is: a spawned worker imports the caller's
# script, and so Numba, before Dask sets `env`, and a value that changes after that import
# stops Numba's first compile ("Cannot set NUMBA_NUM_THREADS ... once the threads have
# been launched"). Left alone, it also cuts each batch as the caller's process does.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "FASTBP_THREADS": "1"}


def _require():
    try:
        import distributed
    except ImportError:
        raise ImportError("fastbp.distributed needs Dask: pip install 'fastbp[dask]'") from None
    return distributed


def local_cluster(n_workers=None, **kwargs):
    """A distributed.LocalCluster on 127.0.0.1 set up for fastbp: n_workers processes (by
    default one per available core, threads.available_cpus), one thread each (WORKER_ENV),
    no dashboard. Worker processes are spawned, not forked. Each worker loads the compiled
    kernels from Numba's on-disk cache (next to fastbp's sources, or in $NUMBA_CACHE_DIR
    when set), so they compile once, not per task."""
    distributed = _require()
    options = dict(n_workers=n_workers or available_cpus(), threads_per_worker=1, processes=True,
                   host="127.0.0.1", dashboard_address=":0", env=dict(WORKER_ENV))
    options.update(kwargs)
    return distributed.LocalCluster(**options)


def _warm(net, batch_sizes):
    """On a worker: compile, or load from its cache, what training net needs."""
    import time

    from .kernels import cache_dir, compiles, sgd_epoch
    start = time.perf_counter()
    with compiles() as compiled:
        for batch_size in batch_sizes:
            net.warm_up(batch_size)
    return {"seconds": time.perf_counter() - start, "cache_dir": cache_dir(sgd_epoch),
            "compiled": compiled()}


def warm_workers(client=None, net=None, batch_sizes=(1, 200)):
    """Have every worker of client (a Client or a scheduler address) compile, or load
    from its Numba cache, the kernels that training net (by default a small float64
    network; pass one of the dtype you train in) with each batch size and predicting
    use, before the first round needs them. Returns {worker address: {seconds, cache_dir,
    compiled}}, compiled the number of fastbp's functions Numba compiled there (0: all
    loaded). A LocalCluster's workers share this process's cache and just load; on a
    remote cluster each machine compiles once into its own (set NUMBA_CACHE_DIR to a
    directory its workers can write), and every later worker process there loads."""
    net = Network([2, 2, 2], seed=0) if net is None else net
    with connected(client) as c:
        return c.run(_warm, net, tuple(batch_sizes))


@contextlib.contextmanager
def connected(client=None, n_workers=None):
    """A Client for client (None: a local_cluster, closed afterwards; an address: a Client
    to it, closed afterwards; a Client: itself, left open)."""
    distributed = _require()
    if isinstance(client, distributed.Client):
        yield client
        return
    if isinstance(client, str):
        with distributed.Client(client) as c:
            yield c
        return
    if client is not None:
        raise TypeError("client must be None (a LocalCluster), a scheduler address or a "
                        "distributed.Client, got %r" % (client,))
    with local_cluster(n_workers) as cluster, distributed.Client(cluster) as c:
        yield c


# ---------------------------------------------------------------- shards

def _check_shard(net, X, Y, index, first):
    """(X, T) of one shard, checked as Network.train checks its data; errors name the shard."""
    try:
        X = net.check_inputs(X)
        T = net.check_targets(Y, X.shape[0])
    except (ValueError, TypeError) as error:
        rows = X.shape[0] if getattr(X, "shape", ()) else len(X)     # (len() of a sparse X raises)
        raise type(error)("shard %d (rows %d..%d): %s" % (index, first, first + rows - 1, error)) from None
    # Dask hands over read-only arrays, for which Numba compiles the kernels apart from the
    # writable specialisation that net.train uses; a kernel compiled in a process can round
    # differently from one loaded from the cache (network.py's docstring, "Reproducibility"),
    # so the shard is made writable and the worker runs the kernels net.train runs
    return [a if a.flags.writeable else a.copy() for a in (X, T)]


def _shard_summary(shard):
    X, T = shard
    h = hashlib.sha256()
    hash_array(h, X)
    hash_array(h, T)
    return X.shape[0], h.hexdigest()


class Shards:
    """The training rows, split into one shard per worker and held there (futures), with
    what it takes to send a lost one again."""

    def __init__(self, client, net, X, Y):
        self.client, self.net = client, net
        workers = sorted(client.scheduler_info()["workers"])
        if not workers:
            raise RuntimeError("the Dask cluster has no workers")
        self.workers = workers
        if _is_dask(X) or _is_dask(Y):
            self.local = None
            self.futures = self._from_dask(net, X, Y)
        else:
            X, Y = np.asarray(X), np.asarray(Y)
            if len(X) != len(Y):
                raise ValueError("X has %d rows but Y has %d" % (len(X), len(Y)))
            self.full = X, Y
            bounds = np.linspace(0, len(X), min(len(workers), len(X)) + 1).astype(int)
            self.local = [(X[a:b], Y[a:b], a) for a, b in zip(bounds, bounds[1:])]
            self.futures = [self._send(s) for s in range(len(self.local))]
        summaries = client.gather([client.submit(_shard_summary, f, pure=False) for f in self.futures])
        self.sizes = np.array([n for n, _ in summaries])
        self.digests = [d for _, d in summaries]

    def _send(self, s, worker=None):
        X, Y, first = self.local[s]
        target = worker or self.workers[s % len(self.workers)]
        data = self.client.scatter([X, Y], workers=[target], hash=False)
        return self.client.submit(_check_shard, self.net, data[0], data[1], s, first,
                                  workers=[target], pure=False)

    def _from_dask(self, net, X, Y):
        import dask
        if not (_is_dask(X) and _is_dask(Y)):
            raise TypeError("give X and Y both as NumPy arrays or both as Dask arrays")
        if X.ndim != 2 or X.numblocks[1] != 1:
            raise ValueError("a Dask X must be 2-D and chunked by rows only (one chunk across its columns)")
        if X.chunks[0] != Y.chunks[0]:
            raise ValueError("X and Y must be chunked alike along the rows: %s and %s"
                             % (X.chunks[0], Y.chunks[0]))
        xs, ys = X.to_delayed().ravel(), Y.to_delayed().ravel()
        groups = np.array_split(np.arange(len(xs)), min(len(self.workers), len(xs)))
        starts = np.concatenate([[0], np.cumsum(X.chunks[0])])
        futures = []
        for s, group in enumerate(groups):
            part_x = dask.delayed(np.concatenate)([xs[i] for i in group])
            part_y = dask.delayed(np.concatenate)([ys[i] for i in group])
            shard = dask.delayed(_check_shard)(net, part_x, part_y, s, int(starts[group[0]]))
            futures.append(self.client.compute(shard, workers=[self.workers[s % len(self.workers)]]))
        return futures

    def resend(self, s):
        """Shard s on a live worker again, after its worker was lost."""
        if self.local is None:
            return self.futures[s]               # Dask recomputes it from the array's graph
        live = sorted(self.client.scheduler_info()["workers"])
        self.workers = live or self.workers
        self.futures[s] = self._send(s, live[s % len(live)] if live else None)
        return self.futures[s]

    def fingerprint(self):
        """The training data's SHA-256: for NumPy inputs net.train's fingerprint of (X, T)
        (so a run resumes with any number of workers, or locally); for Dask arrays one over
        the shards' own (resuming needs the same sharding)."""
        if self.local is not None:
            X = self.net.check_inputs(self.full[0])
            return training.fingerprint(X, self.net.check_targets(self.full[1], X.shape[0]))
        h = hashlib.sha256()
        for d in self.digests:
            h.update(d.encode())
        return h.hexdigest()


def _is_dask(a):
    return type(a).__module__.startswith("dask.")


# ---------------------------------------------------------------- one round

def _round(net, optimizer, shard, lrs, seed, config):
    """sync_every epochs of one worker on its shard (X, T): from the parameters and
    optimizer state given (copies, as Dask sends them), with the round's sample orders
    drawn from seed (None: the network's own generator, with one shard). Returns the new
    parameters, optimizer state and step count, the generator's state, each epoch's summed
    loss, and the seconds it trained."""
    X, T = (a if a.flags.writeable else a.copy() for a in shard)   # (see _check_shard)
    rng = net.rng if seed is None else np.random.default_rng(seed)
    m = X.shape[0]
    batch_size = m if config.batch_size is None else min(config.batch_size, m)
    plan = training.EpochPlan(net, m, batch_size, optimizer, config)      # as net.train cuts epochs
    totals, start = [], time.perf_counter()
    for lr in lrs:
        order = rng.permutation(m) if config.shuffle else np.arange(m)
        totals.append(plan.run(X, T, None, order, lr))
    return (net.snapshot(), optimizer.state, optimizer.t, net.rng.bit_generator.state, totals,
            time.perf_counter() - start)


def _average(results, sizes):
    """The shards' parameters and optimizer state, averaged with weights sizes / sum."""
    weights = sizes / sizes.sum()
    w = sum(weight * r[0][0] for weight, r in zip(weights, results))
    b = sum(weight * r[0][1] for weight, r in zip(weights, results))
    state = {p: sum(weight * r[1][p] for weight, r in zip(weights, results)) for p in ("w", "b")}
    return (w, b), state, max(r[2] for r in results)


# ---------------------------------------------------------------- the run

def train(net, X, Y, client=None, epochs=1, sync_every=1, validation=None, progress=None, callback=None,
          **train_options):
    """Train net in place on (X, Y), data-parallel over the workers of a Dask cluster:
    local SGD with parameter averaging every sync_every epochs (see the module's doc).
    Returns the history, as Network.train does.

    X and Y: NumPy arrays (split into one shard per worker and sent there once) or Dask
    arrays chunked by rows (their chunks grouped into shards on the workers; nothing is
    gathered to the client). train_options are Network.train's settings (a RunConfig):
    lr, batch_size, shuffle, l2, l1, max_norm, optimizer, schedule, clip, validation_fraction (NumPy
    inputs), n_iter_no_change, tol, target_loss, checkpoint, checkpoint_every, backend.
    Validation, early stopping and reduce_on_plateau act at the end of each round, so they
    need sync_every=1; diagnostics are not computed (the rows are on the workers).
    With one worker the result is net.train's, bit for bit. progress, if given, is called
    as progress(n_samples, mean_loss) after each round; callback(net, history) after it.
    Sample weights and sparse X are not supported yet (clear errors)."""
    if train_options.get("sample_weight") is not None:
        raise TypeError("fastbp.distributed.train takes no sample_weight (not supported yet); "
                        "fastbp.Network.train and the estimators take it")
    train_options.pop("sample_weight", None)
    for name in ("dropout", "input_noise"):
        if train_options.get(name):
            raise ValueError("fastbp.distributed.train: %s is not supported yet (each worker would draw from "
                             "its own copy of the generator); fastbp.Network.train and the estimators take it"
                             % name)
    keywords("fastbp.distributed.train()", train_options,
             [k for k in RUN_SETTINGS if k not in ("epochs", "diagnostics")],
             ("client", "epochs", "sync_every", "validation", "progress", "callback"))
    config = RunConfig(epochs=epochs, **dict(train_options, diagnostics=False))
    return train_config(net, X, Y, config, client, sync_every, validation, progress, callback)


def train_config(net, X, Y, config, client=None, sync_every=1, validation=None, progress=None, callback=None):
    """train with the settings as a RunConfig (the command line's way in)."""
    if isinstance(sync_every, bool) or not isinstance(sync_every, int) or sync_every < 1:
        raise ValueError("sync_every must be an integer >= 1 (epochs per round), got %r" % (sync_every,))
    training.check_progress(progress, callback)
    if is_sparse(X):
        raise TypeError("fastbp.distributed trains on dense X (NumPy or Dask arrays); sparse X is "
                        "not supported yet (fastbp.Network.train and the estimators take it)")
    config = config.replace(diagnostics=False,           # (the rows are on the workers)
                            backend=config.backend or net.backend)
    rule = config.optimizer.rule if isinstance(config.optimizer, Optimizer) else config.optimizer
    if RULES[rule].full_batch:
        raise ValueError("fastbp.distributed.train: optimizer %r steps on the whole training set, which no "
                         "worker holds (an average of the shards' sign steps is not %s); fastbp.Network.train "
                         "takes it" % (rule, rule))
    if sync_every > 1 and (validation is not None or config.validation_fraction is not None
                           or config.n_iter_no_change is not None):
        raise ValueError("validation and n_iter_no_change act after each round, so they need "
                         "sync_every=1 (got %d)" % sync_every)
    X_val = T_val = val_rows = None
    if validation is not None:
        X_val, T_val = _validation_pair(net, validation)
    elif config.validation_fraction is not None:
        if _is_dask(X) or _is_dask(Y):
            raise ValueError("validation_fraction needs NumPy X and Y; give validation=(X_val, Y_val)")
        X_all, T_all = net.check_inputs(X), net.check_targets(Y, len(X))
        labels = training.labels_of(T_all) if training.is_classifier(net) else None
        val_rows = training.split_validation(len(X_all), config.validation_fraction, net.rng, labels)[1]
        X, Y, X_val, T_val = training.held_out(X_all, T_all, val_rows)
    if config.checkpoint:
        check_writable(config.checkpoint, "checkpoint")
    optimizer = make_optimizer(config.optimizer, config.lr).bind(net)
    state = RunState(optimizer, make_schedule(config.schedule), explicit_validation=validation is not None,
                     val_rows=val_rows)
    with connected(client) as c:
        shards = Shards(c, net, X, Y)
        if config.checkpoint:
            state.data_sha256 = shards.fingerprint()
            state.validation_sha256 = training.fingerprint(X_val, T_val) if X_val is not None else None
        return _run(c, net, shards, config, state, sync_every, X_val, T_val, progress, callback)


def _validation_pair(net, validation):
    """(X_val, T_val): distributed runs take no sample weights (not yet: see estimators.py's docstring)."""
    X_val, T_val, S_val = training.validation_set(net, validation)
    if S_val is not None:
        raise ValueError("fastbp.distributed trains without sample weights (not yet supported): "
                         "give validation=(X_val, Y_val)")
    return X_val, T_val


def resume(path, X, Y, client=None, validation=None, epochs=None, sync_every=1, progress=None, callback=None):
    """Continue a run that fastbp.distributed.train checkpointed on the cluster, on the same
    data (and validation set); returns (net, history)."""
    net, config, state = load_checkpoint(path)
    config = config.replace(epochs=config.epochs if epochs is None else epochs)
    check_writable(config.checkpoint, "checkpoint")
    if state.stopped == "epochs":
        state.stopped = None
    X_val = T_val = None
    if state.explicit_validation:
        if validation is None:
            raise training.ResumeError("%s was trained with an explicit validation set; pass it again" % path)
        X_val, T_val = _validation_pair(net, validation)
    elif state.val_rows is not None:
        X_all, T_all = net.check_inputs(X), net.check_targets(Y, len(X))
        training.check_validation_rows(path, state.val_rows, len(X_all))
        X, Y, X_val, T_val = training.held_out(X_all, T_all, state.val_rows)
    with connected(client) as c:
        shards = Shards(c, net, X, Y)
        if shards.fingerprint() != state.data_sha256:
            raise training.ResumeError("%s was trained on other data (or other shards) than the X, Y "
                                       "given; resume needs the same training set" % path)
        return net, _run(c, net, shards, config, state, sync_every, X_val, T_val, progress, callback)


def _run(client, net, shards, config, state, sync_every, X_val, T_val, progress, callback):
    """The run: training.Loop, with a round over the shards as its step."""
    validation = (X_val, T_val, None) if X_val is not None else None
    return training.Loop(net, config, state, Rounds(client, net, shards, config, state, sync_every),
                         validation).run(progress, callback)


class Rounds:
    """A Dask run's step (training.Loop's): one round of sync_every epochs on every shard
    at once, from the same parameters and optimizer state, then their average, weighted by
    the shards' sizes. With one shard, the round trains with the network's own generator
    (and so as net.train does); with more, each shard's sample orders come from a seed
    drawn from it."""

    def __init__(self, client, net, shards, config, state, sync_every):
        self.client, self.net, self.shards, self.config, self.state = client, net, shards, config, state
        self.sync_every, self.progress = sync_every, None
        self.m = int(shards.sizes.sum())
        state.history.setdefault("round_seconds", [])
        state.history.setdefault("worker_seconds", [])

    def begin(self, progress):
        self.progress = progress

    def epochs(self, left):
        return min(self.sync_every, left)

    def what(self, first, n):
        return "the round of epochs %d..%d" % (first + 1, first + n)

    def train(self, lrs):
        net, optimizer, shards, history = self.net, self.state.optimizer, self.shards, self.state.history
        one = len(shards.futures) == 1
        seeds = [None] if one else [int(s) for s in net.rng.integers(0, 2 ** 63, len(shards.futures))]
        start = time.perf_counter()
        results = _run_round(self.client, shards, net, optimizer, lrs, seeds, self.config)
        elapsed = time.perf_counter() - start
        params, opt_state, opt_t = _average(results, shards.sizes)
        net.restore(params)
        for p in ("w", "b"):
            optimizer.state[p][...] = opt_state[p]
        optimizer.t = opt_t
        if one:
            net.rng.bit_generator.state = results[0][3]
        n = len(lrs)
        losses = [sum(r[4][i] for r in results) / self.m for i in range(n)]
        history["round_seconds"].append(elapsed)
        history["worker_seconds"].append(max(r[5] for r in results))
        if self.progress is not None:
            self.progress(self.m * n, losses[-1])
        return losses, [elapsed / n] * n

    def finish(self, history):
        history["workers"] = len(self.shards.futures)
        history["bytes_per_round"] = 2 * len(self.shards.futures) * _state_bytes(self.net, self.state.optimizer)


def _state_bytes(net, optimizer):
    """What a round sends each way per worker: the parameters and the optimizer's state."""
    w, b = net.snapshot()
    return int(w.nbytes + b.nbytes + optimizer.state["w"].nbytes + optimizer.state["b"].nbytes)


def _lost(error):
    """Whether error says a worker (or data held there) was lost, not that the task failed."""
    import concurrent.futures

    import distributed
    lost = (distributed.KilledWorker, concurrent.futures.CancelledError, OSError)
    cancelled = getattr(distributed.client, "FutureCancelledError", ())
    return isinstance(error, lost) or (bool(cancelled) and isinstance(error, cancelled))


def _run_round(client, shards, net, optimizer, lrs, seeds, config, attempts=3):
    """Every shard's round; a shard whose worker is lost is sent again and its round run
    again (at most `attempts` times). The network and optimizer go with each task (not
    broadcast: a broadcast waits on a worker just lost), and each task works on its own
    copy of them."""
    futures = [client.submit(_round, net, optimizer, shard, lrs, seed, config, pure=False)
               for shard, seed in zip(shards.futures, seeds)]
    results = [None] * len(futures)
    for attempt in range(attempts + 1):
        failed = []
        for s, future in enumerate(futures):
            if results[s] is not None:
                continue
            try:
                results[s] = future.result()
            except Exception as error:
                if not _lost(error):
                    raise
                failed.append(s)
        if not failed:
            return results
        if attempt == attempts:
            raise RuntimeError("shards %s failed %d times: workers keep being lost" % (failed, attempts + 1))
        for s in failed:
            futures[s] = client.submit(_round, net, optimizer, shards.resend(s), lrs, seeds[s], config, pure=False)
    return results


__all__ = ["train", "resume", "local_cluster", "connected", "warm_workers"]
