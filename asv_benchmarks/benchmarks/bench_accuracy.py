"""Accuracy beside speed: a faster kernel that learns worse shows up here."""
import numpy as np

import fastbp
from fastbp import datasets


class Seed000Accuracy:
    """Test accuracy of seed 000's network (784-200-10, per-sample SGD, lr 0.1) after one
    epoch on the first 20,000 Fashion-MNIST training images, on the 10,000 test images."""
    params = [["float64", "float32"]]
    param_names = ["dtype"]
    unit = "test accuracy"
    timeout = 600

    def setup(self, dtype):
        try:
            X, y, self.X_test, self.y_test = datasets.load_fashion_mnist(scaling="offset", dtype=dtype)
        except datasets.DataError as error:
            raise NotImplementedError(str(error)) from None   # asv's way to skip: no data here
        self.X, self.T = X[:20000], datasets.one_hot(y[:20000], 10, "soft", dtype=dtype)

    def track_accuracy(self, dtype):
        net = fastbp.Network([784, 200, 10], bias=False, propagate="error", seed=0, dtype=dtype)
        net.train(self.X, self.T, epochs=1, lr=0.1, batch_size=1)
        return float(np.mean(net.predict(self.X_test).argmax(axis=1) == self.y_test))
