"""The fastbp command line: train, evaluate, demo, seed001, info, warm-up, bench, compare.

Command line
============

```bash
fastbp demo                                   # the main job (the README's quick start)
fastbp train --hidden 256,128 --activation relu --output softmax --loss cross_entropy \\
             --init he --lr 0.05 --batch-size 32 --epochs 10 --save model.npz
fastbp evaluate model.npz                     # test accuracy and confusion matrix
fastbp train --hidden 512 --activation relu --output softmax --loss cross_entropy --init he \\
             --optimizer adam --batch-size 128 --epochs 40 --validation-fraction 0.1 \\
             --n-iter-no-change 8 --schedule reduce_on_plateau --checkpoint run.npz \\
             --plot-history history.png --save model.npz
fastbp train ...the same options... --resume   # continue run.npz after a crash or a kill
fastbp seed001 --plot seed001.png             # seed 001's vanishing-gradient experiment
fastbp bench                                  # speed report (asv_benchmarks/README.md)
fastbp info                                   # versions, threads, BLAS, Numba's cache (--json)
fastbp warm-up                                # compile every mode into Numba's cache, ahead
fastbp compare                                # Fashion-MNIST accuracy and time vs scikit-learn
```

`fastbp train` shows a progress bar (tqdm) with the running loss, the last test accuracy
and samples per second, and ends with the test accuracy and seconds per epoch.
`--data fashion-mnist|mnist|synthetic` (`--data-dir` for the IDX files, `--subset N` for the
first N samples), `--preprocess offset` for seed 000's scaling and 0.01/0.99 targets (`seed000`: its old name),
`--dtype`, `--backend numpy`, `--seed`, `--l2`, `--l1`, `--max-norm`, `--dropout`, `--input-noise`,
`--propagate error`, `--no-bias`,
`--optimizer`, `--momentum`, `--schedule`, `--clip`, `--validation-fraction`,
`--n-iter-no-change`, `--tol`, `--target-loss`, `--checkpoint`, `--checkpoint-every`,
`--resume` (continue the run in `--checkpoint` if it exists; give the same data options),
`--plot-history`. `fastbp train --help` lists the names each option takes.

- **`--resume` keeps the run's settings.** A resumed run continues with the checkpoint's
  network, optimizer, schedule and training options; `--epochs` sets the new total. An
  option given on the command line that differs from the checkpoint's (`--lr 0.5` where the
  run had 0.1, another `--batch-size`, `--activation`...) is refused with exit status 2,
  naming each difference and the checkpoint's value, and nothing is trained or written.
  The same options, or none, continue the run; `--seed` is not used (the run continues
  from the checkpoint's random state) and says so.
- **Data directories.** A directory you name (`--data-dir`, or `$FASTBP_DATA`) must exist
  and hold the IDX files; it is never passed over for the system copy. The first line of
  `train`, and `evaluate`'s report, name the directory read. `fastbp demo` falls back to
  generated data only when you named no directory.
- Everything that can be checked is checked before any data is read or trained: the
  options (`--subset 0`, an empty layer size in `--hidden`, or `--momentum` with a rule that
  does not use it are errors), and every output path (`--save`, `--checkpoint`,
  `--plot-history`, `seed001 --plot`: a missing or read-only directory is an error naming
  the path given). `--plot-history` and `seed001 --plot` check for matplotlib too.
- `--resume` with no checkpoint at `--checkpoint` yet says that it starts a new run there.
  With one, `--epochs` is the run's new total: a run that has done that many, or that
  stopped early (`--n-iter-no-change`, `--target-loss`), is an error saying so. The
  progress bar and the epoch count go on from the run's epochs.
- `fastbp evaluate` scores a saved model or a checkpoint. A checkpoint holds the weights
  of its last finished epoch, and says so; with validation, `--save` writes the best
  epoch's weights at the end, so the two can differ.
- Ctrl-C stops within the slice in hand (about 1% of an epoch) and goes back to the last
  finished epoch: it saves that when `--save` is given, writes it to `--checkpoint` when
  one was asked for and prints the command that resumes it, and exits with status 130. Output
  into a closed pipe (`fastbp evaluate m.npz | head -1`) ends quietly with status 141, as a
  process stopped by SIGPIPE.
"""
import argparse
import json
import os
import shlex
import statistics
import sys
import time

import numpy as np

