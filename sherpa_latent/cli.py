"""The ``sherpa-latent`` command.

Sub-commands: ``report`` (a summary per spectrum; ``--output`` FITS table, ``--plot`` PNG
per spectrum), ``encode`` (a catalogue run over many files: Dask workers, progress,
resumable, ``--regions`` DS9 file, ``--json`` one JSON object per file as it finishes),
``extract`` (inside CIAO: ``specextract`` then a report), ``evaluate`` and ``train``.

Parameters, as CIAO tools take them: every option is also a ``key=value`` parameter
(``--json`` is ``json=yes``, ``--outfile x.fits`` is ``outfile=x.fits``, the input files
are ``infile=``). An unknown key (``foo=1``) is refused with the list of valid ones, and a
yes/no key takes only yes/no (or y/n, true/false, 1/0, on/off).
``sherpa-latent CMD --help`` lists every parameter with its default and meaning, in the
manner of CIAO's ``plist``. Every sub-command takes:

``verbose`` (0 to 5, default 1)
    0: only results (stdout) and errors (stderr). 1: also progress, notes and warnings on
    stderr; progress is a bar on a terminal and otherwise a plain line at every 5% of the
    files or after 10 s. 2: also one line per file with the time it took. 3: also Python's
    warnings and the Sherpa and astropy log messages that lower levels keep off the
    terminal (Sherpa's moved from stdout to stderr, so that stdout holds only results).
    4 and 5: those loggers at INFO and at DEBUG level.
``mode`` (default ``h``)
    CIAO's parameter mode (``h``, ``hl``, ``q``, ``ql``, ``a``, ...): accepted and ignored.
    This command never prompts and keeps no parameter file, so every parameter behaves as
    a hidden one given on the command line.
``logfile`` (default: none)
    Also append the progress, note, warning and error lines to this file (plain lines with
    a time stamp, whatever the terminal and at least verbose=1), between a line naming the
    command and a line with its exit status. A log is only ever appended to, so
    ``clobber`` does not apply to it.

Inputs of ``report`` and ``encode``: PHA files and ``@file.lis`` stacks, as CIAO tools
take them (see :mod:`sherpa_latent.inputs`): one spectrum per line, in one to four
whitespace-separated columns ``pha arf rmf bkg`` (``-`` or ``none``: the file the PHA
header names), relative names relative to the stack file's folder (``@-file.lis``: to the
current folder). For a single PHA file, ``arf=``, ``rmf=`` and ``bkg=`` (``--arf`` ...)
name the files to use instead of its ANCRFILE, RESPFILE and BACKFILE; with more than one
file they are refused (a stack's columns say it per file). ``extract`` makes its own ARF
and RMF with ``specextract``, and its ``bkg=`` is the background region.

Where the work runs (``report``, ``encode``, ``evaluate``): in this process by default,
nothing started; ``workers=N`` on a local Dask cluster of N processes; ``scheduler=ADDRESS``
(``tcp://host:8786`` or a scheduler file) on the workers of a running Dask scheduler, which
must see the files at the same paths. The outputs, progress file and lock are this
process's either way (:mod:`sherpa_latent.executors`, docs/scaling.md).

Outputs are never overwritten without ``--clobber`` (``clobber=yes``). An ``encode`` run
records each finished batch in ``OUTPUT.partial.jsonl`` beside the output; after an
interruption the same command goes on from there, and the progress file is removed once
the output is written. The run holds a lock on its output (``OUTPUT.lock``, see
:func:`~sherpa_latent.fileio.output_lock`), so a second run on the same output refuses at
once instead of mixing its rows into the first one's.

A user's mistake (a missing or read-only folder, an output that exists without clobber,
a bad argument, a bad network or stack file) ends the command with a non-zero status and
one line on stderr naming the thing to fix, never a traceback. ``encode`` and ``report``
check all their outputs (table, region file, plot folder and its PNG files) before any
work starts. JSON output is strict: NaN and infinities are written as null. ``encode
--json`` writes one object per file, keyed by the output table's column names, as its
batch finishes (rows a resumed run found done come first); the closing summary then goes
to stderr, so stdout holds only JSON lines.

Warnings are scoped: the work runs inside ``warnings.catch_warnings()``, and the levels
of Sherpa's and astropy's loggers are restored when the command ends, so :func:`main`
called from Python leaves no filter or level behind. What a user needs to know about a
spectrum travels in its report (text, JSON, the table's warnings column).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import shlex
import shutil
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any, NoReturn

from .errors import OutputError
from .inputs import SpectrumInput, expand_stacks

__all__ = ["main", "expand_stacks", "ciao_style_arguments", "parameter_names", "parameter_help"]

_TRUE = {"yes", "y", "true", "1", "on"}
_FALSE = {"no", "n", "false", "0", "off"}
_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
"""What the key of a ``key=value`` argument looks like (a file name has a dot or slash)."""
_MODE = re.compile(r"[ahlq]{1,4}")
"""CIAO parameter modes: auto, hidden, learn, query and their combinations."""
_PROGRESS_STEP = 0.05
"""Plain progress lines: one each time this fraction of the files is done..."""
_PROGRESS_SECONDS = 10.0
"""... or once this many seconds have passed since the last one."""
_LOGGERS = ("sherpa", "astropy")
"""Loggers whose chatter is kept off the terminal below verbose=3."""


def _fail(message: str) -> NoReturn:
    """End the command with status 1 and one line on stderr."""
    raise SystemExit("sherpa-latent: " + " ".join(str(message).split()))


# --- key=value parameters ------------------------------------------------------------------
def _option_names(action: argparse.Action) -> list[str]:
    """The ``key=`` names of an option: its long flags without ``--``, ``-`` as ``_``."""
    return [f[2:].replace("-", "_") for f in action.option_strings if f.startswith("--")]


def _positional_name(action: argparse.Action, first: bool) -> str:
    """The ``key=`` name shown for a positional (the first list of files is ``infile``)."""
    return "infile" if first and action.nargs in ("+", "*") else action.dest


def parameter_names(parser: argparse.ArgumentParser) -> list[str]:
    """Every ``key=`` name a sub-command accepts, in the parser's order.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The parser of one sub-command (see :func:`build_parser`).

    Returns
    -------
    list of str
        Positionals first (the first list of files as ``infile``), then each option by
        every long name it has (``output``, ``outfile``).
    """
    names: list[str] = []
    positionals = [a for a in parser._actions if not a.option_strings]
    for i, action in enumerate(positionals):
        names.append(_positional_name(action, i == 0))
    for action in parser._actions:
        if action.option_strings and not isinstance(
            action, argparse._HelpAction | argparse._VersionAction
        ):
            names += _option_names(action)
    return list(dict.fromkeys(names))


def ciao_style_arguments(argv: Sequence[str], parser: argparse.ArgumentParser) -> list[str]:
    """Turn ``key=value`` arguments into the flags the parser knows.

    ``clobber=yes`` becomes ``--clobber``; ``outfile=x.fits`` becomes ``--outfile x.fits``;
    ``infile=@a.lis`` becomes the (first) positional ``@a.lis``, and any positional can be
    named by its own name (``region=src.reg``). An argument that names an existing file
    stays a file name, whatever it holds.

    Raises
    ------
    SystemExit
        One line: an unknown key (``foo=1``, naming the valid keys), or a yes/no key whose
        value is neither.
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
        raw_key, sep, value = arg.partition("=")
        key = raw_key.replace("-", "_").lower()
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
        elif _KEY.fullmatch(raw_key):
            valid = ", ".join(parameter_names(parser))
            raise SystemExit(f"{parser.prog}: {arg}: unknown parameter; valid keys: {valid}")
        else:  # not a key (a path with = in it): argparse or the file check reports it
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


