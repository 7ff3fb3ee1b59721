"""How many threads the kernels use.

Per-sample SGD opens a parallel region for every block of 4 samples, thousands per
epoch, each ending in a barrier. On an idle 2-core machine two threads are about 1.3x as
fast as one; beside one other busy process the barrier waits, each time, for a thread
that the operating system has descheduled, and two threads were 4 to 6 times *slower*
than one. So the default is one thread (FASTBP_THREADS unset): it keeps its speed
beside other work (measured: 1.00x), and several training processes add up.

FASTBP_THREADS=N always uses N threads. FASTBP_THREADS=auto lets a ThreadChooser decide
slice by slice (512 samples, or 1% of the epoch with a progress bar), from how long the
slices took; one chooser per network shape and dtype in a process, so that what it
learnt carries over from one train() call to the next:

- it uses 1 thread or ``available_cpus()`` threads, nothing in between;
- it times both on its first slices and keeps the faster;
- it goes back to one thread as soon as two parallel slices in a row are slower than
  one thread was, or one is 1.5x slower (a competing process appeared);
- it tries the other choice again (3 slices, or 1 when that one is 1.5x slower) after 8
  slices, then 16, 32, up to 64 while it keeps losing.

'auto' gains the 1.3x on an idle machine, but its tries cost 10-50% beside a busy
process (CONTRIBUTING.md, "Threads"), which is why it is not the default.

The result does not depend on the thread count: the kernel splits rows between threads
in whole pairs, so each row's arithmetic is the same (tests check it bit for bit).

Batched epochs (mini-batch and full-batch, every rule: kernels.batch_epoch) split each
batch into ranges of rows and blocks of units fixed by the shapes (batch_chunks():
Numba's thread count, NUMBA_NUM_THREADS), and run them on 1 or more threads, with BLAS
on one thread (blas_on_one_thread). A parallel region there lasts a whole product,
hundreds of microseconds, so on an idle machine two threads pay; beside a busy process
their barriers wait, as per-sample SGD's do, and BLAS's own threads waited the same way
(an estimator's fit beside two busy processes took 25 times as long as with BLAS on one
thread: asv_benchmarks/README.md, "Figures behind the documented choices"). So a
LoadChooser picks the count before every slice of an epoch from what the process can
use: available_cpus(), less the CPUs that other processes kept busy since the last look
(/proc/stat, this process's own CPU time taken out; when the last look is over STALE
seconds old, the tasks of other processes running at that moment, the least of three
counts; and never more than are running at the moment). It tries nothing, so it costs
nothing beside a busy process. A long step (LONG_STEP: a batch of 12,600 rows of
784-100-10, the full batch of a small data set) takes every CPU the process may use,
busy or not: its parallel regions last tens of milliseconds, many of the operating
system's time slices, so a barrier's wait for a descheduled thread costs little of them,
and two threads hold two of the CPUs' shares where one holds one. Beside two busy
processes on the 2-core Intel Xeon two threads made such an epoch 1.29-1.35x as fast as
one (20,000-60,000 rows), beside one busy process 1.08-1.21x; with batches of 5,000 and
10,000 rows they were 0.78-0.87x beside one busy process, hence the bound.
Predicting runs its products on BLAS's own threads: blas_for_products holds them to the
CPUs the load leaves free, in the same way (LoadChooser.products). Levenberg-Marquardt's
and Bayesian regularisation's products and solves take threads() BLAS threads
(methods.BLAS_THREADS_FROM); scaled conjugate gradient, products() BLAS threads each
epoch, and the estimators' solver='lbfgs' from one call of its objective to the next
(blas_following_the_load).
FASTBP_THREADS=N fixes the count here too. One thread runs the kernel's one-thread build
(kernels.batch_epoch_serial); while the parallel build is not compiled, the run keeps to
one thread, and a child process compiles it once the run is long enough
(training.ParallelBuild).
"""
import contextlib
import os
import statistics
import time

