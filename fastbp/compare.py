"""Fashion-MNIST accuracy and time, in one run: fastbp.MLPClassifier with its default
settings and with TUNED, against scikit-learn's MLPClassifier with its defaults.

    fastbp compare                      # all three (scikit-learn's needs it installed)
    fastbp compare --only fastbp        # fastbp's two
    fastbp compare --epochs 10          # speed, epoch for epoch: both MLPClassifier()s, then
                                        # both MLPRegressor()s (lower halves from upper halves)

The bar: the Fashion-MNIST paper's benchmark lists scikit-learn's MLPClassifier (relu,
one hidden layer of 100) at 0.871 test accuracy; the tuned configuration aims at 0.89.
Pixels are scaled to [0, 1], float32, for every contender. fastbp's figures are training
seconds (the test accuracy after each epoch is measured outside them); "to target" is the
training time until the first epoch whose test accuracy reaches the target.
"""
import argparse
import json
import time
import warnings

import numpy as np

from .functions import accuracy

PAPER_SKLEARN_ACCURACY = 0.871      # Xiao et al. (2017), benchmark table: MLPClassifier, relu, 100
TUNED_TARGET = 0.89

# fastbp's tuned configuration: a wider hidden layer (512, He initialisation), batches of
# 128, Adam with the learning rate divided by 5 when the validation loss stalls, and
# early stopping on a held-out 10% that keeps the best epoch's weights
TUNED = dict(hidden_layer_sizes=(512,), batch_size=128, alpha=1e-3, learning_rate="adaptive",
             early_stopping=True, n_iter_no_change=8, max_iter=40, init="he")


def load(data_dir=None):
    from .datasets import load_fashion_mnist
    X, y, X_test, y_test = load_fashion_mnist(data_dir, dtype="float32")
    return X, y, X_test, y_test


def run_fastbp(settings, X, y, X_test, y_test, target, seed=0, report=None):
    """Fit fastbp.MLPClassifier(**settings); returns its figures. report, if given, is
    called as report(epoch, training seconds so far, test accuracy) after each epoch."""
    from .estimators import MLPClassifier
    curve = []

    def after_epoch(net, history):
        curve.append((sum(history["seconds"]), accuracy(net.predict(X_test), y_test)))
        if report is not None:
            report(len(curve), *curve[-1])

    clf = MLPClassifier(random_state=seed, callback=after_epoch, **settings)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                  # max_iter reached: reported below
        clf.fit(X, y)
    wall = time.perf_counter() - start
    reached = [s for s, acc in curve if acc >= target]
    return {"accuracy": clf.score(X_test, y_test), "fit_wall_s": wall,
            "train_s": sum(clf.history_["seconds"]), "epochs": clf.n_iter_,
            "stopped": clf.history_["stopped"], "best_epoch": clf.history_.get("best_epoch"),
            "target": target, "seconds_to_target": reached[0] if reached else None,
            "test_accuracy_per_epoch": [acc for _, acc in curve]}


def run_sklearn(X, y, X_test, y_test, seed=0):
    from sklearn.neural_network import MLPClassifier
    clf = MLPClassifier(random_state=seed)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    wall = time.perf_counter() - start
    return {"accuracy": clf.score(X_test, y_test), "fit_wall_s": wall, "epochs": clf.n_iter_}


def halves(X):
    """The regression task made from images X (m, 784): each image's lower half (the
    targets, 392 pixels) from its upper half (the inputs), as scikit-learn's face
    completion example does with faces."""
    half = X.shape[1] // 2
    return np.ascontiguousarray(X[:, :half]), np.ascontiguousarray(X[:, half:])


def pooled_r2(T, O):
    """R^2 over all outputs pooled: 1 - the residual sum of squares over the total one
    (scikit-learn's multioutput="variance_weighted"). The estimators' score averages
    each pixel's R^2, which a nearly constant corner pixel drives far below 0 for any
    model."""
    T, O = np.asarray(T, np.float64), np.asarray(O, np.float64).reshape(T.shape)
    return float(1.0 - ((T - O) ** 2).sum() / ((T - T.mean(axis=0)) ** 2).sum())


