"""Accuracy a user would compare, on Fashion-MNIST: fastbp.MLPClassifier with its
defaults reaches scikit-learn's MLPClassifier figure in the Fashion-MNIST paper's
benchmark (0.871), and the documented tuned configuration 0.89. (Minutes of training:
fastbp compare reports the times, against scikit-learn's own.)"""
import numpy as np
import pytest

from fastbp import compare

pytestmark = pytest.mark.slow          # minutes: pytest -m "not slow" leaves them out


@pytest.fixture(scope="module")
def fashion():
    return compare.load()


@pytest.mark.parametrize("settings, bar", [({}, compare.PAPER_SKLEARN_ACCURACY),
                                           (compare.TUNED, compare.TUNED_TARGET)],
                         ids=["default", "tuned"])
def test_fashion_mnist_accuracy(fashion, settings, bar, capsys, request):
    X, y, X_test, y_test = fashion
    name = request.node.callspec.id

    def report(epoch, seconds, accuracy):         # minutes of training: show that it moves
        with capsys.disabled():
            print("\n  [%s] epoch %d: test accuracy %.4f (the bar: %.3f), %.0f s"
                  % (name, epoch, accuracy, bar, seconds), end="", flush=True)
    figures = compare.run_fastbp(settings, X, y, X_test, y_test, bar, report=report)
    assert figures["accuracy"] >= bar, figures
    assert figures["seconds_to_target"] is not None
    assert len(figures["test_accuracy_per_epoch"]) == figures["epochs"] > 1
    assert np.isfinite(figures["train_s"])
