"""The ``sherpa-latent`` command.

Sub-commands: ``report`` (a summary per spectrum; ``--output`` FITS table, ``--plot`` PNG
per spectrum), ``encode`` (a catalogue run over many files: worker processes, progress
bar, resumable, ``--regions`` DS9 file), ``extract`` (inside CIAO: ``specextract`` then a
report), ``evaluate`` and ``train``.

Arguments are accepted as flags (``--json``) or CIAO-style ``key=value`` pairs
(``json=yes``), and ``@file.lis`` stacks expand to the files they list, one per line,
relative to the stack file's folder (``@-file.lis`` keeps them relative to the current
folder), as CIAO tools do. Outputs are never overwritten without ``--clobber``
(``clobber=yes``).

An ``encode`` run records each finished batch in ``OUTPUT.partial.jsonl`` beside the
output; after an interruption the same command goes on from there, and the progress
file is removed once the output is written. The run holds a lock on its output
(``OUTPUT.lock``, see :func:`~sherpa_latent.fileio.output_lock`), so a second run on the
same output refuses at once instead of mixing its rows into the first one's.

A user's mistake (a missing or read-only folder, an output that exists without clobber,
a bad argument, a bad network or stack file) ends the command with a non-zero status and
one line on stderr naming the thing to fix, never a traceback. ``encode`` and ``report``
check all their outputs (table, region file, plot folder and its PNG files) before any
work starts. JSON output is strict: NaN and infinities are written as null.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .errors import OutputError, StackFileError

__all__ = ["main", "expand_stacks", "ciao_style_arguments"]

_TRUE = {"yes", "y", "true", "1", "on"}
_FALSE = {"no", "n", "false", "0", "off"}
_MAX_STACK_DEPTH = 64


def _fail(message: str) -> NoReturn:
    """End the command with status 1 and one line on stderr."""
    raise SystemExit("sherpa-latent: " + " ".join(str(message).split()))


def expand_stacks(items: Sequence[str]) -> list[str]:
    """Expand ``@file.lis`` stacks into the files they name.

    Parameters
    ----------
    items : sequence of str
        File names, some of which may be stacks. Blank lines and lines starting with
        ``#`` in a stack are skipped; a stack may name further stacks.

    Returns
    -------
    list of str

    Raises
    ------
    sherpa_latent.errors.StackFileError
        A stack cannot be read, names no files, or includes itself (directly or through
        other stacks).
    """
    return _expand([(item, "") for item in items], ())


def _expand(items: Sequence[tuple[str, str]], within: tuple[tuple[str, str], ...]) -> list[str]:
    """Expand (item, where it was written) pairs; ``within`` holds the stacks being read."""
    out: list[str] = []
    for item, where in items:
        if not item.startswith("@"):
            out.append(item)
            continue
        relative_to_cwd = item.startswith("@-")
        stack = item[2:] if relative_to_cwd else item[1:]
        key = os.path.realpath(stack)
        keys = [k for k, _ in within]
        if key in keys:
            loop = " -> ".join(shown for _, shown in within[keys.index(key) :])
            raise StackFileError(
                stack, f"{item}{where} includes itself ({loop} -> {item}): remove that line"
            )
        if len(within) >= _MAX_STACK_DEPTH:
            deep = f"{item}{where}: stacks nested over {_MAX_STACK_DEPTH} deep"
            raise StackFileError(stack, deep)
        try:
            with open(stack, encoding="utf-8") as handle:
                lines = [ln.strip() for ln in handle]
        except OSError as exc:
            raise StackFileError(
                stack, f"{stack}: cannot read stack file ({exc.strerror})"
            ) from None
        except UnicodeDecodeError:
            raise StackFileError(stack, f"{stack}: stack file is not UTF-8 text") from None
        base = os.path.dirname(stack)
        entries = []
        for number, line in enumerate(lines, 1):
            if not line or line.startswith("#"):
                continue
            if not relative_to_cwd and not os.path.isabs(line) and not line.startswith("@"):
                line = os.path.join(base, line)
            entries.append((line, f" (line {number} of {stack})"))
        if not entries:
            raise StackFileError(stack, f"no files in {item} (only blank lines and comments)")
        out.extend(_expand(entries, (*within, (key, item))))
    return out


def ciao_style_arguments(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """Turn ``key=value`` arguments into the flags the parser knows.

    ``clobber=yes`` becomes ``--clobber``; ``outfile=x.fits`` becomes ``--outfile x.fits``;
    ``infile=@a.lis`` becomes the (first) positional ``@a.lis``, and any positional can be
    named by its own name (``region=src.reg``). Unknown keys are left alone, so that
    argparse reports them.
    """
    options = {}
    takes_value = set()
    positionals: list[argparse.Action] = []
    for action in parser._actions:  # the parser's own table of options
        if not action.option_strings:
            positionals.append(action)
        for flag in action.option_strings:
            if action.nargs != 0:
                takes_value.add(flag)
            if flag.startswith("--"):
                options[flag[2:].replace("-", "_")] = (flag, action)
    aliases = {"infile", "infiles", "file", "files"}
    if positionals:
        aliases.add(positionals[0].dest)
    named = {action.dest for action in positionals[1:]} - aliases
    keyed: dict[str, list[str]] = {}
    out: list[str] = []
    opts: list[str] = []
    plain: list[str] = []
    value_due = False
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.replace("-", "_")
        if value_due or arg.startswith("-"):
            opts.append(arg)
            out.append(arg)
            value_due = arg in takes_value
        elif not sep or os.path.exists(arg):
            plain.append(arg)
            out.append(arg)
        elif key in aliases:
            plain.append(value)
            out.append(value)
        elif key in named:
            keyed.setdefault(key, []).append(value)
        elif key in options:
            flag, action = options[key]
            if action.nargs == 0:
                if value.lower() in _TRUE:
                    opts.append(flag)
                    out.append(flag)
                elif value.lower() not in _FALSE:
                    raise SystemExit(f"sherpa-latent: {key}={value}: expected yes or no")
            else:
                opts += [flag, value]
                out += [flag, value]
        else:
            plain.append(arg)
            out.append(arg)
    if not keyed:
        return out
    # Named positionals: put every positional in the parser's order, then the options.
    ordered: list[str] = []
    for action in positionals:
        if action.dest in keyed:
            ordered += keyed[action.dest]
        elif action.nargs in ("+", "*"):
            ordered += plain
            plain = []
        elif plain:
            ordered.append(plain.pop(0))
    return ordered + plain + opts


def _quiet_libraries() -> None:
    """Keep library chatter (Sherpa's and astropy's) off the terminal."""
    warnings.simplefilter("ignore")
    logging.getLogger("sherpa").setLevel(logging.ERROR)
    logging.getLogger("astropy").setLevel(logging.ERROR)


def _one_line(exc: BaseException) -> str:
    """An exception as one line: ``file: problem`` for an OSError that names its file."""
    if isinstance(exc, OSError) and exc.filename and exc.strerror:
        text = f"{exc.filename}: {exc.strerror}"
    else:
        text = str(exc)
    return " ".join(text.split()) or type(exc).__name__


def _load_encoder(name: str | None, required: bool):
    """The network for a command; None when the default is not installed and not required."""
    from sherpa.utils.err import SherpaErr

    from .inference import load_encoder

    if name is None or name == "none":
        return None
    try:
        return load_encoder(name)
    except (SherpaErr, OSError, ValueError) as exc:  # NetworkFileError and kin
        message = _one_line(exc)
        if name != "default" and str(name) not in message:
            message = f"network {name}: {message}"
        if required or name != "default":
            _fail(message)
        print(f"sherpa-latent: {message}; latent results left out", file=sys.stderr)
        return None


def _report_one(path: str, classical: bool, encoder):
    """Load and report one file: (spectrum, report), or (None, error dict) for a bad file."""
    from .report import error_message, report_spectrum
    from .spectrum import load_spectrum

    spectrum = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            spectrum = load_spectrum(path)
            return spectrum, report_spectrum(spectrum, classical=classical, encoder=encoder)
    except Exception as exc:  # noqa: BLE001 - a batch goes on past any bad file
        return spectrum, {"file": path, "error": error_message(path, exc)}


def _plotting_module():
    """``sherpa_latent.plotting``, or a one-line exit when this installation lacks it."""
    try:
        from . import plotting
    except ImportError as exc:
        raise SystemExit(
            "sherpa-latent: --plot needs sherpa_latent.plotting, which cannot be imported "
            f"here ({exc})"
        ) from None
    missing = [
        name for name in ("plot_latent_fit", "plot_latent_space") if not hasattr(plotting, name)
    ]
    if missing:
        raise SystemExit(
            f"sherpa-latent: --plot needs sherpa_latent.plotting.{missing[0]}, which this "
            "version does not have"
        )
    return plotting


def _png_name(path: str, used: set[str]) -> str:
    """A PNG name for a spectrum file, unique within one run."""
    stem = os.path.basename(path)
    for suffix in (".gz", ".fits", ".fit", ".pha", ".pi"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    stem = stem or "spectrum"
    name, k = stem, 1
    while name in used:
        k += 1
        name = f"{stem}_{k}"
    used.add(name)
    return name + ".png"


def _plot_report(plotting, spectrum, report, encoder, out: str, clobber: bool) -> None:
    """One PNG: the data with both folded models, beside its place in latent space."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(17.0, 6.5))
    fit_ax, latent_ax = fig.subplots(1, 2)
    plotting.plot_latent_fit(
        spectrum, report.latent, encoder, classical=report.classical, ax=fit_ax
    )
    plotting.plot_latent_space([report.latent], encoder.clusters, ax=latent_ax)
    from .fileio import atomic_output

    with atomic_output(out, clobber=clobber) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    return os.path.realpath(a) == os.path.realpath(b)


