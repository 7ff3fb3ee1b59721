"""fastbp against its peers, training the same network the same way (fastbp.bench):
784-100-10, ReLU hidden layer, softmax and cross-entropy, plain SGD, float32. A peer that
is not installed is skipped (pip install 'fastbp[bench,peers]')."""
import importlib.util

from fastbp import bench

SAMPLES = 2000
HIDDEN = 100


class _Peer:
    module = None
    number = 1
    repeat = (1, 3, 120.0)
    warmup_time = 0.0
    timeout = 900
    params = [[1, 64]]
    param_names = ["batch_size"]

    def setup(self, batch_size):
        if importlib.util.find_spec(self.module) is None:
            raise NotImplementedError("%s is not installed" % self.module)   # asv skips
        self.X, self.y = bench.peer_data(SAMPLES)
        bench.fastbp_peer_seconds(self.X[:64], self.y[:64], HIDDEN, batch_size, repeats=1)  # compile


class Torch(_Peer):
    """PyTorch 2.13 (CPU) autograd, per sample and in mini-batches of 64, 2000 samples."""
    module = "torch"

    def time_torch_epoch(self, batch_size):
        bench.torch_seconds(self.X, self.y, HIDDEN, batch_size, repeats=1)

    def time_fastbp_epoch(self, batch_size):
        bench.fastbp_peer_seconds(self.X, self.y, HIDDEN, batch_size, repeats=1)

    def track_torch_over_fastbp(self, batch_size):
        return (bench.torch_seconds(self.X, self.y, HIDDEN, batch_size)
                / bench.fastbp_peer_seconds(self.X, self.y, HIDDEN, batch_size))
    track_torch_over_fastbp.unit = "x (PyTorch time / fastbp time)"


class Jax(_Peer):
    """JAX on the CPU: one jit-compiled epoch, lax.scan over samples or batches of 64."""
    module = "jax"

    def time_jax_epoch(self, batch_size):
        bench.jax_seconds(self.X, self.y, HIDDEN, batch_size, repeats=1)

    def track_jax_over_fastbp(self, batch_size):
        return (bench.jax_seconds(self.X, self.y, HIDDEN, batch_size)
                / bench.fastbp_peer_seconds(self.X, self.y, HIDDEN, batch_size))
    track_jax_over_fastbp.unit = "x (JAX time / fastbp time)"


class ScikitLearn(_Peer):
    """scikit-learn's MLPClassifier with batch_size=1, 2000 samples."""
    module = "sklearn"
    params = [[1]]

    def time_sklearn_epoch(self, batch_size):
        bench.sklearn_seconds(self.X, self.y, HIDDEN, batch_size, repeats=1)

    def track_sklearn_over_fastbp(self, batch_size):
        return (bench.sklearn_seconds(self.X, self.y, HIDDEN, batch_size)
                / bench.fastbp_peer_seconds(self.X, self.y, HIDDEN, batch_size))
    track_sklearn_over_fastbp.unit = "x (scikit-learn time / fastbp time)"
