"""fastbp.export_onnx: every network of the table of cases (every activation, output and
loss) and every kind of estimator, run by onnx's reference evaluator and by onnxruntime,
give predict's outputs to 1e-6."""
import subprocess
import sys
import warnings

import numpy as np
import onnx
import onnxruntime
import pytest
from conftest import make_problem
from onnx.reference import ReferenceEvaluator
from sklearn.datasets import load_iris

import fastbp
from fastbp.cases import DTYPES, NETWORKS, case_id
from fastbp.export import IR_VERSION, OPSET


def sessions(path):
    """Both runtimes, each as a function of the inputs returning the outputs."""
    reference = ReferenceEvaluator(str(path))
    runtime = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return {"onnx.reference": lambda X: reference.run(None, {"X": X}),
            "onnxruntime": lambda X: runtime.run(None, {"X": X})}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("spec", NETWORKS, ids=case_id)
def test_every_network_exports(spec, dtype, tmp_path):
    for bias in (True, False):
        net, X, T = make_problem(*spec, 17, seed=5, dtype=dtype, bias=bias)
        net.train(X, T, epochs=2, lr=0.05, batch_size=4)
        path = fastbp.export_onnx(net, tmp_path / "net.onnx")
        X = X.astype(dtype)
        for runtime, run in sessions(path).items():
            outputs, = run(X)
            assert outputs.dtype == np.dtype(dtype)
            np.testing.assert_allclose(outputs, net.predict(X), rtol=1e-6, atol=1e-6, err_msg=runtime)


@pytest.mark.parametrize("dtype", DTYPES)
def test_an_activations_parameter_is_exported(dtype, tmp_path):
    net = fastbp.Network([3, 6, 5, 2], activation=["leaky_relu", "elu"], output="identity", seed=2, dtype=dtype,
                         activation_parameters={"negative_slope": 0.3, "alpha": 1.7})
    X = np.random.default_rng(0).normal(0.0, 3.0, (40, 3)).astype(dtype)
    path = fastbp.export_onnx(net, tmp_path / "net.onnx")
    for runtime, run in sessions(path).items():
        outputs, = run(X)
        np.testing.assert_allclose(outputs, net.predict(X), rtol=1e-6, atol=1e-6, err_msg=runtime)


def test_the_file_pins_its_opset_and_ir_version(tmp_path):
    net = fastbp.Network([3, 4, 2], seed=0)
    model = onnx.load(str(fastbp.export_onnx(net, tmp_path / "net.onnx")))
    assert model.ir_version == IR_VERSION == 8
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)] and OPSET == 17
    assert [i.name for i in model.graph.input] == ["X"] and [o.name for o in model.graph.output] == ["outputs"]


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


def fitted(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return estimator.fit(X, y)


@pytest.mark.parametrize("labels", ["integers", "strings", "binary", "multilabel", "float32"])
def test_classifiers_export_labels_and_probabilities(iris, labels, tmp_path):
    X, y = iris
    target = {"integers": y + 3, "strings": np.array(["setosa", "versicolor", "virginica"])[y],
              "binary": y > 0, "multilabel": np.eye(3, dtype=int)[y], "float32": y}[labels]
    X = X.astype(np.float32) if labels == "float32" else X
    clf = fitted(fastbp.MLPClassifier(hidden_layer_sizes=(6,), max_iter=30, random_state=0), X, target)
    path = fastbp.export_onnx(clf, tmp_path / "clf.onnx")
    for runtime, run in sessions(path).items():
        label, probabilities = run(X)
        np.testing.assert_array_equal(label, clf.predict(X), err_msg=runtime)
        np.testing.assert_allclose(probabilities, clf.predict_proba(X), rtol=1e-6, atol=1e-6, err_msg=runtime)


@pytest.mark.parametrize("loss", ["squared_error", "poisson"])
@pytest.mark.parametrize("outputs", [1, 2])
def test_regressors_export_predictions(iris, loss, outputs, tmp_path):
    X, y = iris
    target = np.column_stack([X[:, 0], X[:, 1]])[:, :outputs] if outputs == 2 else X[:, 0]
    reg = fitted(fastbp.MLPRegressor(hidden_layer_sizes=(6,), max_iter=30, random_state=0, loss=loss),
                 X[:, 1:], target)
    path = fastbp.export_onnx(reg, tmp_path / "reg.onnx")
    for runtime, run in sessions(path).items():
        predictions, = run(X[:, 1:])
        assert predictions.shape == reg.predict(X[:, 1:]).shape
        np.testing.assert_allclose(predictions, reg.predict(X[:, 1:]), rtol=1e-6, atol=1e-6, err_msg=runtime)


def test_export_errors(iris, tmp_path):
    with pytest.raises(fastbp.estimators.NotFittedError):
        fastbp.export_onnx(fastbp.MLPClassifier(), tmp_path / "x.onnx")
    with pytest.raises(TypeError, match="takes a fastbp.Network"):
        fastbp.export_onnx("model", tmp_path / "x.onnx")
    X, y = iris
    clf = fitted(fastbp.MLPClassifier(hidden_layer_sizes=(3,), max_iter=2), X, np.array([(0,), "a", 2.5],
                                                                                       dtype=object)[y])
    with pytest.raises(TypeError, match="numbers or strings"):
        fastbp.export_onnx(clf, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_without_onnx_installed_export_says_what_to_install(tmp_path):
    code = ("import sys; sys.modules['onnx'] = None\n"
            "import fastbp\n"
            "try:\n    fastbp.export_onnx(fastbp.Network([2, 1], seed=0), %r)\n"
            "except ImportError as e:\n    print(e)\n" % str(tmp_path / "x.onnx"))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'fastbp[onnx]'" in out


def test_an_unwritable_path_is_named_as_given(tmp_path):
    missing = tmp_path / "no" / "net.onnx"
    with pytest.raises(FileNotFoundError, match="^cannot write %s: the directory" % missing):
        fastbp.export_onnx(fastbp.Network([3, 2, 2], seed=0), missing)
