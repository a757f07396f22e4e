"""The ``graphcomp`` command: train a built-in example, inspect a model file, manage the cache.

    graphcomp train mlp-digits [--epochs N] [--backend numba|numpy|cuda] [--plot PNG] [--save NPZ]
    graphcomp train autoencoder-digits --noise 0.3
    graphcomp inspect MODEL.py [--grad] [--format text|dot|svg] [-o FILE]
    graphcomp cache info|clear

Errors print one line and exit with status 1 (2 for a bad command line); ``--debug`` shows the
traceback instead.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

PROG = "graphcomp"


class CommandLineError(Exception):
    """A problem to report in one line (bad file, missing tool)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {PROG} --help)\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``graphcomp`` command."""
    from graphcomp import __version__
    from graphcomp.train.examples import EXAMPLES
    from graphcomp.train.examples.autoencoders import DEFAULT_NOISE

    parser = _Parser(prog=PROG, description="Compile computation graphs and their gradients "
                     "into fast native code.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    examples = ", ".join(f"{name} ({e.description})" for name, e in EXAMPLES.items())
    train = commands.add_parser("train", help="train a built-in example",
                                description=f"Train a built-in example: {examples}.")
    train.add_argument("example", metavar="EXAMPLE", help=" | ".join(EXAMPLES))
    train.add_argument("--epochs", type=int, default=None, help="number of epochs")
    train.add_argument("--backend", default=None,
                       help="numba, numpy or cuda (default: graphcomp's default backend)")
    train.add_argument("--seed", type=int, default=0, help="data split, init and shuffle seed")
    train.add_argument("--plot", metavar="PNG", help="write loss/accuracy curves (matplotlib)")
    train.add_argument("--save", metavar="NPZ", help="write a checkpoint of the trained model")
    noisy = ", ".join(name for name, e in EXAMPLES.items() if e.accepts_noise)
    train.add_argument("--noise", metavar="STD", type=float, nargs="?", const=DEFAULT_NOISE,
                       default=None, help=f"{noisy} only: train a denoising model on inputs with "
                       f"Gaussian noise of this standard deviation (default {DEFAULT_NOISE})")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--data", metavar="DIR", help="cnn-digits only: train a LeNet on the MNIST "
                       "IDX files in DIR (train-images-idx3-ubyte[.gz], ...)")
    train.add_argument("--compile-mode", choices=("background", "eager"), default="background",
                       help="background (default): train on numpy while numba compiles in "
                       "another process; eager: wait for the compiled code")

    inspect = commands.add_parser("inspect", help="print a model file's graph or adjoint graph",
                                  description="MODEL.py defines model() returning the loss, or "
                                  "(loss, params); print its graph (with --grad, the adjoint).")
    inspect.add_argument("model_file", metavar="MODEL.py")
    inspect.add_argument("--grad", action="store_true", help="include the gradient (adjoint)")
    inspect.add_argument("--format", choices=("text", "dot", "svg"), default="text")
    inspect.add_argument("-o", "--output", metavar="FILE", help="write to FILE, not stdout")

    cache = commands.add_parser("cache", help="show or clear the compiled-kernel cache")
    cache.add_argument("action", choices=("info", "clear"))
    return parser


def run() -> NoReturn:
    """The ``graphcomp`` command (and ``python -m graphcomp``): ``main``, then exit.

    The exit skips the interpreter's teardown once the ``atexit`` handlers have run and the
    output is flushed: after a training run, freeing numba's and LLVM's objects one by one
    took ~0.45 s (docs/performance.md, "Time to first step"), a sixth of a cold
    ``graphcomp train mlp-digits``. Files the command wrote are closed by then.
    """
    code = main()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more to say
            pass
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args([a for a in argv if a != "--debug"])
        return _COMMANDS[args.command](args)
    except KeyboardInterrupt:
        if debug:
            raise
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except Exception as exc:  # the one place that turns any error into a line
        if debug:
            raise
        sys.stderr.write(f"{PROG}: error: {_one_line(exc)}\n")
        return 1


def _one_line(exc: BaseException) -> str:
    from graphcomp.errors import GraphcompError

    message = " ".join(str(exc).split())
    if isinstance(exc, (GraphcompError, CommandLineError)):
        return message
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror or message}: {exc.filename!r}"
    return f"{type(exc).__name__}: {message}"


# ================================================================ train


def _train(args: argparse.Namespace) -> int:
    from graphcomp.train.examples import EXAMPLES, run_example

    if args.example not in EXAMPLES:
        raise CommandLineError(
            f"unknown example {args.example!r}; choose one of: {', '.join(EXAMPLES)}"
        )
    if args.epochs is not None and args.epochs < 1:
        raise CommandLineError(f"--epochs must be at least 1, got {args.epochs}")
    if args.noise is not None and not EXAMPLES[args.example].accepts_noise:
        takers = ", ".join(name for name, e in EXAMPLES.items() if e.accepts_noise)
        raise CommandLineError(f"--noise: {args.example} takes no noise (only {takers})")
    if args.noise is not None and not 0.0 < args.noise < float("inf"):
        raise CommandLineError(f"--noise must be a standard deviation > 0, got {args.noise}")
    _check_outputs(args)
    print(f"{args.example}: {EXAMPLES[args.example].description}", flush=True)
    result = run_example(args.example, epochs=args.epochs, backend=args.backend,
                         progress=not args.no_progress, seed=args.seed, save=args.save,
                         plot=args.plot, compile_mode=args.compile_mode, data=args.data,
                         noise=args.noise)
    print(format_summary(result, args))
    return 130 if result.history.stopped == "interrupted" else 0


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse unwritable --save and --plot paths (and --plot without matplotlib) before training."""
    from graphcomp.errors import FileFormatError
    from graphcomp.train.checkpoint import check_writable

    for option, path, what in (("--save", args.save, "checkpoint"), ("--plot", args.plot, "plot")):
        if path is None:
            continue
        try:
            check_writable(path, what)
        except FileFormatError as exc:
            raise CommandLineError(f"{option}: {exc}") from None
    if args.plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise CommandLineError(
            "--plot needs matplotlib: pip install matplotlib (or 'graphcomp[examples]')"
        )


