"""fastbp: fully-connected networks trained by error backpropagation, fast.

``fastbp.Network`` is the model and ``fastbp.training`` its training loop;
``fastbp.reference`` the NumPy specification and ``fastbp.kernels`` its Numba kernels
(compiled on first use, cached on disk); ``fastbp.MLPClassifier`` and ``MLPRegressor``
the scikit-learn compatible estimators.
"""
__version__ = "0.2.0"

from .estimators import MLPClassifier, MLPRegressor  # noqa: E402
from .export import export_onnx  # noqa: E402
from .io import ModelFileError, load  # noqa: E402
from .network import INITIALISERS, Network  # noqa: E402
from .optimizers import Optimizer  # noqa: E402
from .plot import plot_history  # noqa: E402
from .run import RunConfig  # noqa: E402
from .training import ResumeError, TrainingDiverged, resume  # noqa: E402

__all__ = ["Network", "MLPClassifier", "MLPRegressor", "Optimizer", "TrainingDiverged",
           "ResumeError", "INITIALISERS", "load", "resume", "plot_history", "ModelFileError", "RunConfig",
           "export_onnx", "__version__"]