def _check_report_outputs(files: Sequence[str], args: argparse.Namespace) -> dict[int, str]:
    """Refuse, before any work, outputs of ``report`` that could not be written.

    Returns the PNG file of each input file (by position) when ``--plot`` is given.
    """
    from .fileio import check_output, check_output_folder

    output, plot_dir = getattr(args, "output", None), getattr(args, "plot", None)
    clobber = getattr(args, "clobber", False)
    if output:
        check_output(output, clobber=clobber)
    pngs: dict[int, str] = {}
    if plot_dir:
        check_output_folder(plot_dir)
        used: set[str] = set()
        pngs = {i: os.path.join(plot_dir, _png_name(p, used)) for i, p in enumerate(files)}
        existing = [png for png in pngs.values() if os.path.lexists(png)]
        if existing and not clobber:
            more = f" (and {len(existing) - 1} more PNG files)" if len(existing) > 1 else ""
            raise OutputError(existing[0], f"exists and clobber is not set{more}")
    return pngs


def _cmd_report(args: argparse.Namespace) -> int:
    from sherpa.utils.err import SherpaErr

    from .catalogue import report_table, write_table
    from .fileio import strict_json

    files = expand_stacks(args.files)
    output, plot_dir = getattr(args, "output", None), getattr(args, "plot", None)
    clobber = getattr(args, "clobber", False)
    pngs = _check_report_outputs(files, args)
    plotting = _plotting_module() if plot_dir else None
    encoder = _load_encoder(None if args.no_latent else args.network, required=bool(plot_dir))
    if plot_dir and encoder is None:
        raise SystemExit(
            "sherpa-latent: --plot draws the latent fit and latent space, so it needs the "
            "network; leave out --no-latent"
        )
    if plot_dir:
        os.makedirs(plot_dir, exist_ok=True)
    failed = 0
    rows = []
    for i, path in enumerate(files):
        spectrum, result = _report_one(path, not args.no_fit, encoder)
        rows.append(result)
        if isinstance(result, dict):
            failed += 1
            print(f"sherpa-latent: {result['error']}", file=sys.stderr)
            if args.json:
                print(strict_json(result), flush=True)
            continue
        if args.json:
            print(result.to_json(), flush=True)
        else:
            print(result.to_text() + "\n", flush=True)
        if plotting is not None:
            try:
                _plot_report(plotting, spectrum, result, encoder, pngs[i], clobber)
            except Exception as exc:  # noqa: BLE001 - one failed plot never stops the batch
                failed += 1
                print(f"sherpa-latent: {path}: plot failed: {_one_line(exc)}", file=sys.stderr)
    if output:
        try:
            write_table(report_table(rows, encoder), output, clobber=clobber)
        except (OSError, SherpaErr) as exc:
            print(f"sherpa-latent: {output}: cannot write ({_one_line(exc)})", file=sys.stderr)
            return 1
    return 1 if failed else 0