# --- where the lines go --------------------------------------------------------------------
def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class _Console:
    """Where the command's lines go: results on stdout, the rest on stderr and the log.

    Parameters
    ----------
    verbose : int
        0 to 5 (see the module notes).
    log : text file, optional
        Open log file (appended to); gets every line of verbose >= 1, plain.
    """

    def __init__(self, verbose: int = 1, log: IO[str] | None = None) -> None:
        self.verbose = int(verbose)
        self.log = log
        self.bar: Any = None  # the tqdm bar on stderr while one is shown
        self._lock = threading.RLock()  # progress lines may come from another thread

    def result(self, text: str) -> None:
        """A result on stdout (every verbose level)."""
        with self._lock:
            if self.bar is not None:
                self.bar.write(text, file=sys.stdout)
                sys.stdout.flush()
            else:
                print(text, flush=True)

    def error(self, text: str) -> None:
        """An error line on stderr (every verbose level) and in the log."""
        self._stderr(text)
        self.to_log(text)

    def note(self, text: str, level: int = 1) -> None:
        """A note, warning or progress line: on stderr from ``verbose=level`` on."""
        if self.verbose >= level:
            self._stderr(text)
        if max(self.verbose, 1) >= level:
            self.to_log(text)

    def to_log(self, text: str) -> None:
        """A line in the log only (when there is one), with a time stamp."""
        if self.log is None:
            return
        stamp = datetime.now().astimezone().isoformat(timespec="seconds")
        with self._lock:
            self.log.write(f"{stamp} {' '.join(str(text).split())}\n")
            self.log.flush()

    def _stderr(self, text: str) -> None:
        with self._lock:
            if self.bar is not None:
                self.bar.write(text, file=sys.stderr)
            else:
                print(text, file=sys.stderr, flush=True)

    def showwarning(self, message, category, filename, lineno, file=None, line=None) -> None:
        """``warnings.showwarning`` at verbose >= 3: one line on stderr and in the log."""
        where = f"{os.path.basename(str(filename))}:{lineno}"
        self.note(f"sherpa-latent: {category.__name__}: {message} ({where})", level=3)


