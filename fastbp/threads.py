"""How many threads the per-sample kernel uses.

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
process (README, "Threads"), which is why it is not the default.

The result does not depend on the thread count: the kernel splits rows between threads
in whole pairs, so each row's arithmetic is the same (tests check it bit for bit).
"""
import os
import statistics

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