import numba

FIRST_PROBE = 8        # slices before the losing choice is tried again; doubled each loss
LAST_PROBE = 64
PROBE = 3              # slices a try lasts
KEEP = 5               # a choice's estimate: the median of its last KEEP slices
MARGIN = 0.95          # a try wins when at least 5% faster
ABANDON = 1.5          # a try stops after one slice this much slower than the choice it tries to beat
MIN_TIMED = 64         # samples: shorter slices (tiny data, a warm-up) are not timed

_choosers = {}
# GNU OpenMP (Numba's 'omp' threading layer, which kernels.py prefers) cannot run a parallel
# region in a child forked after the parent ran one: the child is killed ("fork() called
# from a process already using GNU OpenMP"). Such a child (a fork-based worker pool) keeps
# to one thread, and so never enters one.
_forked_after_openmp = False


def _after_fork_in_child():
    global _forked_after_openmp
    try:
        from numba.np.ufunc import parallel
        started = parallel._is_initialized and numba.threading_layer() == "omp"
    except (ImportError, AttributeError, ValueError):
        started = False
    _forked_after_openmp = _forked_after_openmp or started


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def chooser_for(sizes, dtype):
    """The ThreadChooser of this process for networks of these sizes and dtype: what it
    learnt about the machine carries over from one train() call to the next."""
    key = (tuple(sizes), str(dtype), fixed_threads(), available_cpus())
    if key not in _choosers:
        _choosers[key] = ThreadChooser()
    return _choosers[key]


