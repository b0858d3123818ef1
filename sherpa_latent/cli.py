"""The ``sherpa-latent`` command.

Arguments are accepted as flags (``--json``) or CIAO-style ``key=value`` pairs
(``json=yes``), and ``@file.lis`` stacks expand to the files they list, one per line,
relative to the stack file's folder (``@-file.lis`` keeps them relative to the current
folder), as CIAO tools do.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from collections.abc import Sequence

__all__ = ["main", "expand_stacks", "ciao_style_arguments"]

_TRUE = {"yes", "y", "true", "1", "on"}
_FALSE = {"no", "n", "false", "0", "off"}


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
    """
    out: list[str] = []
    for item in items:
        if not item.startswith("@"):
            out.append(item)
            continue
        relative_to_cwd = item.startswith("@-")
        stack = item[2:] if relative_to_cwd else item[1:]
        try:
            with open(stack, encoding="utf-8") as handle:
                lines = [ln.strip() for ln in handle]
        except OSError as exc:
            raise SystemExit(
                f"sherpa-latent: {stack}: cannot read stack file ({exc.strerror})"
            ) from None
        base = os.path.dirname(stack)
        entries = []
        for line in lines:
            if not line or line.startswith("#"):
                continue
            if not relative_to_cwd and not os.path.isabs(line) and not line.startswith("@"):
                line = os.path.join(base, line)
            entries.append(line)
        out.extend(expand_stacks(entries))
    return out