_CONSOLE = _Console()
"""The console of the command being run (replaced by :func:`main` while it runs)."""


class _Progress:
    """Progress of a run over files: a bar on a terminal, plain lines elsewhere and in the log.

    Plain lines come at every 5% of the files, and at least every 10 s while the run goes
    on (a background thread writes the line when no file finished in that time).

    Parameters
    ----------
    console : _Console
        Where lines go; nothing is shown on stderr at verbose=0.
    total : int
        Number of files.
    what : str
        The sub-command (``report``, ``encode``), the start of each line.
    """

    def __init__(self, console: _Console, total: int, what: str) -> None:
        self.console, self.total, self.what = console, int(total), what
        self.done = 0
        self.start = self._last_time = time.monotonic()
        self._last_step = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.bar = None
        if console.verbose >= 1 and self.total > 0 and _is_terminal(sys.stderr):
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="file", desc=what, file=sys.stderr)
            console.bar = self.bar
        noun = "file" if self.total == 1 else "files"
        self._line(f"{self.total} {noun} to do")
        self._beat: threading.Thread | None = None
        if self.total > 0 and (console.verbose >= 1 or console.log is not None):
            self._beat = threading.Thread(target=self._heartbeat, daemon=True)
            self._beat.start()

    def update(self, n: int = 1) -> None:
        """``n`` more files done."""
        with self._lock:
            self.done += int(n)
            if self.bar is not None:
                self.bar.update(n)
            if self.done >= self.total:
                return  # the closing line says it
            step = int(self.done / max(self.total, 1) / _PROGRESS_STEP + 1e-9)
            now = time.monotonic()
            if step > self._last_step or now - self._last_time >= _PROGRESS_SECONDS:
                self._last_step = step
                self._count_line(now)

    def close(self, finished: bool = True) -> None:
        """Remove the bar and write the closing line (``finished``: False when stopped)."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        if self.bar is not None:
            self.bar.close()
            self.bar = self.console.bar = None
        elapsed = time.monotonic() - self.start
        noun = "file" if self.total == 1 else "files"
        if finished:
            self._line(f"{self.done} of {self.total} {noun} in {elapsed:.1f} s")
        else:
            self._line(f"stopped after {self.done} of {self.total} {noun}, {elapsed:.1f} s")

    def _heartbeat(self) -> None:
        """A line after every 10 s without one, until :meth:`close`."""
        while not self._stop.wait(_PROGRESS_SECONDS / 10):
            with self._lock:
                now = time.monotonic()
                if now - self._last_time >= _PROGRESS_SECONDS and not self._stop.is_set():
                    self._count_line(now)

    def _count_line(self, now: float) -> None:
        self._last_time = now
        percent = 100.0 * self.done / max(self.total, 1)
        noun = "file" if self.total == 1 else "files"
        elapsed = now - self.start
        self._line(f"{self.done} of {self.total} {noun} ({percent:.0f}%), {elapsed:.1f} s")

    def _line(self, text: str) -> None:
        line = f"sherpa-latent: {self.what}: {text}"
        if self.bar is None:
            self.console.note(line)
        else:
            self.console.to_log(line)


@contextlib.contextmanager
def _library_output(console: _Console) -> Iterator[None]:
    """Python warnings and Sherpa's/astropy's loggers as ``verbose`` asks, restored after.

    Below verbose=3 warnings are ignored and the loggers set to ERROR; from 3 on warnings
    go through :meth:`_Console.showwarning`, the loggers are at WARNING (3), INFO (4) or
    DEBUG (5), their stdout handlers write to stderr and a log file gets their lines.
    """
    import astropy  # noqa: F401 - both loggers exist before their levels are saved
    import sherpa  # noqa: F401

    verbose = console.verbose
    level = {3: logging.WARNING, 4: logging.INFO}.get(verbose, logging.DEBUG)
    level = logging.ERROR if verbose < 3 else level
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    saved = [lg.level for lg in loggers]
    moved: list[tuple[logging.StreamHandler, Any]] = []
    extra: logging.Handler | None = None
    with warnings.catch_warnings():
        if verbose < 3:
            warnings.simplefilter("ignore")
        else:
            warnings.simplefilter("default")
            warnings.showwarning = console.showwarning
        try:
            for lg in loggers:
                lg.setLevel(level)
                if verbose >= 3:
                    for handler in lg.handlers:
                        stream = getattr(handler, "stream", None)
                        if isinstance(handler, logging.StreamHandler) and stream is sys.stdout:
                            moved.append((handler, handler.setStream(sys.stderr)))
            if verbose >= 3 and console.log is not None:
                extra = logging.StreamHandler(console.log)
                extra.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
                for lg in loggers:
                    lg.addHandler(extra)
            yield
        finally:
            for lg, old in zip(loggers, saved, strict=True):
                lg.setLevel(old)
                if extra is not None:
                    lg.removeHandler(extra)
            for handler, stream in moved:
                handler.setStream(stream)


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
        _CONSOLE.note(f"sherpa-latent: {message}; latent results left out")
        return None


def _inputs(args: argparse.Namespace) -> list[SpectrumInput]:
    """The spectra a command names: stacks expanded, ``arf=``/``rmf=``/``bkg=`` applied.

    ``arf=``, ``rmf=`` and ``bkg=`` apply to a single PHA file; with more than one
    spectrum the command ends with one line saying so.
    """
    items = expand_stacks(args.files)
    given = {
        key: value
        for key, value in (
            ("arf", getattr(args, "arf", None)),
            ("rmf", getattr(args, "rmf", None)),
            ("bkg", getattr(args, "background", None)),
        )
        if value is not None
    }
    if not given:
        return items
    keys = ", ".join(f"{key}=" for key in given)
    if len(items) != 1:
        _fail(
            f"{keys} apply to a single PHA file, but {len(items)} spectra were given; "
            "for several spectra give each one's files in a stack file (@file.lis, columns "
            "pha arf rmf bkg)"
        )
    (item,) = items
    return [
        SpectrumInput(
            item.pha,
            arf=given.get("arf", item.arf),
            rmf=given.get("rmf", item.rmf),
            background=given.get("bkg", item.background),
        )
    ]


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


def _report_all(
    args: argparse.Namespace,
    items: Sequence[SpectrumInput],
    encoder,
    plotting,
    pngs: dict[int, str],
    rows: list,
    progress: _Progress,
) -> int:
    """Report on each spectrum (results, plots, lines, in order); the number that failed.

    The work goes through :func:`~sherpa_latent.catalogue.report_files`: in this process,
    or on Dask workers with ``workers=`` or ``scheduler=`` (docs/scaling.md).
    """
    from .catalogue import report_files
    from .fileio import strict_json

    console = _CONSOLE
    failed = 0

    def show(outcome) -> None:
        nonlocal failed
        path, result = outcome.file, outcome.report
        rows.append(result)
        if isinstance(result, dict):
            failed += 1
            console.error(f"sherpa-latent: {result['error']}")
            if args.json:
                console.result(strict_json({"FILE": result["file"], "ERROR": result["error"]}))
        else:
            console.result(result.to_json() if args.json else result.to_text() + "\n")
            for text in _report_warnings(result):
                console.to_log(f"sherpa-latent: {path}: warning: {text}")
            if outcome.plot_error:
                failed += 1
                console.error(f"sherpa-latent: {outcome.plot_error}")
        took = ", ".join(f"{key} {seconds:.2f} s" for key, seconds in outcome.seconds.items())
        status = "failed" if isinstance(result, dict) else "reported"
        console.note(f"sherpa-latent: report: {path}: {status}; {took or 'not read'}", level=2)
        progress.update()

    report_files(
        items,
        classical=not args.no_fit,
        encoder=encoder,
        workers=getattr(args, "workers", 1),
        scheduler=getattr(args, "scheduler", None),
        plots=pngs if plotting is not None else None,
        clobber=getattr(args, "clobber", False),
        quiet=console.verbose < 3,
        on_outcome=show,
        log=lambda message: console.note(f"sherpa-latent: {message}"),
    )
    return failed


def _report_warnings(report) -> list[str]:
    """What a report warns of (its own warnings, the classical fit's limits and note)."""
    said = [str(w) for w in getattr(report, "warnings", ()) or ()]
    classical = getattr(report, "classical", None)
    if classical is not None:
        said += [str(n) for n in getattr(classical, "limit_notes", ()) or ()]
        said += [str(classical.note)] if getattr(classical, "note", "") else []
    return said


def _cmd_report(args: argparse.Namespace) -> int:
    from sherpa.utils.err import SherpaErr

    from .catalogue import report_table, write_table

    items = _inputs(args)
    files = [item.pha for item in items]
    if hasattr(args, "workers"):
        _check_dask_options(args)
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
    progress = _Progress(_CONSOLE, len(items), "report")
    rows: list = []
    try:
        failed = _report_all(args, items, encoder, plotting, pngs, rows, progress)
    except BaseException:
        progress.close(finished=False)
        raise
    progress.close()
    if output:
        try:
            write_table(
                report_table(rows, encoder),
                output,
                clobber=clobber,
                command=getattr(args, "command_line", sys.argv),
                inputs=items,
                stacks=[f for f in args.files if str(f).startswith("@")],
            )
        except (OSError, SherpaErr) as exc:
            _CONSOLE.error(f"sherpa-latent: {output}: cannot write ({_one_line(exc)})")
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


def _check_dask_options(args: argparse.Namespace) -> None:
    """One line and status 1 for bad ``workers=``/``scheduler=`` values."""
    from .executors import check_workers

    try:
        check_workers(args.workers, args.scheduler)
    except ValueError as exc:
        _fail(str(exc))


def _cmd_encode(args: argparse.Namespace) -> int:
    from .fileio import output_lock

    if args.batch_size < 1:
        _fail("batch-size must be at least 1")
    _check_dask_options(args)
    if args.network in (None, "none"):
        _fail("encode needs a network: give --network a network file or folder")
    items = _inputs(args)
    _check_encode_outputs(args)
    with output_lock(args.output):
        _check_encode_outputs(args)  # again: a run that held the lock may just have written it
        return _encode_locked(args, items)


def _table_rows(table) -> Iterator[dict[str, Any]]:
    """Each row of a table as a dict keyed by its column names (values without units).

    What ``encode --json`` writes for each file, through
    :func:`~sherpa_latent.fileio.strict_json`.
    """
    for row in table:
        yield {name: row[name] for name in table.colnames}


class _EncodeLines:
    """What ``encode`` says per file as batches finish: JSON rows, and at verbose>=2 times.

    The times come from the loading callback: the seconds between one file's arrival and
    the previous one (its reading, in a single process), and the batch's pass through the
    network (from its last file's arrival to its records).
    """

    def __init__(self, console: _Console, encoder, json_rows: bool) -> None:
        self.console, self.encoder, self.json_rows = console, encoder, json_rows
        self.arrivals: list[float] = []
        self.since = time.monotonic()

    def loaded(self, n: int) -> None:
        """The loading callback: ``n`` files loaded (more than 1: done in an earlier run)."""
        if n == 1:
            self.arrivals.append(time.monotonic())

    def finished(self, records: list[dict[str, Any]]) -> None:
        """The records of one batch (or of the rows a resumed run found done)."""
        from .catalogue import table_from_records
        from .fileio import strict_json

        now = time.monotonic()
        if self.json_rows and records:
            for row in _table_rows(table_from_records(records, self.encoder)):
                self.console.result(strict_json(row))
        if self.console.verbose >= 2 or self.console.log is not None:
            if not self.arrivals:
                for rec in records:
                    self._line(f"{rec['FILE']}: done in an earlier run")
            else:
                marks = [self.since, *self.arrivals]
                reads = [b - a for a, b in zip(marks[:-1], marks[1:], strict=True)]
                network = now - self.arrivals[-1]
                for rec, read in zip(records, reads, strict=False):
                    status = "failed" if rec.get("ERROR") else "encoded"
                    self._line(
                        f"{rec['FILE']}: {status}; loaded in {read:.3f} s, its batch of "
                        f"{len(records)} through the network in {network:.2f} s"
                    )
        self.arrivals = []
        self.since = time.monotonic()

    def _line(self, text: str) -> None:
        self.console.note(f"sherpa-latent: encode: {text}", level=2)


def _encode_locked(args: argparse.Namespace, items: list[SpectrumInput]) -> int:
    """The ``encode`` run, with the lock on its output held."""
    from sherpa.utils.err import SherpaErr

    from .catalogue import ProgressMismatch, encode_files, progress_path, write_table

    console = _CONSOLE
    json_rows = bool(getattr(args, "json", False))

    def summary(text: str) -> None:  # a result; with --json stdout holds only JSON lines
        console.note(text, level=0) if json_rows else console.result(text)

    output = args.output
    encoder = _load_encoder(args.network, required=True)
    progress = progress_path(output)
    bar = _Progress(console, len(items), "encode")
    lines = _EncodeLines(console, encoder, json_rows)

    def loaded(n: int) -> None:
        bar.update(n)
        lines.loaded(n)

    try:
        table = encode_files(
            items,
            encoder,
            batch_size=args.batch_size,
            workers=args.workers,
            scheduler=args.scheduler,
            progress=loaded,
            progress_file=progress,
            restart=args.clobber,
            log=lambda msg: console.note(f"sherpa-latent: {msg}"),
            on_records=lines.finished,
        )
    except ProgressMismatch as exc:
        bar.close(finished=False)
        console.error(f"sherpa-latent: {exc}")
        return 1
    except KeyboardInterrupt:
        bar.close(finished=False)
        console.error(
            f"sherpa-latent: interrupted; finished batches are kept in {progress}: run the "
            "same command again to go on"
        )
        return 130
    except BaseException:
        bar.close(finished=False)
        raise
    bar.close()
    try:
        write_table(
            table,
            output,
            clobber=args.clobber,
            command=getattr(args, "command_line", sys.argv),
            inputs=items,
            stacks=[f for f in args.files if str(f).startswith("@")],
        )
    except (OSError, SherpaErr) as exc:
        console.error(
            f"sherpa-latent: {output}: cannot write ({_one_line(exc)}); finished batches are "
            f"kept in {progress}: run the same command again"
        )
        return 1
    progress.unlink(missing_ok=True)
    if args.regions:
        from .regionfile import write_regions

        try:
            n_regions = write_regions(table, args.regions, clobber=args.clobber)
        except (OSError, SherpaErr) as exc:
            console.error(
                f"sherpa-latent: {args.regions}: cannot write ({_one_line(exc)}); the table "
                f"{output} is written"
            )
            return 1
        summary(f"{args.regions}: {n_regions} regions")
    failed = [row for row in table if row["ERROR"]]
    for row in failed:
        console.error(f"sherpa-latent: {row['ERROR']}")
    summary(f"{output}: {len(table) - len(failed)} encoded, {len(failed)} failed")
    return 1 if failed else 0


def _cmd_extract(args: argparse.Namespace) -> int:
    from .ciao import CiaoToolError, CiaoUnavailable, extract_spectrum, have_ciao

    if not have_ciao():
        _CONSOLE.error(f"sherpa-latent extract: {CiaoUnavailable()}")
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
        _CONSOLE.error(f"sherpa-latent extract: {exc}")
        return 1
    _CONSOLE.note(f"sherpa-latent: specextract made {pha}")
    args.files = [str(pha)]
    return _cmd_report(args)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .fileio import check_output_folder

    test_dir = Path(args.test_dir)
    if not test_dir.exists():
        _fail(f"{test_dir}: test folder not found")
    if not test_dir.is_dir():
        _fail(f"{test_dir}: not a folder (give the folder of test shards)")
    if args.n_splits < 1:
        _fail("n-splits must be at least 1")
    _check_dask_options(args)
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
        scheduler=args.scheduler,
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


def _response_options(parser: argparse.ArgumentParser) -> None:
    """``arf=``, ``rmf=``, ``bkg=``: a single PHA file's files instead of its header's."""
    for flag, dest, keyword, what in (
        ("--arf", "arf", "ANCRFILE", "ARF"),
        ("--rmf", "rmf", "RESPFILE", "RMF"),
        ("--bkg", "background", "BACKFILE", "background PHA file"),
    ):
        parser.add_argument(
            flag,
            dest=dest,
            default=None,
            metavar="FILE",
            help=f"{what} to use instead of the PHA header's {keyword}; one PHA file only "
            "(blank: the header's)",
        )


def _dask_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``workers=`` and ``scheduler=``: where the per-file work runs (docs/scaling.md)."""
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help=f"1: {what} in this process (nothing started); N > 1: on a local Dask cluster "
        "of N worker processes",
    )
    parser.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help=f"{what} on the workers of a running Dask scheduler: its address "
        "(tcp://host:8786) or scheduler file; the files must be on a file system the "
        "workers see (see docs/scaling.md)",
    )


def _mode(value: str) -> str:
    """A CIAO parameter mode (accepted and ignored: nothing here prompts)."""
    if not _MODE.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a CIAO parameter mode (h, hl, q, ql, a, l)"
        )
    return value


def _common_options(parser: argparse.ArgumentParser) -> None:
    """``verbose=``, ``mode=`` and ``logfile=``, which every sub-command takes."""
    parser.add_argument(
        "--verbose",
        type=int,
        default=1,
        choices=range(6),
        metavar="0-5",
        help="0: results and errors only; 1: progress and notes on stderr; 2: a line per "
        "file with its time; 3-5: library warnings and log messages too",
    )
    parser.add_argument(
        "--mode",
        type=_mode,
        default="h",
        help="CIAO parameter mode: accepted and ignored (nothing prompts)",
    )
    parser.add_argument(
        "--logfile",
        default=None,
        metavar="FILE",
        help="also append progress, notes, warnings and errors to FILE (blank: no log)",
    )


def _shown_default(action: argparse.Action) -> str:
    """A default as CIAO's plist shows it: yes/no for switches, blank for none."""
    if action.nargs == 0 and isinstance(action.default, bool):
        return "yes" if action.default else "no"
    if action.default is None or action.default is argparse.SUPPRESS:
        return ""
    return str(action.default)


def parameter_help(parser: argparse.ArgumentParser) -> str:
    """Every parameter of a sub-command as CIAO's ``plist`` lists them.

    One line each: the ``key=`` name and its default (in parentheses when it may be left
    out, as plist shows hidden parameters), then its meaning. Other names of the same
    parameter follow its meaning.
    """
    formatter = parser._get_formatter()
    positionals = [a for a in parser._actions if not a.option_strings]
    rows = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(
            action, argparse._HelpAction | argparse._VersionAction
        ):
            continue
        if action.option_strings:
            names = _option_names(action)
            if not names:
                continue
            name, others = names[-1], names[:-1]  # outfile rather than output
            optional = not action.required
        else:
            name = _positional_name(action, action is positionals[0])
            others = [action.dest] if name != action.dest else []
            optional = action.nargs in ("?", "*")
        meaning = formatter._expand_help(action) if action.help else ""
        if not optional:
            meaning += " (required)"
        if others:
            meaning += " (also " + ", ".join(f"{o}=" for o in others) + ")"
        left = f"({name}" if optional else name
        right = _shown_default(action) + (")" if optional else "")
        rows.append((left, right, meaning.strip()))
    if not rows:
        return ""
    w_left = max(len(r[0]) for r in rows) + 4
    w_right = min(max(len(r[1]) for r in rows), 16)
    indent = w_left + 3 + w_right + 2
    width = max(60, min(shutil.get_terminal_size((100, 24)).columns, 110))
    lines = [
        "parameters (name=value, or --name value; in parentheses: optional, with its default):",
        "",
    ]
    for left, right, meaning in rows:
        head = f"{left:>{w_left}} = {right:<{w_right}}  "
        if len(head) > indent:  # a long default: its meaning on the next line
            lines.append(head.rstrip())
            head = " " * indent
        body = textwrap.wrap(meaning, max(20, width - indent)) or [""]
        lines.append(head + body[0])
        lines += [" " * indent + more for more in body[1:]]
    return "\n".join(lines) + "\n"


class _Parser(argparse.ArgumentParser):
    """argparse's parser, with an error in one line (no usage block) and status 2.

    A sub-command's ``--help`` ends with its parameters listed as CIAO's ``plist`` does
    (:func:`parameter_help`).
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())} (see --help)\n")

    def format_help(self) -> str:
        text = super().format_help()
        if self._subparsers is None:  # a sub-command
            text += "\n" + parameter_help(self)
        return text


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
    report.add_argument(
        "files", nargs="+", help="PHA files or @stack.lis lists (columns: pha arf rmf bkg)"
    )
    _response_options(report)
    _report_options(report)
    _dask_options(report, "report")
    report.set_defaults(func=_cmd_report)

    encode = sub.add_parser(
        "encode",
        help="encode many spectra into a FITS table of latents, N_H, clusters",
        description="Encode each PHA file with the network; one row per file, bad files "
        "with their error. Output is written atomically and never overwritten without "
        "--clobber (clobber=yes). Finished batches are recorded in OUTPUT.partial.jsonl: "
        "after an interruption, the same command goes on where it stopped.",
    )
    encode.add_argument(
        "files", nargs="+", help="PHA files or @stack.lis lists (columns: pha arf rmf bkg)"
    )
    _response_options(encode)
    encode.add_argument("--output", "--outfile", required=True, help="output FITS table")
    encode.add_argument("--network", default="default", help="network file or folder")
    encode.add_argument(
        "--clobber",
        action="store_true",
        help="overwrite the outputs (and start over when the progress file beside the "
        "output belongs to another network or batch size)",
    )
    encode.add_argument("--batch-size", type=int, default=256, help="files per batch")
    _dask_options(encode, "read and encode")
    encode.add_argument(
        "--regions", default=None, help="also write a DS9 region file, coloured by cluster"
    )
    encode.add_argument(
        "--json",
        action="store_true",
        help="also write one JSON object per file to stdout as its batch finishes (keys: "
        "the table's columns)",
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
    _dask_options(evaluate, "the classical fits")
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
    for command in _subparsers(parser).values():
        _common_options(command)
    return parser


def _open_log(args: argparse.Namespace, argv: Sequence[str]) -> IO[str] | None:
    """The log file of ``logfile=``, opened to append, its first line written; or None."""
    path = getattr(args, "logfile", None)
    if not path:
        return None
    for key in ("output", "regions", "plot"):
        other = getattr(args, key, None)
        if other and _same_file(path, other):
            _fail(f"{path}: is the {key} of this command too; give the log its own name")
    if os.path.isdir(path):
        _fail(f"{path}: is a folder; logfile= names a file")
    try:
        log = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by main()
    except OSError as exc:
        _fail(f"{path}: cannot open the log file ({exc.strerror or exc})")
    from . import __version__

    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    log.write(f"# {stamp} sherpa-latent {shlex.join(argv)} (sherpa_latent {__version__})\n")
    log.flush()
    return log


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``sherpa-latent`` command; returns the exit status.

    Called from Python, it leaves no warning filter, logger level or handler changed.
    """
    global _CONSOLE
    argv = list(sys.argv[1:] if argv is None else argv)
    given = list(argv)
    parser = build_parser()
    if argv and argv[0] in _subparsers(parser):
        sub = _subparsers(parser)[argv[0]]
        argv = [argv[0], *ciao_style_arguments(argv[1:], sub)]
    args = parser.parse_args(argv)
    args.command_line = ["sherpa-latent", *given]  # for the HISTORY of FITS outputs
    for stream in (sys.stdout, sys.stderr):  # names that the terminal cannot show
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors="backslashreplace")
    from sherpa.utils.err import SherpaErr

    log = _open_log(args, given)
    console = _Console(getattr(args, "verbose", 1), log)
    previous, _CONSOLE = _CONSOLE, console
    start, status = time.monotonic(), 1
    try:
        with _library_output(console):
            status = int(args.func(args) or 0)
    except KeyboardInterrupt:
        console.error("sherpa-latent: interrupted")
        status = 130
    except (SherpaErr, OSError) as exc:  # the project's one-line errors, and I/O
        console.error(f"sherpa-latent: {_one_line(exc)}")
        status = 1
    except SystemExit as exc:  # a one-line refusal: into the log too
        status = exc.code if isinstance(exc.code, int) else 1
        if isinstance(exc.code, str):
            console.to_log(exc.code)
        raise
    finally:
        _CONSOLE = previous
        if log is not None:
            stamp = datetime.now().astimezone().isoformat(timespec="seconds")
            log.write(f"# {stamp} exit status {status}, {time.monotonic() - start:.1f} s\n")
            log.close()
    return status


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