def _cgroup_cpus():
    """The CPU quota of this process's cgroup, in CPUs (v2 cpu.max, v1 cfs_quota), or None."""
    for path, parse in (("/sys/fs/cgroup/cpu.max", lambda s: s.split()),
                        ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", None)):
        try:
            with open(path) as f:
                text = f.read()
            if parse is not None:
                quota, period = parse(text)[:2]
            else:
                quota = text.strip()
                with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
                    period = f.read().strip()
            if quota in ("max", "-1"):
                return None
            return int(quota) / int(period)
        except (OSError, ValueError):
            continue
    return None


def available_cpus():
    """The threads a kernel may use: Numba's thread count (NUMBA_NUM_THREADS), capped by
    the CPUs in this process's affinity mask, its cgroup's CPU quota (containers), and
    OMP_NUM_THREADS, which joblib/loky and Dask set for their worker processes; 1 in a
    child forked after the parent ran GNU OpenMP threads."""
    if _forked_after_openmp:
        return 1
    n = numba.get_num_threads()
    if hasattr(os, "sched_getaffinity"):
        n = min(n, len(os.sched_getaffinity(0)))
    quota = _cgroup_cpus()
    if quota is not None:
        n = min(n, int(quota))
    omp = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if omp.isdigit() and int(omp) > 0:
        n = min(n, int(omp))
    return max(1, n)


def fixed_threads():
    """The per-sample kernel's thread count from FASTBP_THREADS: unset or empty, 1 (the
    default); a whole number N, N (at most Numba's thread count); 'auto', None: a
    ThreadChooser decides as it goes."""
    value = os.environ.get("FASTBP_THREADS", "").strip().lower()
    if not value:
        return 1
    if value == "auto":
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError("FASTBP_THREADS must be 'auto' or a whole number of threads >= 1, "
                         "got %r" % value)
    return min(int(value), available_cpus() if _forked_after_openmp else numba.get_num_threads())


class ThreadChooser:
    """Picks 1 or `threads` threads slice by slice from the seconds per sample the slices
    took (see the module's docstring). ``threads()`` before a slice, ``took(samples,
    seconds)`` after it. threads=None: as FASTBP_THREADS says (fixed_threads); 'auto',
    there or here, chooses between 1 and available_cpus() threads; a number fixes it.

    Each choice is judged by the median of its last KEEP slices; a try of the other
    choice runs PROBE slices in a row, so that one lucky or unlucky slice (the operating
    system's time slices are of the same length) decides nothing."""

    def __init__(self, threads=None):
        fixed = fixed_threads() if threads is None else threads
        self.fixed = fixed != "auto" and fixed is not None
        self.many = max(1, int(fixed)) if self.fixed else available_cpus()
        self.recent = {1: [], self.many: []}       # threads -> seconds per sample, newest last
        self.best = self.many
        self.current = self.many
        self.probing = PROBE                       # slices left in the current try
        self.wait = FIRST_PROBE                    # slices until the next try
        self.until_probe = 0

    def estimate(self, threads):
        recent = self.recent[threads]
        return statistics.median(recent) if recent else None

    def threads(self):
        if self.many == 1 or self.fixed:
            return self.many
        if self.probing == 0 and self.until_probe <= 0:        # time to try the other one
            self.current = 1 if self.best != 1 else self.many
            self.recent[self.current].clear()
            self.probing = PROBE
        return self.current

    def took(self, samples, seconds):
        if self.many == 1 or self.fixed or samples < MIN_TIMED:
            return
        c = self.current
        recent = self.recent[c]
        recent.append(seconds / samples)
        del recent[:-KEEP]
        if self.probing:
            self.probing -= 1
            best = self.estimate(self.best)
            if c != self.best and best is not None and recent[-1] > ABANDON * best:
                self.probing = 0                               # a clear loss: stop trying
            if self.probing:
                return
            if c == self.best:                                 # the first try: the other next
                self.current = 1 if c != 1 else self.many
                self.probing = PROBE
                return
            if best is None or self.estimate(c) < MARGIN * best:
                self.best, self.wait = c, FIRST_PROBE
            else:
                self.wait = min(2 * self.wait, LAST_PROBE)
            self.current, self.until_probe = self.best, self.wait
            return
        self.until_probe -= 1
        single = self.estimate(1)
        if c != 1 and single is not None and (recent[-1] > ABANDON * single or (
                len(recent) >= 2 and min(recent[-2:]) > single)):
            self.best = self.current = 1                       # the threads stopped paying
            self.until_probe = self.wait


# ---------------------------------------------------------------- batched epochs

def batch_chunks():
    """Into how many ranges of rows (and blocks of units) kernels.batch_epoch cuts a
    batch: Numba's thread count, fixed for the process (NUMBA_NUM_THREADS, the machine's
    CPUs by default), so that the thread count chosen as a run goes never changes the
    result."""
    return numba.config.NUMBA_NUM_THREADS


_blas = None


def _controller():
    """One threadpoolctl controller for every call (a new one scans the loaded libraries,
    about a millisecond); SciPy's BLAS, which Numba calls, is loaded before it is made,
    so that it is among them."""
    global _blas
    if _blas is None:
        import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS that Numba calls)
        from threadpoolctl import ThreadpoolController
        _blas = ThreadpoolController()
    return _blas


def blas_on_one_thread():
    """A context in which every BLAS library in the process (NumPy's and SciPy's, which
    Numba's np.dot calls) runs on one thread, as kernels.batch_epoch needs: its own
    threads call BLAS."""
    return blas_threads(1)


def blas_threads(n):
    """A context in which every BLAS library in the process runs on n threads (inside
    a run that holds it to one: the full-batch methods' large products and solves)."""
    return _controller().limit(limits=n, user_api="blas")


LOOK_FROM = 2 ** 26    # a product's rows x weights from which predict looks at the load (about a ms of a core)


def blas_for_products(step):
    """A context for a product of `step` rows x weights that BLAS runs on its own
    threads (predict, in the batched forward pass): BLAS on at most
    batch_chooser().products(step) threads (FASTBP_THREADS=N: N), never on more than
    it has now (a run holds it to one, and a user's threadpool_limits stays). Below
    LOOK_FROM, BLAS as it is: a look at the load would cost more than it could save."""
    if step < LOOK_FROM:
        return contextlib.nullcontext()
    now = min(lib.num_threads for lib in _controller().select(user_api="blas").lib_controllers)
    n = batch_chooser().products(step) if now > 1 else now     # (one already: no look)
    return contextlib.nullcontext() if n >= now else blas_threads(n)


