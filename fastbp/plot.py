"""PNG plots of training runs (matplotlib, an optional dependency: pip install 'fastbp[plot]')."""
import numpy as np

from .io import atomic_write, check_writable


def _pyplot():
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ImportError("plotting needs matplotlib: pip install 'fastbp[plot]'") from error
    return plt


def require_matplotlib(option):
    """Raise ImportError, saying how to install it, unless matplotlib is importable: called
    before a run whose end writes a plot."""
    import importlib.util
    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError("%s writes a PNG with matplotlib, which is not installed: pip install "
                          "matplotlib (or pip install 'fastbp[plot]'), or leave out %s" % (option, option))


def plot_history(history, path):
    """A PNG of a training history against epochs, written atomically: the training and
    validation loss, the accuracies, each layer's mean |error term| and gradient norm (log
    scale, so vanishing gradients show as spread-out lines), and the learning rate. Needs
    matplotlib (fastbp[plot]).

    Parameters
    ----------
    history : dict
        Network.train's, or an estimator's history_.
    path : str or os.PathLike

    Returns
    -------
    the path given"""
    check_writable(path)
    plt = _pyplot()
    epochs = np.arange(1, len(history["loss"]) + 1)
    panels = [("loss", ["loss", "val_loss"], True), ("accuracy", ["accuracy", "val_accuracy"], False),
              ("mean |error term| per layer", ["mean_abs_delta"], True),
              ("gradient norm per layer", ["grad_norm"], True), ("learning rate", ["lr"], True)]
    panels = [p for p in panels if any(history.get(k) for k in p[1])]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (title, keys, log) in zip(axes[0], panels):
        for key in keys:
            values = history.get(key)
            if not values:
                continue
            values = np.asarray(values, dtype=float)
            if values.ndim == 2:                              # one line per layer
                for l in range(values.shape[1]):
                    ax.plot(epochs[:len(values)], values[:, l], marker=".",
                            label="layer %d%s" % (l + 1, " (output)" if l == values.shape[1] - 1 else ""))
            else:
                ax.plot(epochs[:len(values)], values, marker=".",
                        label={"loss": "training", "val_loss": "validation", "accuracy": "training",
                               "val_accuracy": "validation"}.get(key, key))
        if log:
            ax.set_yscale("log")
        best = history.get("best_epoch")
        if best and title in ("loss", "accuracy") and history.get("val_loss"):
            ax.axvline(best, color="grey", linestyle=":", label="best epoch")
        ax.set(title=title, xlabel="epoch")
        ax.legend(fontsize="small")
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=100, format="png"))
    plt.close(fig)
    return path


def plot_seed001(results, path):
    """A PNG of each run's loss and per-layer mean |error term| against steps."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 1 + len(results), figsize=(5 * (1 + len(results)), 4))
    for r in results:
        axes[0].semilogy(r["history"]["steps"], r["history"]["loss"], label="%s hidden layers" % r["activation"])
    axes[0].axhline(0.01, color="grey", linestyle=":", label="target 0.01")
    axes[0].set(title="mean loss of each 100 steps", xlabel="steps", ylabel="loss")
    axes[0].legend()
    for ax, r in zip(axes[1:], results):
        deltas = np.array(r["history"]["mean_abs_delta"])
        for l in range(deltas.shape[1]):
            ax.semilogy(r["history"]["steps"], deltas[:, l], label="layer %d (%s)" % (
                l + 1, "output" if l == deltas.shape[1] - 1 else r["activation"]))
        ax.set(title="mean |error term| per layer, %s" % r["activation"], xlabel="steps")
        ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=100, format="png"))
    plt.close(fig)
    return path