def format_summary(result: Any, args: argparse.Namespace | None = None) -> str:
    """The closing lines of ``graphcomp train``."""
    history = result.history
    if result.interpreted:
        compiled = f"backend {result.backend}: interpreted, nothing to compile or cache"
    elif result.backend_at_end != result.backend:
        compiled = (f"backend {result.backend} compiling in another process; all "
                    f"{result.interpreted_steps} steps ran on numpy, and the compile goes on "
                    "to fill the cache for the next run")
    elif result.interpreted_steps:
        how = ("compiled in another process" if result.compiled_elsewhere
               else "loaded from the kernel cache in the background")
        compiled = (f"backend {result.backend} {how}; the first "
                    f"{result.interpreted_steps} steps ran on numpy")
    else:
        compiled = f"backend {result.backend}, cache {'hit' if result.cache_hit else 'miss'}"
    lines = []
    if history.stopped == "interrupted":
        lines.append(f"interrupted after {history.steps} steps; parameters are those of the "
                     "last finished step")
    lines += [
        result.headline,
        f"step time      {1e3 * result.step_seconds:.3f} ms median "
        f"({result.steps_per_second:,.0f} steps/s)",
        f"compile time   {result.compile_seconds:.2f} s ({compiled}; "
        f"first step {history.first_step_seconds:.2f} s)",
        f"wall time      {result.wall_seconds:.2f} s",
    ]
    lines += result.extra_lines
    if args is not None and args.save:
        lines.append(f"saved          {args.save}")
    if args is not None and args.plot:
        lines.append(f"plot           {args.plot}")
    return "\n".join(lines)


# ================================================================ inspect


def load_model_file(path: str) -> tuple[Any, list[Any]]:
    """Run ``path`` and call its ``model()``: returns (loss, params), built in a fresh graph."""
    if not os.path.isfile(path):
        raise CommandLineError(f"no such model file: {path!r}")
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(f"graphcomp_model_{name}", path)
    if spec is None or spec.loader is None:
        raise CommandLineError(f"cannot load {path!r} as a Python file")
    module = importlib.util.module_from_spec(spec)
    folder = os.path.dirname(os.path.abspath(path))
    sys.path.insert(0, folder)  # so the model file can import its neighbours, as a script can
    try:
        return _call_model(path, name, spec, module)
    finally:
        sys.path.remove(folder)