@contextlib.contextmanager
def blas_following_the_load():
    """A context for a run whose BLAS calls are not all fastbp's (scipy.optimize's
    L-BFGS-B between the products of its objective): it yields follow(step), which sets
    every BLAS library in the process to the threads the load leaves a product of `step`
    rows x weights (LoadChooser.products, as blas_for_products; never above the count at
    the start, and nothing below LOOK_FROM), until the next call; the counts of the
    start come back at the end. Holding BLAS only around the products left L-BFGS-B's
    own vector operations on every thread, and beside a busy process they waited at
    their barriers as the products had."""
    controller = _controller()
    start = min(lib.num_threads for lib in controller.select(user_api="blas").lib_controllers)
    with controller.limit(limits=start, user_api="blas"):            # (restores every library's count)
        def follow(step):
            if start > 1 and step >= LOOK_FROM:
                controller.limit(limits=min(start, batch_chooser().products(step)), user_api="blas")
        yield follow


OTHERS_EVERY = 0.1     # seconds between two looks at the CPUs other processes keep busy
LONG_STEP = 10 ** 9    # a step's sample-weight products (rows x weights) from which it takes every CPU
STALE = 0.3            # seconds after which the last look says little of now
# A stale look has only the count of tasks running at that moment, and one count can catch a
# task passing by: in an idle process on the 2-core Intel Xeon, 89 of 20,000 counts read 1
# or 2. So a count above 0 is taken again, RECOUNTS times RECOUNT_PAUSE apart, and the least
# is kept: a busy process is running at every count.
RECOUNTS = 2
RECOUNT_PAUSE = 0.0005
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _busy_seconds(cpus):
    """CPU-seconds the CPUs in `cpus` have been busy since boot (/proc/stat: everything
    but idle and iowait; steal counts as busy, the hypervisor's), or None."""
    try:
        with open("/proc/stat") as f:
            lines = f.readlines()
    except OSError:
        return None
    busy = 0
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        fields = [int(v) for v in rest.split()[:8]]
        busy += sum(fields) - fields[3] - fields[4]
    return busy / CLOCK_TICKS


def _others_running():
    """Runnable tasks of other processes right now (/proc/loadavg's count of all, less
    this process's own threads that are running: its OpenMP and BLAS threads may still be
    spinning from the last parallel region), or None."""
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
        own = 0
        for task in os.listdir("/proc/self/task"):
            try:
                with open("/proc/self/task/%s/stat" % task) as f:
                    own += f.read().rpartition(")")[2].split()[0] == "R"
            except OSError:
                continue                     # (a thread that has just ended)
        return max(0, running - max(1, own))
    except (OSError, ValueError, IndexError):
        return None


