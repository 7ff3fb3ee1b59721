"""The tests' problems come from fastbp.cases, the one table of cases (built from the
tables of activations, losses and rules) that also drives the asv benchmarks."""
from fastbp.cases import OUTPUT_LOSS, problem, targets
from fastbp.functions import HIDDEN_ACTIVATIONS

make_problem = problem            # (the tests' name for it)
make_targets = targets

__all__ = ["HIDDEN_ACTIVATIONS", "OUTPUT_LOSS", "make_problem", "make_targets"]