def _call_model(path: str, name: str, spec: Any, module: Any) -> tuple[Any, list[Any]]:
    from graphcomp.ir import Graph
    from graphcomp.ops import Parameter, Tensor

    with Graph(name=name):
        try:
            spec.loader.exec_module(module)
        except SystemExit as exc:
            raise CommandLineError(f"model file {path} {_exited(exc)} while loading") from exc
        except Exception as exc:
            raise CommandLineError(f"{path} failed to run: {_one_line(exc)}") from exc
        if not callable(getattr(module, "model", None)):
            raise CommandLineError(f"{path} defines no function model() returning the loss")
        try:
            result = module.model()
        except SystemExit as exc:
            raise CommandLineError(f"model file {path} {_exited(exc)} in model()") from exc
        except Exception as exc:
            raise CommandLineError(f"{path}: model() failed: {_one_line(exc)}") from exc
    loss, params = (result[0], list(result[1])) if isinstance(result, tuple) else (result, None)
    if not isinstance(loss, Tensor):
        raise CommandLineError(
            f"{path}: model() must return the loss tensor, or (loss, params); got {result!r}"
        )
    if params is None:
        ancestors = loss.graph.ancestors([loss.node])
        params = [Parameter(n) for n in loss.graph.nodes() if n.op == "parameter"
                  and n.id in ancestors]
    return loss, params


def _exited(exc: SystemExit) -> str:
    """'exited with status 3' for sys.exit(3); sys.exit("text") exits with status 1."""
    if exc.code is None or isinstance(exc.code, int):
        return f"exited with status {exc.code or 0}"
    return f"exited with status 1 ({' '.join(str(exc.code).split())})"


def _inspect(args: argparse.Namespace) -> int:
    from graphcomp.autodiff import grad
    from graphcomp.inspect.listing import format as format_listing

    loss, params = load_model_file(args.model_file)
    outputs = [loss]
    if args.grad:
        if not params:
            raise CommandLineError(f"{args.model_file}: the loss depends on no parameter")
        outputs += grad(loss, params)
    if args.format == "text":
        text = format_listing(outputs) + "\n"
    else:
        text = _to_dot(outputs)
        if args.format == "svg":
            text = _dot_to_svg(text)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def _to_dot(outputs: list[Any]) -> str:
    try:
        dot_module = importlib.import_module("graphcomp.inspect.dot")
    except ImportError:
        raise CommandLineError("DOT export is not available in this graphcomp") from None
    text = dot_module.to_dot(outputs)
    return text if text.endswith("\n") else text + "\n"


def _dot_to_svg(dot_text: str) -> str:
    dot = shutil.which("dot")
    if dot is None:
        raise CommandLineError(
            "--format svg needs Graphviz's dot program on PATH (e.g. apt install graphviz); "
            "--format dot writes the DOT text instead"
        )
    done = subprocess.run([dot, "-Tsvg"], input=dot_text, capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise CommandLineError(f"dot -Tsvg failed: {done.stderr.strip()}")
    return done.stdout


# ================================================================ cache


def _cache(args: argparse.Namespace) -> int:
    try:
        cache = importlib.import_module("graphcomp.backends.numba.cache")
    except ImportError as exc:
        raise CommandLineError(f"the Numba kernel cache is not available ({exc})") from None
    if args.action == "info":
        info = cache.cache_info()
        size = int(info.get("bytes", 0))
        print(f"path     {info.get('path', cache.cache_dir())}")
        print(f"entries  {info.get('entries', 0)}")
        print(f"size     {_human_bytes(size)}")
    else:
        removed = cache.clear_cache()
        print(f"removed {removed} file(s) from {cache.cache_dir()}")
    return 0


def _human_bytes(size: int) -> str:
    if size < 1024:
        return f"{size} bytes"
    if size < 1024**2:
        return f"{size / 1024:.1f} KiB"
    return f"{size / 1024**2:.1f} MiB"


_COMMANDS = {"train": _train, "inspect": _inspect, "cache": _cache}

if __name__ == "__main__":
    sys.exit(main())