from . import datasets, functions, io, network, training, warmup
from .functions import HIDDEN_ACTIVATIONS, LOSSES, OUTPUT_ACTIVATIONS
from .network import INITIALISERS, KERNEL_SETTINGS, Network, load_checkpoint
from .optimizers import RULES, SCHEDULES, Optimizer, default_lr
from .plot import plot_history, require_matplotlib
from .run import BACKENDS, RunConfig, save_checkpoint
from .training import TrainingDiverged
from .version import __version__

EXIT_INTERRUPTED = 130


def _ints(text):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("%r is not a list of layer sizes: give positive "
                                         "integers separated by commas, such as 200 or 256,128" % text)
    return values


def _positive(text):
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError("%r is not a positive integer" % text)
    return value


def _one_of(what, allowed):
    """An argparse type: a name from allowed, with the names in its error."""
    def check(text):
        if text not in allowed:
            raise argparse.ArgumentTypeError("unknown %s %r; choose from %s" % (what, text, ", ".join(allowed)))
        return text
    return check


def _names_of(what, allowed):
    """A comma-separated list of names, each one of allowed."""
    def parse(text):
        names = [_one_of(what, allowed)(v.strip()) for v in text.split(",") if v.strip()]
        if not names:
            raise argparse.ArgumentTypeError("give one or more of: %s" % ", ".join(allowed))
        return names
    return parse