def _check_encode_outputs(args: argparse.Namespace) -> None:
    """Refuse, before any work, outputs of ``encode`` that could not be written."""
    from .fileio import check_output

    check_output(args.output, clobber=args.clobber)
    if args.regions:
        check_output(args.regions, clobber=args.clobber)
        if _same_file(args.regions, args.output):
            raise OutputError(args.regions, "is the output table too; give the regions a name")


def _cmd_encode(args: argparse.Namespace) -> int:
    from .fileio import output_lock

    if args.workers < 1 or args.batch_size < 1:
        _fail("workers and batch-size must be at least 1")
    if args.network in (None, "none"):
        _fail("encode needs a network: give --network a network file or folder")
    files = expand_stacks(args.files)
    _check_encode_outputs(args)
    with output_lock(args.output):
        _check_encode_outputs(args)  # again: a run that held the lock may just have written it
        return _encode_locked(args, files)


def _encode_locked(args: argparse.Namespace, files: list[str]) -> int:
    """The ``encode`` run, with the lock on its output held."""
    from sherpa.utils.err import SherpaErr
    from tqdm import tqdm

    from .catalogue import ProgressMismatch, encode_files, progress_path, write_table

    output = args.output
    encoder = _load_encoder(args.network, required=True)
    progress = progress_path(output)
    try:
        with tqdm(total=len(files), unit="file", desc="encoding", disable=None) as bar:
            table = encode_files(
                files,
                encoder,
                batch_size=args.batch_size,
                workers=args.workers,
                progress=bar.update,
                progress_file=progress,
                restart=args.clobber,
                log=lambda msg: tqdm.write(f"sherpa-latent: {msg}", file=sys.stderr),
            )
    except ProgressMismatch as exc:
        print(f"sherpa-latent: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            f"sherpa-latent: interrupted; finished batches are kept in {progress}: run the "
            "same command again to go on",
            file=sys.stderr,
        )
        return 130
    try:
        write_table(table, output, clobber=args.clobber)
    except (OSError, SherpaErr) as exc:
        print(
            f"sherpa-latent: {output}: cannot write ({_one_line(exc)}); finished batches are "
            f"kept in {progress}: run the same command again",
            file=sys.stderr,
        )
        return 1
    progress.unlink(missing_ok=True)
    if args.regions:
        from .regionfile import write_regions

        try:
            n_regions = write_regions(table, args.regions, clobber=args.clobber)
        except (OSError, SherpaErr) as exc:
            print(
                f"sherpa-latent: {args.regions}: cannot write ({_one_line(exc)}); the table "
                f"{output} is written",
                file=sys.stderr,
            )
            return 1
        print(f"{args.regions}: {n_regions} regions")
    failed = [row for row in table if row["ERROR"]]
    for row in failed:
        print(f"sherpa-latent: {row['ERROR']}", file=sys.stderr)
    print(f"{output}: {len(table) - len(failed)} encoded, {len(failed)} failed")
    return 1 if failed else 0


