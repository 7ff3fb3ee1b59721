"""The public API's docstrings are numpydoc, as scikit-learn writes them: every parameter
named under Parameters, and what comes back under Returns."""
import inspect
import re

import pytest

import fastbp
from fastbp.run import RUN_SETTINGS

NETWORK = ["predict", "loss", "gradients", "deltas", "jacobian", "train", "train_steps", "warm_up", "save"]
ESTIMATOR = ["fit", "partial_fit", "predict", "score", "to_sklearn", "from_sklearn"]
PUBLIC = ([fastbp.Network] + [getattr(fastbp.Network, name) for name in NETWORK]
          + [fastbp.MLPClassifier, fastbp.MLPClassifier.predict_proba, fastbp.MLPRegressor]
          + [getattr(cls, name) for cls in (fastbp.MLPClassifier, fastbp.MLPRegressor) for name in ESTIMATOR]
          + [fastbp.load, fastbp.resume, fastbp.export_onnx, fastbp.warm_up, fastbp.plot_history,
             fastbp.Optimizer, fastbp.RunConfig])


def _section(doc, title):
    """The names a numpydoc section lists ('a, b : type' or 'a' lines at its indent)."""
    found = re.search(r"^%s\n-{%d}\n(.*?)(?:\n\n[A-Z][a-z]+\n-+\n|\Z)" % (title, len(title)), doc, re.S | re.M)
    if found is None:
        return None
    names = set()
    for line in found.group(1).splitlines():
        if line and not line.startswith(" "):
            names.update(n.strip() for n in line.split(" : ")[0].split(","))
    return names


@pytest.mark.parametrize("thing", PUBLIC, ids=lambda t: t.__qualname__)
def test_public_docstrings_are_numpydoc(thing):
    doc = inspect.getdoc(thing)
    assert doc, "%s has no docstring" % thing.__qualname__
    target = thing.__init__ if inspect.isclass(thing) else thing
    wanted = [name for name, p in inspect.signature(target).parameters.items()
              if name not in ("self", "cls") and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
    listed = _section(doc, "Parameters")
    if wanted:
        assert listed is not None, "%s: no Parameters section" % thing.__qualname__
        assert set(wanted) <= listed, "%s: Parameters leaves out %s" % (thing.__qualname__,
                                                                         sorted(set(wanted) - listed))
    if not inspect.isclass(thing):
        assert _section(doc, "Returns") is not None, "%s: no Returns section" % thing.__qualname__


def test_train_documents_every_setting():
    """Network.train takes RunConfig's fields as **settings: each is a parameter there."""
    assert set(RUN_SETTINGS) <= _section(inspect.getdoc(fastbp.Network.train), "Parameters")