def head_to_head(X, y, X_test, y_test, epochs=10, pairs=3, kind="classifier"):
    """fastbp's and scikit-learn's MLPClassifier() (kind="classifier": accuracy) or
    MLPRegressor() (kind="regressor": pooled_r2, y the targets), both with their defaults but
    for max_iter=epochs (and no early stop, so both train exactly that many epochs),
    fitted in turn (fastbp, scikit-learn, fastbp, ...) with seeds 0..pairs-1, each fit
    starting BLAS_IDLE after the last one's scoring (whose BLAS threads spin for a while
    after it). After each pair, the matrix products of `epochs` such epochs alone
    (bench.gemm_floor: the floor under both, the same products through the BLAS fastbp
    calls, nothing else). Returns each one's fit seconds and test scores, the products'
    seconds, the median of the pairwise ratios scikit-learn / fastbp of the fit seconds, and
    the medians of each fit's seconds over the products' that follow it."""
    import sklearn.neural_network as theirs

    from . import estimators as ours
    from .bench import BLAS_IDLE, gemm_floor
    name = {"classifier": "MLPClassifier", "regressor": "MLPRegressor"}[kind]
    settings = dict(max_iter=epochs, n_iter_no_change=epochs + 1)
    out = {"kind": kind, "epochs": epochs, "fastbp_s": [], "sklearn_s": [], "fastbp_score": [],
           "sklearn_score": [], "products_s": []}
    n_out = int(np.max(y)) + 1 if kind == "classifier" else y.shape[1]
    # (the estimators' default hidden layer, 100 units, and batch size, min(200, rows))
    products = gemm_floor([X.shape[1], 100, n_out], X.shape[0], min(200, X.shape[0]), X.dtype.name)
    for seed in range(pairs):
        for who, make in (("fastbp", getattr(ours, name)), ("sklearn", getattr(theirs, name))):
            model = make(random_state=seed, **settings)
            time.sleep(BLAS_IDLE)
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")              # max_iter reached, by design
                model.fit(X, y)
            out[who + "_s"].append(time.perf_counter() - start)
            out[who + "_score"].append(float(model.score(X_test, y_test)) if kind == "classifier"
                                       else pooled_r2(y_test, model.predict(X_test)))
        time.sleep(BLAS_IDLE)
        start = time.perf_counter()
        for _ in range(epochs):
            products()
        out["products_s"].append(time.perf_counter() - start)
    fastbp_s, sklearn_s, products_s = (np.array(out[k]) for k in ("fastbp_s", "sklearn_s", "products_s"))
    out["ratio"] = float(np.median(sklearn_s / fastbp_s))
    out["fastbp_over_products"] = float(np.median(fastbp_s / products_s))
    out["sklearn_over_products"] = float(np.median(sklearn_s / products_s))
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fastbp compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=["fastbp", "sklearn", "default", "tuned"])
    parser.add_argument("--data-dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--epochs", type=int, metavar="N",
                        help="instead: both MLPClassifier() defaults (and both MLPRegressor() ones, "
                             "on each image's lower half from its upper half) for exactly N epochs, "
                             "fitted in turn --pairs times; fit time ratios and test scores")
    parser.add_argument("--pairs", type=int, default=3, help="with --epochs (default 3)")
    args = parser.parse_args(argv)
    X, y, X_test, y_test = load(args.data_dir)
    from . import kernels
    from .estimators import MLPClassifier
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        MLPClassifier(max_iter=1, batch_size=2).fit(X[:4], y[:4] % 2)   # compile outside the timing
    print("Fashion-MNIST, %d training and %d test images, float32; %d threads"
          % (len(X), len(X_test), kernels.threading_info()["threads"]))
    if args.epochs:
        (X_top, Y_low), (X_test_top, Y_test_low) = halves(X), halves(X_test)
        from .estimators import MLPRegressor
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            MLPRegressor(max_iter=1, batch_size=2).fit(X_top[:4], Y_low[:4])   # (compile outside the timing)
        runs = {"classifier": head_to_head(X, y, X_test, y_test, args.epochs, args.pairs),
                "regressor": head_to_head(X_top, Y_low, X_test_top, Y_test_low, args.epochs, args.pairs,
                                          kind="regressor")}
        for kind, f in runs.items():
            print("%s defaults, %d epochs each, %d interleaved pairs%s:" % (
                "MLPClassifier()" if kind == "classifier" else "MLPRegressor()", args.epochs, args.pairs,
                "" if kind == "classifier" else " (each image's lower half from its upper half)"))
            for who in ("fastbp", "sklearn"):
                print("  %-12s fit s %s, test %s %s" % (
                    "fastbp" if who == "fastbp" else "scikit-learn",
                    " ".join("%.2f" % v for v in f[who + "_s"]),
                    "accuracy" if kind == "classifier" else "R^2",
                    " ".join("%.4f" % v for v in f[who + "_score"])))
            print("  scikit-learn / fastbp fit time, median of the pairs: %.2fx" % f["ratio"])
            print("  the fits' matrix products alone (%s s): fastbp's fit %.2fx their time, scikit-learn's %.2fx"
                  % (" ".join("%.2f" % v for v in f["products_s"]), f["fastbp_over_products"],
                     f["sklearn_over_products"]))
        if args.json:
            with open(args.json, "w") as out:
                json.dump(runs, out, indent=2)
        return runs
    figures = {}
    jobs = [("fastbp default", lambda: run_fastbp({}, X, y, X_test, y_test, PAPER_SKLEARN_ACCURACY, args.seed)),
            ("fastbp tuned", lambda: run_fastbp(TUNED, X, y, X_test, y_test, TUNED_TARGET, args.seed)),
            ("scikit-learn default", lambda: run_sklearn(X, y, X_test, y_test, args.seed))]
    wanted = {None: {0, 1, 2}, "fastbp": {0, 1}, "sklearn": {2}, "default": {0}, "tuned": {1}}[args.only]
    for k, (name, job) in enumerate(jobs):
        if k not in wanted:
            continue
        f = figures[name] = job()
        line = "%-22s test accuracy %.4f after %3d epochs, fit %.1f s" % (
            name, f["accuracy"], f["epochs"], f["fit_wall_s"])
        if "train_s" in f:
            line += " (training %.1f s; stopped: %s%s); reached %.3f %s" % (
                f["train_s"], f["stopped"], ", best epoch %d" % f["best_epoch"] if f["best_epoch"] else "",
                f["target"], "after %.1f s" % f["seconds_to_target"] if f["seconds_to_target"] is not None else "never")
        print(line, flush=True)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(figures, out, indent=2)
    return figures


if __name__ == "__main__":
    main()