def _cmd_extract(args: argparse.Namespace) -> int:
    from .ciao import CiaoToolError, CiaoUnavailable, extract_spectrum, have_ciao

    if not have_ciao():
        print(f"sherpa-latent extract: {CiaoUnavailable()}", file=sys.stderr)
        return 2
    evt2 = args.evt2.split("[", 1)[0]  # CIAO's file[filter] syntax names the file first
    if not os.path.exists(evt2):
        _fail(f"{evt2}: event file not found")
    _check_report_outputs([], args)
    try:
        pha = extract_spectrum(
            args.evt2,
            args.region,
            args.outroot,
            background=args.bkg,
            extended=args.extended,
            clobber=args.clobber,
        )
    except (CiaoToolError, CiaoUnavailable) as exc:
        print(f"sherpa-latent extract: {exc}", file=sys.stderr)
        return 1
    print(f"sherpa-latent: specextract made {pha}", file=sys.stderr)
    args.files = [str(pha)]
    return _cmd_report(args)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .fileio import check_output_folder

    test_dir = Path(args.test_dir)
    if not test_dir.exists():
        _fail(f"{test_dir}: test folder not found")
    if not test_dir.is_dir():
        _fail(f"{test_dir}: not a folder (give the folder of test shards)")
    if args.workers < 1 or args.n_splits < 1:
        _fail("workers and n-splits must be at least 1")
    if min(args.n_classical, args.n_cluster, args.n_pairs) < 0:
        _fail("n-classical, n-cluster and n-pairs must not be negative")
    if args.network is not None:
        _load_encoder(args.network, required=True)  # a bad network file stops here
    check_output_folder(args.out_dir)
    from .training.evaluate import evaluate, markdown_summary

    results = evaluate(
        args.network,
        args.test_dir,
        args.out_dir,
        n_classical=args.n_classical,
        n_cluster=args.n_cluster,
        n_pairs=args.n_pairs,
        n_splits=args.n_splits,
        workers=args.workers,
    )
    print(markdown_summary(results))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    recipe = Path(args.recipe)
    if not recipe.is_file():
        _fail(f"{recipe}: " + ("not a file" if recipe.exists() else "recipe file not found"))
    from .training.recipe import Recipe, run_recipe

    try:
        Recipe.from_toml(recipe)
    except (OSError, ValueError) as exc:  # tomllib.TOMLDecodeError is a ValueError
        message = _one_line(exc)
        _fail(message if str(recipe.name) in message else f"{recipe}: {message}")
    command = "sherpa-latent train " + args.recipe + (" --clobber" if args.clobber else "")
    network, clusters = run_recipe(args.recipe, command_line=command, clobber=args.clobber)
    print(f"network: {network}\nclusters: {clusters}")
    return 0


