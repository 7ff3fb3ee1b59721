"""fastbp: fully-connected networks trained by error backpropagation, fast.

``fastbp.Network`` is the model; ``fastbp.reference`` the NumPy specification and
``fastbp.kernels`` its Numba kernels (compiled on first use, cached on disk).
"""
from .network import INITIALISERS, Network, TrainingDiverged

__version__ = "0.1.0"
__all__ = ["Network", "TrainingDiverged", "INITIALISERS", "__version__"]