def _names(text):
    """One hidden activation for every hidden layer, or a comma-separated list of them."""
    names = [_one_of("activation", HIDDEN_ACTIVATIONS)(v.strip()) for v in text.split(",") if v.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give an activation name, or one per hidden layer")
    return names[0] if len(names) == 1 else names


def load_data(name, data_dir=None, subset=None, scaling="unit", dtype="float64"):
    """(X_train, y_train, X_test, y_test, description) for the command line's --data."""
    if name == "fashion-mnist":
        directory = datasets.find_fashion_mnist(data_dir)
        data = datasets.load_idx_dataset(directory)
        description = "Fashion-MNIST from %s" % directory
    elif name == "mnist":
        if data_dir is None:
            raise datasets.DataError("--data mnist needs --data-dir, the directory of its IDX files")
        data = datasets.load_idx_dataset(data_dir)
        description = "MNIST from %s" % data_dir
    elif name == "synthetic":
        data = datasets.synthetic_images()
        description = "a generated data set (10 noisy prototype images)"
    else:
        raise ValueError("unknown data set %r" % name)
    X_train, y_train, X_test, y_test = data
    if subset is not None:
        X_train, y_train = X_train[:subset], y_train[:subset]
        X_test, y_test = X_test[:max(1, subset // 6)], y_test[:max(1, subset // 6)]
    return (datasets.scale_pixels(X_train, scaling, dtype), y_train,
            datasets.scale_pixels(X_test, scaling, dtype), y_test, description)


def targets_for(net, y, preprocess):
    """Targets for integer labels y: with preprocess 'offset', seed 000's soft 0.01/0.99
    rows (plain one-hot for cross-entropy); else plain one-hot."""
    style = "soft" if preprocess == "offset" and net.loss_name != "cross_entropy" else "plain"
    return datasets.one_hot(y, net.sizes[-1], style=style, dtype=net.dtype)


def accuracy(net, X, y):
    return functions.accuracy(net.predict(X), y)


def _epochs(n):
    return "%d epoch%s" % (n, "" if n == 1 else "s")


def fit(net, X, T, X_test, y_test, config, progress=True, save=None, resume=None, cluster=None,
        done=0, train_rows=None):
    """Train with a progress bar and the test accuracy after each epoch; returns (the
    network, its history, the per-epoch test accuracies, interrupted). config: the
    run's RunConfig; resume: a checkpoint to continue instead (with its own settings;
    only epochs is taken from config), done: the epochs it has finished; train_rows: the
    rows an epoch trains on (len(X) less any held out for validation); cluster: None (this
    process), or (client, workers, sync_every) for fastbp.distributed (client: a
    scheduler's address or None for a LocalCluster of `workers` processes). On Ctrl-C,
    stops after the slice (or round) in hand, saves if asked, and says so."""
    from tqdm import tqdm
    epochs = config.epochs
    rows = len(X) if train_rows is None else train_rows
    rule = config.optimizer.rule if isinstance(config.optimizer, Optimizer) else config.optimizer
    net.warm_up(config.batch_size, config.backend, rule,       # time training only
                **{name: getattr(config, name) for name in KERNEL_SETTINGS})
    bar = tqdm(total=epochs * rows, initial=done * rows, unit="sample", unit_scale=True,
               disable=not progress, dynamic_ncols=True, leave=True)
    bar.set_description("epoch %d/%d" % (min(done + 1, epochs), epochs))
    accuracies, interrupted, history = [], False, None

    def progress_bar(n, loss):
        bar.update(n)
        bar.set_postfix(loss="%.4f" % loss, test_acc=accuracies[-1] if accuracies else "-", refresh=False)

    def after_epoch(net, h):
        accuracies.append(round(accuracy(net, X_test, y_test), 4))
        finished = len(h["loss"])            # (the run's: a resumed history holds the earlier epochs)
        bar.set_description("epoch %d/%d" % (min(finished + 1, epochs), epochs))
        bar.set_postfix(loss="%.4f" % h["loss"][-1], test_acc=accuracies[-1])
        if not progress:
            extra = "".join(", %s %.4f" % (k.replace("_", " "), h[k][-1])
                            for k in ("val_loss", "val_accuracy") if k in h)
            print("epoch %d/%d: loss %.4f%s, test accuracy %.4f, %.2f s"
                  % (finished, epochs, h["loss"][-1], extra, accuracies[-1], h["seconds"][-1]), flush=True)

    try:
        if cluster is not None:
            from . import distributed
            client, workers, sync_every = cluster
            with distributed.connected(client, workers) as c:
                if resume:
                    net, history = distributed.resume(resume, X, T, client=c, epochs=epochs, sync_every=sync_every,
                                                      progress=progress_bar, callback=after_epoch)
                else:
                    history = distributed.train_config(net, X, T, config, c, sync_every, progress=progress_bar,
                                                       callback=after_epoch)
        elif resume:
            net, history = network.resume(resume, X, T, epochs=epochs, progress=progress_bar,
                                           callback=after_epoch)
        else:
            history = training.train(net, X, T, config, progress=progress_bar, callback=after_epoch)
    except KeyboardInterrupt as stop:
        interrupted = True
        net = getattr(stop, "net", net)             # (a resumed run trains the checkpoint's network)
        if config.checkpoint and hasattr(stop, "state"):     # the last finished epoch's state
            save_checkpoint(config.checkpoint, net, stop.config, stop.state)
    finally:
        bar.close()
    if save:
        net.save(save)
    if interrupted:
        checkpoint = config.checkpoint
        if checkpoint and os.path.exists(checkpoint):
            about = "; the checkpoint %s continues the run with --resume" % checkpoint
        elif checkpoint:
            about = "; no checkpoint was written, so --resume would start afresh"
        else:
            about = ""
        finished = done + len(accuracies)
        print("interrupted after %s of %d%s%s%s" % (
            _epochs(finished), epochs, " (%d in this session)" % len(accuracies) if done else "",
            "; saved what was trained to %s" % save if save else "", about), flush=True)
    return net, history, accuracies, interrupted


def _rates(text):
    """--dropout: one rate, or a comma-separated list of them."""
    try:
        rates = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("give a rate, or one per hidden layer, separated by commas") from None
    if not rates:
        raise argparse.ArgumentTypeError("give a rate, or one per hidden layer, separated by commas")
    return rates[0] if len(rates) == 1 else rates


def _setting(key):
    return lambda net, config, state: getattr(config, key)


# train's options that a resumed run takes from its checkpoint, and how to read each there
RESUMED = {
    "hidden": lambda net, config, state: net.sizes[1:-1],
    "activation": lambda net, config, state: net.activations[:-1],
    "output": lambda net, config, state: net.output,
    "loss": lambda net, config, state: net.loss_name,
    "init": lambda net, config, state: net.init,
    "propagate": lambda net, config, state: net.propagate,
    "no_bias": lambda net, config, state: not net.bias,
    "dtype": lambda net, config, state: str(net.dtype),
    "optimizer": lambda net, config, state: state.optimizer.rule,
    "lr": lambda net, config, state: state.optimizer.lr,
    "momentum": lambda net, config, state: state.optimizer.momentum,
    "schedule": lambda net, config, state: state.schedule.name,
    **{key: _setting(key) for key in ("batch_size", "l2", "l1", "max_norm", "dropout", "input_noise", "clip",
                                      "n_iter_no_change", "tol", "target_loss",
                                      "checkpoint_every", "backend", "validation_fraction")},
}


def run_config(args):
    """The RunConfig of train's options."""
    return RunConfig(
        epochs=args.epochs, batch_size="auto" if args.batch_size is None else args.batch_size, l2=args.l2,
        l1=args.l1, max_norm=args.max_norm, dropout=args.dropout, input_noise=args.input_noise,
        backend=args.backend,
        optimizer=Optimizer(args.optimizer, momentum=args.momentum,
                            lr=default_lr(args.optimizer) if args.lr is None else args.lr),
        schedule=None if args.schedule == "constant" else args.schedule, clip=args.clip,
        validation_fraction=args.validation_fraction, n_iter_no_change=args.n_iter_no_change,
        tol=args.tol, target_loss=args.target_loss, checkpoint=args.checkpoint,
        checkpoint_every=args.checkpoint_every)


def _given(parser, argv):
    """The dests of the options that argv names explicitly."""
    given = set()
    for action in parser._actions:
        for option in action.option_strings:
            if any(token == option or token.startswith(option + "=") for token in argv):
                given.add(action.dest)
    return given


def check_resumed_options(args, path):
    """Refuse a --resume whose explicit options differ from the checkpoint's run (only
    --epochs, --save, --plot-history and the progress display may change), or that would
    train nothing (the run is done, or --epochs is not past its epochs); say that --seed
    is not used. Returns the checkpoint's RunState."""
    saved = load_checkpoint(path)
    net = saved[0]
    given = getattr(args, "given", set())
    changed = []
    for key in RESUMED:
        if key not in given:
            continue
        value = getattr(args, key)
        if key == "activation" and isinstance(value, str):
            value = [value] * (len(net.sizes) - 2)
        recorded = RESUMED[key](*saved)
        if value != recorded:
            option = "--" + key.replace("_", "-")
            changed.append("%s %s (the checkpoint's: %s)" % (option, _shown(value), _shown(recorded)))
    if changed:
        raise ValueError("--resume continues the run in %s with its own settings; this command "
                         "changes %s. Drop those options to continue the run (only --epochs may "
                         "change), or give another --checkpoint to start a new one"
                         % (path, "; ".join(changed)))
    if "seed" in given:
        print("note: --seed is not used: a resumed run continues from its checkpoint's random state")
    state = saved[2]
    if state.stopped in ("no improvement", "target loss"):
        raise ValueError("the run in %s stopped after %s (%s): --resume has nothing to continue. "
                         "fastbp evaluate %s scores it; give another --checkpoint to start a new run"
                         % (path, _epochs(state.epoch), state.stopped, path))
    if args.epochs <= state.epoch:
        raise ValueError("the run in %s has finished %s, and --epochs is the run's new total (%d): "
                         "give --epochs more than %d to train on" % (path, _epochs(state.epoch), args.epochs,
                                                                    state.epoch))
    return state


def _shown(value):
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ",".join(map(str, value))
    return "(none)" if value is None else str(value)


def check_train_options(args):
    """What the parser cannot see: options that the chosen optimizer ignores, and output
    paths that cannot be written (before any training, not after)."""
    given = getattr(args, "given", set())
    if "momentum" in given and "momentum" not in RULES[args.optimizer].hyper:
        raise ValueError("--momentum is for --optimizer momentum or nesterov; --optimizer %s does not "
                         "use it" % args.optimizer)
    for option in ("save", "checkpoint", "plot_history"):
        if getattr(args, option):
            io.check_writable(getattr(args, option), "--" + option.replace("_", "-"))


def cmd_train(args):
    if args.plot_history:
        require_matplotlib("--plot-history")
    config = run_config(args)                # (every option checked before any data is read)
    check_train_options(args)
    state = None
    if args.resume and not args.checkpoint:
        raise ValueError("--resume continues the run in --checkpoint PATH; give that too")
    if args.resume and os.path.exists(args.checkpoint):
        state = check_resumed_options(args, args.checkpoint)
    elif args.resume:
        print("note: no checkpoint at %s yet, so this starts a new run (--resume continues it "
              "from there after a stop)" % args.checkpoint)
    X, y, X_test, y_test, description = load_data(args.data, args.data_dir, args.subset,
                                                   args.preprocess,
                                                   dtype=args.dtype)   # converted once, not per epoch
    n_classes = int(max(y.max(), y_test.max())) + 1
    net = Network([X.shape[1]] + args.hidden + [n_classes], activation=args.activation,
                  output=args.output, loss=args.loss, bias=not args.no_bias, init=args.init,
                  propagate=args.propagate, seed=args.seed, dtype=args.dtype)
    resume = None
    if state is not None:
        resume = args.checkpoint
        net = network.load(resume)
    held_out = held_out_rows(state, config, net, y)
    print("%s %r on %s: %d training samples%s, %d test" % (
        "resuming (after %s)" % _epochs(state.epoch) if resume else "training", net, description,
        len(X) - held_out, " (and %d held out for validation)" % held_out if held_out else "", len(X_test)))
    try:
        cluster = (args.scheduler, args.workers, args.sync_every) if args.workers or args.scheduler else None
        net, history, accuracies, interrupted = fit(
            net, X, targets_for(net, y, args.preprocess), X_test, y_test, config,
            progress=not args.no_progress, save=args.save, resume=resume, cluster=cluster,
            done=state.epoch if state else 0, train_rows=len(X) - held_out)
    except TrainingDiverged as error:
        print("error: %s" % error, file=sys.stderr)
        if args.save:
            net.save(args.save)
            print("saved the last good weights to %s" % args.save, file=sys.stderr)
        return 1
    if interrupted:
        if args.checkpoint and os.path.exists(args.checkpoint):
            print("  " + resume_command(args), flush=True)
        return EXIT_INTERRUPTED
    if args.plot_history:
        plot_history(history, args.plot_history)
    seconds = history["seconds"][state.epoch if state else 0:]        # this session's epochs
    timing = ("%.2f s per epoch (median of %d)" % (statistics.median(seconds), len(seconds)) if seconds
              else "no epochs trained")
    print("test accuracy %.4f after %s (stopped: %s); %s%s"
          % (accuracy(net, X_test, y_test), _epochs(len(history["seconds"])), history["stopped"], timing,
             "; saved to %s" % args.save if args.save else ""))
    return 0


def resume_command(args):
    """The command line that continues this train command's run from its checkpoint."""
    argv = list(getattr(args, "argv", ["train"]))
    return " ".join(shlex.quote(a) for a in ["fastbp"] + argv + ([] if args.resume else ["--resume"]))


def held_out_rows(state, config, net, y):
    """How many of the training set's rows a run holds out for validation."""
    if state is not None:
        return 0 if state.val_rows is None else int(state.val_rows.size)
    if config.validation_fraction is None:
        return 0
    labels = y if training.is_classifier(net) else None
    return training.validation_size(len(y), config.validation_fraction, labels)


def confusion_matrix(y, predicted, n_classes):
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (y, predicted), 1)
    return matrix


def cmd_evaluate(args):
    net = network.load(args.model)
    _, _, X_test, y_test, description = load_data(args.data, args.data_dir, args.subset, args.preprocess)
    predicted = net.predict(X_test).argmax(axis=1)
    n = net.sizes[-1]
    print("%s on %s test split (%d samples): accuracy %.4f"
          % (args.model, description, len(y_test), np.mean(predicted == y_test)))
    if network.read_record(args.model)[1]["format"] == io.CHECKPOINT:
        state = load_checkpoint(args.model)[2]
        best = (" The run's best epoch by validation loss was %d: its weights are what train --save "
                "wrote at the end." % state.best_epoch if state.best is not None else "")
        print("(a training checkpoint: these are the weights after its last finished epoch, %d.%s)"
              % (state.epoch, best))
    names = datasets.FASHION_MNIST_CLASSES if args.data == "fashion-mnist" and n == 10 else None
    matrix = confusion_matrix(y_test, predicted, n)
    print("confusion matrix (rows: true class, columns: predicted)")
    labels = ["%d %s" % (k, names[k]) if names else str(k) for k in range(n)]
    width = max(map(len, labels))
    print(" " * width + " " + " ".join("%5d" % k for k in range(n)))
    for k in range(n):
        print(labels[k].ljust(width) + " " + " ".join("%5d" % v for v in matrix[k]))
    return 0


def cmd_demo(args):
    from .bench import epoch_seconds, seed000_network
    try:
        X, y, X_test, y_test, description = load_data("fashion-mnist", args.data_dir, args.subset,
                                                       "offset")
    except datasets.DataError as error:
        if args.data_dir is not None or os.environ.get("FASTBP_DATA"):
            raise                           # a directory the user named: never passed over
        print("Fashion-MNIST is not installed here: %s\nRunning on a generated data set instead."
              % error)
        X, y, X_test, y_test, description = load_data("synthetic", None, args.subset, "offset")
    net = seed000_network(n_in=X.shape[1], hidden=args.hidden)
    T = targets_for(net, y, "offset")
    print("fastbp demo: seed 000's network %s (sigmoid, mse, no biases, the book's error "
          "propagation), per-sample SGD in file order as the seed does, lr %g, on %s: %d "
          "training and %d test samples"
          % ("-".join(map(str, net.sizes)), args.lr, description, len(X), len(X_test)))
    config = RunConfig(epochs=args.epochs, lr=args.lr, batch_size=1, shuffle=False, diagnostics=False)
    _, history, accuracies, interrupted = fit(net, X, T, X_test, y_test, config, progress=not args.no_progress)
    if interrupted:
        return EXIT_INTERRUPTED
    seconds = history["seconds"]
    if not args.no_progress:            # (without the bar, fit printed these already)
        for epoch, (s, a) in enumerate(zip(seconds, accuracies)):
            print("epoch %d: test accuracy %.4f, %.2f s" % (epoch + 1, a, s))
    n = min(args.reference_samples, len(X))
    slice_X, slice_T = X[:n], T[:n]
    ref = epoch_seconds(seed000_network(n_in=X.shape[1], hidden=args.hidden), slice_X, slice_T, "numpy", 3)
    fast = epoch_seconds(seed000_network(n_in=X.shape[1], hidden=args.hidden), slice_X, slice_T, "numba", 3)
    print("test accuracy %.4f after %d epochs; %.2f s per epoch (median)"
          % (accuracies[-1], len(seconds), statistics.median(seconds)))
    print("speedup over the NumPy reference on the first %d training samples (median of 3): "
          "reference %.3f s, kernels %.3f s: %.1fx" % (n, ref, fast, ref / fast))
    return 0


def cmd_seed001(args):
    from .experiments import SEED001_SECONDS, seed001
    from .plot import plot_seed001
    if args.plot:
        require_matplotlib("--plot")
        io.check_writable(args.plot, "--plot")
    results = []
    for activation in args.activation.split(","):
        r = seed001(activation, target=args.target, max_steps=args.max_steps, seed=args.seed)
        results.append(r)
        print("%-7s hidden layers: %s after %d steps in %.2f s (the seed: %.0f s); final mean loss %.5f"
              % (activation, "reached %g" % args.target if r["converged"] else "NOT below %g" % args.target,
                 r["steps"], r["seconds"], SEED001_SECONDS.get(activation, float("nan")), r["final_loss"]))
        h = r["history"]
        first, last = h["mean_abs_delta"][0], h["mean_abs_delta"][-1]
        print("        mean |error term| per layer (input side first) after %d steps: %s; at the end: %s"
              % (h["steps"][0], " ".join("%.2e" % v for v in first), " ".join("%.2e" % v for v in last)))
    if args.plot:
        plot_seed001(results, args.plot)
        print("wrote %s" % args.plot)
    return 0 if all(r["converged"] for r in results) else 1


def cmd_info(args):
    from .info import info, report
    facts = info()
    print(json.dumps(facts, indent=1) if args.json else "\n".join(report(facts)))
    return 0


def cmd_warm_up(args):
    def line(case):
        print("%-8s %-10s %-6s %s in %.1f s" % (case["dtype"], case["mode"], case["rows"],
                                                "compiled" if case["compiled"] else "already cached",
                                                case["seconds"]), flush=True)
    start = time.perf_counter()
    done = warmup.warm_up(args.dtypes, args.modes, sparse=not args.no_sparse, report=None if args.json else line)
    if args.json:
        print(json.dumps(done, indent=1))
    else:
        from .kernels import batch_epoch, cache_dir
        print("%d of %d compiled in %.1f s; later processes load them from Numba's cache in %s"
              % (sum(case["compiled"] for case in done), len(done), time.perf_counter() - start,
                 cache_dir(batch_epoch)))
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="fastbp", description="Train fully-connected networks "
                                     "by backpropagation, fast.")
    parser.add_argument("--version", action="version", version="fastbp %s" % __version__)
    sub = parser.add_subparsers(dest="command", required=True)

    def data_options(p, default="fashion-mnist"):
        p.add_argument("--data", default=default, choices=["fashion-mnist", "mnist", "synthetic"],
                       help="the data set (default %s; synthetic: generated, for trying things)" % default)
        p.add_argument("--data-dir", help="directory of the IDX files; it must hold them "
                       "(default: $FASTBP_DATA, else the Debian package's, else ~/.cache/fastbp)")
        p.add_argument("--subset", type=_positive, help="use the first N training samples, and the "
                       "first N/6 test samples (at least 1) for the test accuracy")
        p.add_argument("--preprocess", default="unit", choices=list(datasets.SCALINGS),
                       type=lambda name: datasets.ALIASES["scaling"].get(name, name),
                       help="unit: pixels /255 and one-hot targets; offset: seed 000's x/255*0.99+0.01 "
                       "and 0.01/0.99 targets (seed000: offset's old name)")

    p = sub.add_parser("train", help="train a network on a data set", allow_abbrev=False)
    parser.train_parser = p               # (main reads which options a command line gives)
    data_options(p)
    p.add_argument("--hidden", type=_ints, default=[200], help="hidden sizes, e.g. 200 or 256,128")
    p.add_argument("--activation", type=_names, default="sigmoid",
                   help="hidden activation, one for all or one per layer (e.g. relu,tanh): %s"
                        % ", ".join(HIDDEN_ACTIVATIONS))
    p.add_argument("--output", type=_one_of("output", OUTPUT_ACTIVATIONS), default="sigmoid",
                   help="output activation: %s" % ", ".join(OUTPUT_ACTIVATIONS))
    p.add_argument("--loss", type=_one_of("loss", tuple(LOSSES)), default="mse",
                   help="%s (cross_entropy with --output softmax, binary_cross_entropy with "
                        "sigmoid)" % ", ".join(LOSSES))
    p.add_argument("--init", type=_one_of("init", tuple(INITIALISERS)), default="normal",
                   help="initial weights: %s" % ", ".join(INITIALISERS))
    p.add_argument("--propagate", default="delta", choices=["delta", "error"],
                   help="delta: the true gradient; error: seed 000's book network")
    p.add_argument("--no-bias", action="store_true", help="layers without biases (seed 000)")
    p.add_argument("--optimizer", default="sgd", choices=RULES, help="the update rule: %s" % ", ".join(RULES))
    p.add_argument("--lr", type=float, help="learning rate (default 0.1; Adam's 0.001)")
    p.add_argument("--momentum", type=float, default=0.9, help="for momentum and nesterov")
    p.add_argument("--schedule", default="constant", choices=list(SCHEDULES),
                   help="the learning rate's schedule, with its default settings")
    p.add_argument("--clip", type=float, help="cap each step's gradient norm")
    p.add_argument("--epochs", type=int, default=1, help="epochs to train (default 1); with "
                   "--resume, the run's new total")
    p.add_argument("--batch-size", type=int,
                   help="samples per step: 1 is per-sample SGD (the default), larger mini-batches; the "
                   "full-batch rules (rprop, irprop+) take the whole set and no --batch-size")
    p.add_argument("--l2", type=float, default=0.0, help="L2 penalty on the weights (default 0)")
    p.add_argument("--l1", type=float, default=0.0, help="L1 penalty on the weights (default 0)")
    p.add_argument("--max-norm", type=float, help="after each step, scale each hidden unit's incoming "
                   "weights down to this norm where they are longer (default: none)")
    p.add_argument("--dropout", type=_rates, help="dropout rate of the hidden layers while training: one, or "
                   "a comma-separated list with one per hidden layer (default: none)")
    p.add_argument("--input-noise", type=float, default=0.0,
                   help="standard deviation of Gaussian noise added to training inputs (default 0)")
    p.add_argument("--validation-fraction", type=float,
                   help="hold out this fraction of the training set; end with its best epoch")
    p.add_argument("--n-iter-no-change", type=int,
                   help="stop after this many epochs without improvement (of the validation "
                        "loss, else the training loss) by more than --tol")
    p.add_argument("--tol", type=float, default=1e-4,
                   help="the improvement --n-iter-no-change counts (default 1e-4)")
    p.add_argument("--target-loss", type=float, help="stop once an epoch's loss is below this")
    p.add_argument("--checkpoint", help="write the run's state here (.npz) every --checkpoint-every epochs")
    p.add_argument("--checkpoint-every", type=int, default=1, help="epochs between checkpoints (default 1)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --checkpoint if it exists (same data options)")
    p.add_argument("--plot-history", help="write a PNG of the per-epoch history (needs matplotlib)")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                   help="the precision the network computes in (default float64)")
    p.add_argument("--backend", default="numba", choices=list(BACKENDS),
                   help="numba: the compiled kernels (default); numpy: the reference")
    p.add_argument("--seed", type=int, default=0, help="seed of the initial weights and the "
                   "sample order (default 0)")
    p.add_argument("--save", help="write the trained model here (.npz)")
    p.add_argument("--no-progress", action="store_true", help="a line per epoch instead of a bar")
    p.add_argument("--workers", type=int, help="train data-parallel on a Dask LocalCluster of N worker "
                   "processes (fastbp.distributed; needs fastbp[dask])")
    p.add_argument("--scheduler", help="train data-parallel on the Dask cluster at this address "
                   "(tcp://host:8786)")
    p.add_argument("--sync-every", type=int, default=1,
                   help="with --workers or --scheduler: epochs between averaging rounds (default 1)")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("evaluate", help="accuracy and confusion matrix of a saved model")
    p.add_argument("model", help="a model file written by train --save (or Network.save), or a "
                   "training checkpoint (train --checkpoint: the weights of its last finished epoch)")
    data_options(p)
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("demo", help="seed 000's network on Fashion-MNIST, with its speedup")
    p.add_argument("--epochs", type=int, default=3, help="epochs of per-sample SGD (default 3)")
    p.add_argument("--hidden", type=int, default=200, help="hidden layer size (default 200)")
    p.add_argument("--lr", type=float, default=0.1, help="learning rate (default 0.1)")
    p.add_argument("--data-dir", help="directory of Fashion-MNIST's IDX files (default: "
                   "$FASTBP_DATA, else the Debian package's; without either, a generated set)")
    p.add_argument("--subset", type=_positive, help="use the first N training samples, and the "
                   "first N/6 test samples (at least 1)")
    p.add_argument("--reference-samples", type=int, default=2000,
                   help="time the NumPy reference and the kernels on this many samples (default 2000)")
    p.add_argument("--no-progress", action="store_true", help="a line per epoch instead of a bar")
    p.set_defaults(run=cmd_demo)

    p = sub.add_parser("seed001", help="seed 001's vanishing-gradient experiment")
    p.add_argument("--activation", default="sigmoid,relu",
                   help="hidden activations to run, comma-separated (default sigmoid,relu)")
    p.add_argument("--target", type=float, default=0.01,
                   help="stop once the mean loss of the last 1000 steps is below this")
    p.add_argument("--max-steps", type=int, default=5_000_000, help="give up after this many steps")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the weights")
    p.add_argument("--plot", help="write a PNG of loss and error terms (needs matplotlib)")
    p.set_defaults(run=cmd_seed001)

    p = sub.add_parser("info", help="versions, threads, BLAS, and Numba's cache: where it is, "
                       "whether it can be written, which kernels it holds")
    p.add_argument("--json", action="store_true", help="print it as JSON")
    p.set_defaults(run=cmd_info)

    p = sub.add_parser("warm-up", help="compile every training mode and predicting into Numba's cache, "
                       "ahead of the first fit (fastbp.warmup)")
    p.add_argument("--dtypes", type=_names_of("dtype", warmup.DTYPES), default=list(warmup.DTYPES),
                   help="comma-separated: %s (default both)" % ", ".join(warmup.DTYPES))
    p.add_argument("--modes", type=_names_of("mode", tuple(warmup.MODES)), default=list(warmup.MODES),
                   help="comma-separated: %s (default all)" % ", ".join(warmup.MODES))
    p.add_argument("--no-sparse", action="store_true", help="leave out the kernels for sparse (CSR) rows")
    p.add_argument("--json", action="store_true", help="print the cases as JSON")
    p.set_defaults(run=cmd_warm_up)

    p = sub.add_parser("bench", help="speed report: kernels vs the NumPy reference",
                       add_help=False)
    p.set_defaults(run=None)
    p = sub.add_parser("compare", help="Fashion-MNIST accuracy and time: fastbp's MLPClassifier "
                       "(default, tuned) and scikit-learn's", add_help=False)
    p.set_defaults(run=None)
    return parser


EXIT_BROKEN_PIPE = 128 + 13            # as a process killed by SIGPIPE


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _main(argv)
    except BrokenPipeError:               # the reader went away (fastbp ... | head): quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())   # nor complain when Python flushes at exit
        return EXIT_BROKEN_PIPE


def _main(argv):
    if argv[:1] == ["bench"]:                 # its own options: see fastbp.bench
        from .bench import main as bench_main
        bench_main(argv[1:])
        return 0
    if argv[:1] == ["compare"]:               # its own options: see fastbp.compare
        from .compare import main as compare_main
        compare_main(argv[1:])
        return 0
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        args.given = _given(parser.train_parser, argv[1:])
        args.argv = list(argv)
    try:
        return args.run(args)
    except BrokenPipeError:
        raise                               # (main's: quietly)
    except (datasets.DataError, ValueError, ImportError, OSError) as error:
        print("fastbp %s: error: %s" % (args.command, error), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
