"""fastbp: fully-connected networks trained by error backpropagation, fast.

``fastbp.Network`` is the model and ``fastbp.training`` its training loop;
``fastbp.reference`` the NumPy specification and ``fastbp.kernels`` its Numba kernels
(compiled on first use, cached on disk); ``fastbp.MLPClassifier`` and ``MLPRegressor``
the scikit-learn compatible estimators; ``fastbp.warm_up`` compiles every mode ahead.
"""
from .estimators import MLPClassifier, MLPRegressor
from .export import export_onnx
from .io import ModelFileError
from .network import INITIALISERS, Network, load, resume
from .optimizers import Optimizer
from .plot import plot_history
from .run import RunConfig
from .training import ResumeError, TrainingDiverged
from .version import __version__
from .warmup import warm_up

__all__ = ["Network", "MLPClassifier", "MLPRegressor", "Optimizer", "TrainingDiverged",
           "ResumeError", "INITIALISERS", "load", "resume", "plot_history", "ModelFileError", "RunConfig",
           "export_onnx", "warm_up", "__version__"]