def _report_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``report`` and ``extract``."""
    parser.add_argument("--json", action="store_true", help="one JSON object per file")
    parser.add_argument("--no-fit", action="store_true", help="skip the classical fit")
    parser.add_argument("--no-latent", action="store_true", help="skip the network")
    parser.add_argument(
        "--network", default="default", help="network file or folder (default: shipped one)"
    )
    parser.add_argument(
        "--plot", default=None, metavar="DIR", help="write a PNG per spectrum into DIR"
    )
    parser.add_argument(
        "--output", "--outfile", default=None, help="also write the rows as a FITS table"
    )
    parser.add_argument("--clobber", action="store_true", help="overwrite existing outputs")


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with an error in one line (no usage block) and status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sherpa-latent`` and its sub-commands."""
    parser = _Parser(
        prog="sherpa-latent",
        description="Learned latent spectra, hardness ratios and N_H for Chandra ACIS spectra.",
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"sherpa_latent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    report = sub.add_parser(
        "report",
        help="plain summary per spectrum: counts, hardness ratios, classical fit",
        description="Report on each PHA file: target, exposure, net counts, CSC hardness "
        "ratios with 68% credible intervals, and an absorbed power-law fit with 68% intervals.",
    )
    report.add_argument("files", nargs="+", help="PHA files or @stack.lis lists")
    _report_options(report)
    report.set_defaults(func=_cmd_report)

    encode = sub.add_parser(
        "encode",
        help="encode many spectra into a FITS table of latents, N_H, clusters",
        description="Encode each PHA file with the network; one row per file, bad files "
        "with their error. Output is written atomically and never overwritten without "
        "--clobber (clobber=yes). Finished batches are recorded in OUTPUT.partial.jsonl: "
        "after an interruption, the same command goes on where it stopped.",
    )
    encode.add_argument("files", nargs="+", help="PHA files or @stack.lis lists")
    encode.add_argument("--output", "--outfile", required=True, help="output FITS table")
    encode.add_argument("--network", default="default", help="network file or folder")
    encode.add_argument(
        "--clobber",
        action="store_true",
        help="overwrite the outputs (and start over when the progress file beside the "
        "output belongs to another network or batch size)",
    )
    encode.add_argument("--batch-size", type=int, default=256, help="files per batch")
    encode.add_argument(
        "--workers", type=int, default=1, help="processes reading the files (default 1)"
    )
    encode.add_argument(
        "--regions", default=None, help="also write a DS9 region file, coloured by cluster"
    )
    encode.set_defaults(func=_cmd_encode)

    extract = sub.add_parser(
        "extract",
        help="inside CIAO: make a spectrum with specextract, then report on it",
        description="Run CIAO's specextract (through ciao_contrib.runtool) on an event file "
        "and a source region to make the PHA, ARF and RMF, then report on the spectrum. "
        "Needs CIAO: ciao_contrib is not on PyPI.",
    )
    extract.add_argument("evt2", help="level 2 event file")
    extract.add_argument("region", help="source region file or expression, sky coordinates")
    extract.add_argument("--bkg", default=None, help="background region file or expression")
    extract.add_argument("--outroot", required=True, help="root of the output file names")
    extract.add_argument(
        "--extended", action="store_true", help="extended source: weighted responses"
    )
    _report_options(extract)
    extract.set_defaults(func=_cmd_extract)

    evaluate = sub.add_parser(
        "evaluate",
        help="measure a network on a held-out-response test set (JSON + Markdown)",
    )
    evaluate.add_argument("test_dir", help="folder of test shards (held-out responses)")
    evaluate.add_argument("--network", default=None, help="network (default: shipped one)")
    evaluate.add_argument("--out-dir", default="evaluation", help="where results go")
    evaluate.add_argument("--workers", type=int, default=1, help="processes for the fits")
    evaluate.add_argument("--n-classical", type=int, default=500)
    evaluate.add_argument("--n-cluster", type=int, default=2000)
    evaluate.add_argument("--n-pairs", type=int, default=1000)
    evaluate.add_argument(
        "--n-splits", type=int, default=10, help="random half-splits of the cluster comparison"
    )
    evaluate.set_defaults(func=_cmd_evaluate)

    train = sub.add_parser(
        "train",
        help="make a network from a recipe: responses, simulation, training, clusters",
        description="Run a training recipe (TOML) from wherever an earlier run stopped.",
    )
    train.add_argument("recipe", help="recipe TOML file, e.g. recipes/default.toml")
    train.add_argument(
        "--clobber", action="store_true", help="train again even if the recipe's network exists"
    )
    train.set_defaults(func=_cmd_train)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sherpa-latent`` command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] in _subparsers(parser):
        sub = _subparsers(parser)[argv[0]]
        argv = [argv[0], *ciao_style_arguments(argv[1:], sub)]
    args = parser.parse_args(argv)
    _quiet_libraries()
    for stream in (sys.stdout, sys.stderr):  # names that the terminal cannot show
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors="backslashreplace")
    from sherpa.utils.err import SherpaErr

    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("sherpa-latent: interrupted", file=sys.stderr)
        return 130
    except (SherpaErr, OSError) as exc:  # the project's one-line errors, and I/O
        print(f"sherpa-latent: {_one_line(exc)}", file=sys.stderr)
        return 1


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
