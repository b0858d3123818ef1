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


def _cmd_report(args: argparse.Namespace) -> int:
    from .report import report_file

    failed = 0
    for path in expand_stacks(args.files):
        result = report_file(path, classical=not args.no_fit)
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
    report.set_defaults(func=_cmd_report)
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