def ciao_style_arguments(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """Turn ``key=value`` arguments into the flags the parser knows.

    ``clobber=yes`` becomes ``--clobber``; ``outfile=x.fits`` becomes ``--outfile x.fits``;
    ``infile=@a.lis`` becomes the positional ``@a.lis``. Unknown keys are left alone, so
    that argparse reports them.
    """
    options = {}
    for action in parser._actions:  # the parser's own table of options
        for flag in action.option_strings:
            if flag.startswith("--"):
                options[flag[2:].replace("-", "_")] = (flag, action)
    out: list[str] = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.replace("-", "_")
        if not sep or arg.startswith("-") or os.path.exists(arg):
            out.append(arg)
        elif key in ("infile", "infiles", "file", "files"):
            out.append(value)
        elif key in options:
            flag, action = options[key]
            if action.nargs == 0:
                if value.lower() in _TRUE:
                    out.append(flag)
                elif value.lower() not in _FALSE:
                    raise SystemExit(f"sherpa-latent: {key}={value}: expected yes or no")
            else:
                out += [flag, value]
        else:
            out.append(arg)
    return out


def _quiet_libraries() -> None:
    """Keep library chatter (Sherpa's and astropy's) off the terminal."""
    warnings.simplefilter("ignore")
    logging.getLogger("sherpa").setLevel(logging.ERROR)
    logging.getLogger("astropy").setLevel(logging.ERROR)


def _load_encoder(name: str | None, required: bool):
    """The network for a command; None when the default is not installed and not required."""
    from .errors import NetworkFileError
    from .inference import load_encoder

    if name is None or name == "none":
        return None
    try:
        return load_encoder(name)
    except NetworkFileError as exc:
        if required or name != "default":
            raise SystemExit(f"sherpa-latent: {exc}") from None
        print(f"sherpa-latent: {exc}; latent results left out", file=sys.stderr)
        return None


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import report_file

    encoder = _load_encoder(None if args.no_latent else args.network, required=False)
    failed = 0
    for path in expand_stacks(args.files):
        result = report_file(path, classical=not args.no_fit, encoder=encoder)
        if isinstance(result, dict):
            failed += 1
            print(f"sherpa-latent: {result['error']}", file=sys.stderr)
            if args.json:
                print(json.dumps(result), flush=True)
            continue
        if args.json:
            print(json.dumps(result.to_dict()), flush=True)
        else:
            print(result.to_text() + "\n", flush=True)
    return 1 if failed else 0


def _cmd_encode(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .catalogue import encode_files, write_table

    output = args.output
    if os.path.exists(output) and not args.clobber:
        print(f"sherpa-latent: {output}: exists and clobber is not set", file=sys.stderr)
        return 1
    files = expand_stacks(args.files)
    encoder = _load_encoder(args.network, required=True)
    with tqdm(total=len(files), unit="file", desc="encoding", disable=None) as bar:
        table = encode_files(files, encoder, batch_size=args.batch_size, progress=bar.update)
    write_table(table, output, clobber=args.clobber)
    failed = [row for row in table if row["ERROR"]]
    for row in failed:
        print(f"sherpa-latent: {row['ERROR']}", file=sys.stderr)
    print(f"{output}: {len(table) - len(failed)} encoded, {len(failed)} failed")
    return 1 if failed else 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import evaluate

    results = evaluate(
        args.network,
        args.test_dir,
        args.out_dir,
        n_classical=args.n_classical,
        n_cluster=args.n_cluster,
        n_pairs=args.n_pairs,
        workers=args.workers,
    )
    from .evaluate import markdown_summary

    print(markdown_summary(results))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .recipe import run_recipe

    command = "sherpa-latent train " + args.recipe + (" --clobber" if args.clobber else "")
    network, clusters = run_recipe(args.recipe, command_line=command, clobber=args.clobber)
    print(f"network: {network}\nclusters: {clusters}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``sherpa-latent`` and its sub-commands."""
    parser = argparse.ArgumentParser(
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
        "ratios with 68%% credible intervals, and an absorbed power-law fit with 68%% intervals.",
    )
    report.add_argument("files", nargs="+", help="PHA files or @stack.lis lists")
    report.add_argument("--json", action="store_true", help="one JSON object per file")
    report.add_argument("--no-fit", action="store_true", help="skip the classical fit")
    report.add_argument("--no-latent", action="store_true", help="skip the network")
    report.add_argument(
        "--network", default="default", help="network file or folder (default: shipped one)"
    )
    report.set_defaults(func=_cmd_report)

    encode = sub.add_parser(
        "encode",
        help="encode many spectra into a FITS table of latents, N_H, clusters",
        description="Encode each PHA file with the network; one row per file, bad files "
        "with their error. Output is written atomically and never overwritten without "
        "--clobber (clobber=yes).",
    )
    encode.add_argument("files", nargs="+", help="PHA files or @stack.lis lists")
    encode.add_argument("--output", "--outfile", required=True, help="output FITS table")
    encode.add_argument("--network", default="default", help="network file or folder")
    encode.add_argument("--clobber", action="store_true", help="overwrite the output")
    encode.add_argument("--batch-size", type=int, default=256, help="files per batch")
    encode.set_defaults(func=_cmd_encode)

    evaluate = sub.add_parser(
        "evaluate",
        help="measure a network on a held-out-response test set (JSON + Markdown)",
    )
    evaluate.add_argument("test_dir", help="folder of test shards (held-out responses)")
    evaluate.add_argument("--network", default=None, help="network (default: shipped one)")
    evaluate.add_argument("--out-dir", default="evaluation", help="where results go")
    evaluate.add_argument("--workers", type=int, default=1, help="processes for the fits")
    evaluate.add_argument("--n-classical", type=int, default=500)
    evaluate.add_argument("--n-cluster", type=int, default=1000)
    evaluate.add_argument("--n-pairs", type=int, default=1000)
    evaluate.set_defaults(func=_cmd_evaluate)

    train = sub.add_parser(
        "train",
        help="make a network from a recipe: responses, simulation, training, clusters",
        description="Run a training recipe (TOML) from wherever an earlier run stopped.",
    )
    train.add_argument("recipe", help="recipe TOML file, e.g. recipes/default.toml")
    train.add_argument("--clobber", action="store_true", help="overwrite an installed network")
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
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("sherpa-latent: interrupted", file=sys.stderr)
        return 130


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