class LoadChooser:
    """The thread count of batched epochs, slice by slice: available_cpus(), less the
    CPUs that other processes kept busy (see the module's docstring), at least 1; for a
    long step, available_cpus() whatever the load. ``threads(step)`` before a slice
    (step: the products of one of its steps, rows x weights); within OTHERS_EVERY of a
    look it gives that look's choice again. threads: a fixed count (FASTBP_THREADS=N), or
    None to decide from the load."""

    def __init__(self, threads=None):
        self.fixed = threads
        self.cpus = (set(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                     else set(range(os.cpu_count() or 1)))
        self.last = None               # (wall, busy CPU-seconds, own CPU-seconds) at the last look
        self.average = None            # CPUs other processes kept busy between the last two looks
        self.chosen = None             # (wall, CPUs left free) at the last look
        self.running = 0.0             # other processes' tasks running at the last look
        self.capped = None             # (wall, available_cpus()) at the last look at it

    def _others(self):
        """The CPUs other processes use: the least of their CPU time since the last look
        (over at least OTHERS_EVERY; a window over STALE seconds long says nothing of now)
        and their tasks running at this moment (a process that has just ended keeps no
        thread from this one). 0 without /proc/stat."""
        busy = _busy_seconds(self.cpus)
        now = (time.monotonic(), busy, time.process_time())
        self.running = 0.0
        if busy is None:
            return 0.0
        running = self._running()
        wall = now[0] - self.last[0] if self.last is not None else None
        if wall is None or wall > STALE:
            for _ in range(RECOUNTS):             # (the count alone decides: not a task passing by)
                if running == 0:
                    break
                time.sleep(RECOUNT_PAUSE)
                running = min(running, self._running())
            self.last, self.average = now, running
        elif wall >= OTHERS_EVERY:
            self.last, self.average = now, max(0.0, (now[1] - self.last[1]) - (now[2] - self.last[2])) / wall
        self.running = running
        return min(self.average, running)

    def _running(self):
        """Other processes' tasks running now, at most one per CPU (0 where unknown)."""
        running = _others_running()
        return float(min(running, len(self.cpus))) if running is not None else 0.0

    def _free(self):
        """The CPUs other processes leave free, rounded, from a look at most every
        OTHERS_EVERY: within it, the last look's (a look costs about 0.2 ms on an idle
        machine, 1 ms beside busy processes, and up to 3 ms on a machine just woken)."""
        now = time.monotonic()
        if self.chosen is None or now - self.chosen[0] >= OTHERS_EVERY:
            self.chosen = (now, int(len(self.cpus) - self._others() + 0.5))
        return self.chosen[1]

    def _cap(self):
        """available_cpus(), from a look at most every OTHERS_EVERY."""
        now = time.monotonic()
        if self.capped is None or now - self.capped[0] >= OTHERS_EVERY:
            self.capped = (now, available_cpus())        # (up to 0.4 ms beside busy processes)
        return self.capped[1]

    def threads(self, step=0):
        if self.fixed is not None:
            return self.fixed
        cap = self._cap()
        if cap == 1 or step >= LONG_STEP:
            return cap
        return max(1, min(cap, self._free()))

    def products(self, step):
        """BLAS's thread count for a product of `step` rows x weights on its own threads
        (predict; blas_for_products never raises BLAS's own): the CPUs left free, as
        threads() gives; but all it may use (available_cpus()) for a long product
        (LONG_STEP) while other processes keep every CPU busy, or have a task running on
        every one at that moment. BLAS splits a product evenly between its threads and
        waits for the last: beside one busy process on 2 CPUs, the thread that shares a
        CPU finishes late, and one thread was 1.15-1.5x as fast as two (5 predicts of
        10,000 or 20,000 rows, 784-100-10 and 784-200-10, 2-core Intel Xeon); beside two,
        every thread shares a CPU alike, and two were 1.13-1.25x as fast as one on the
        long products (level, 1.02x, on 10,000 rows of 784-100-10)."""
        if self.fixed is not None:
            return self.fixed
        cap = self._cap()
        if cap == 1:
            return cap
        free = self._free()
        if step >= LONG_STEP and (free < 1 or self.running >= len(self.cpus)):
            return cap                 # (beside two busy processes on 2 CPUs, this process's own
        return max(1, min(cap, free))  # share leaves them 1.3 CPUs of the look: their tasks running then)


_load = None


def batch_chooser():
    """The LoadChooser of batched epochs as FASTBP_THREADS says: a number fixes the count;
    unset or 'auto', the load decides, through one chooser for the process (so that its
    look at the CPUs carries over from one train() call to the next)."""
    global _load
    fixed = fixed_threads() if os.environ.get("FASTBP_THREADS", "").strip() else None
    if isinstance(fixed, int):
        return LoadChooser(fixed)
    if _load is None:
        _load = LoadChooser()
    return _load
