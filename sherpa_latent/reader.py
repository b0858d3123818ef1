"""Read PHA, ARF, RMF and background files into Sherpa's own data objects, fast.

The reader opens the FITS files with ``fitsio`` (cfitsio; gzip files included), takes the
columns and keywords Sherpa's own reader takes (``sherpa.astro.io.read_pha``,
``read_arf`` and ``read_rmf``) and builds Sherpa's ``DataPHA``, ``DataARF`` and
``DataRMF`` with their public constructors, so the objects work in a Sherpa session, in
fits and with ``save``/``restore`` as if Sherpa had read them. Nothing in Sherpa is
replaced or patched: responses that spectra share are reused through an explicit
:class:`ResponseFileCache`, keyed by the file's real path, size and modification time.

What is read, as Sherpa reads it:

- PHA type I (a type II file holding several spectra is refused; one holding a single
  spectrum is read as that spectrum), COUNTS or RATE (times EXPOSURE), STAT_ERR and
  SYS_ERR (only with ``use_errors``), GROUPING and QUALITY columns, BACKSCAL and AREASCAL
  as keyword or column, BACKGROUND_UP/DOWN columns; the background block of a Chandra
  Source Catalog ``pha3`` file (``HDUCLAS2 = 'BKG'``) when the file is read as a
  background.
- ARF: the SPECRESP (or AXAF_ARF) block, ENERG_LO, ENERG_HI, SPECRESP.
- RMF: the first MATRIX / SPECRESP MATRIX / AXAF_RMF / RSP_MATRIX block (as Sherpa, which
  uses only the first one), fixed or variable-length F_CHAN, N_CHAN and MATRIX, the
  channel offset from TLMIN of F_CHAN (else of the EBOUNDS CHANNEL column), and EBOUNDS.

Header values are parsed from the header cards directly (``fitsio``'s own header reader
takes about 30 microseconds a card). File names that cfitsio would read as its
extended syntax (brackets, a trailing ``+N``) are opened through a temporary symbolic
link.

Reading is thread-safe: every read opens its own file handle and the cache has a lock.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import re
import shutil
import tempfile
import threading
import warnings as pywarnings
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import fitsio
import numpy as np
from sherpa.astro import io as sherpa_io
from sherpa.astro.data import DataARF, DataPHA, DataRMF, DataRosatRMF
from sherpa.utils.err import SherpaErr
from sherpa.utils.numeric_types import SherpaFloat, SherpaUInt

from .errors import SpectrumError, SpectrumFileError
from .validation import check_file_name, column_numbers, keyword_number

__all__ = [
    "ResponseFileCache",
    "PHABlock",
    "SpectrumRead",
    "read_arf",
    "read_rmf",
    "read_pha_block",
    "read_background",
    "read_spectrum",
    "find_named_file",
    "header_file_names",
    "using_cache",
    "active_cache",
    "describe_problem",
]

log = logging.getLogger(__name__)

RMF_BLOCK_NAMES = ("MATRIX", "SPECRESP MATRIX", "AXAF_RMF", "RSP_MATRIX")
"""Names of an RMF's matrix block that Sherpa recognises (besides HDUCLAS2 = RSP_MATRIX)."""

_FILE_KEYS = ("RESPFILE", "ANCRFILE", "BACKFILE")
_PHA_NOT_IN_HEADER = {"ANCRFILE", "BACKFILE", "RESPFILE", "BACKSCAL", "AREASCAL", "EXPOSURE"}

# Keywords about the file's structure, which Sherpa leaves out of a data set's header
# (the list of sherpa.astro.io, which takes the HEASARC keyword dictionary as its guide).
_STRUCTURAL = {
    "BITPIX", "BLANK", "BLOCKED", "BSCALE", "BUNIT", "BZERO", "DATAMAX", "DATAMIN", "END",
    "EXTEND", "EXTLEVEL", "EXTNAME", "EXTVER", "GCOUNT", "GROUPS", "NAXIS", "PCOUNT",
    "SIMPLE", "TFIELDS", "THEAP", "XTENSION", "CHECKSUM", "DATASUM", "CHECKVER",
    "TSORTKEY", "HDUNAME",
}  # fmt: skip
_STRUCTURAL_NUMBERED = {
    "CDELT", "CROTA", "CRPIX", "CRVAL", "CTYPE", "CUNIT", "NAXIS", "PSCAL", "PTYPE",
    "PZERO", "TBCOL", "TDIM", "TDISP", "TFORM", "TNULL", "TSCAL", "TTYPE", "TUNIT", "TZERO",
    "TCTYP", "TCUNI", "TCRPX", "TCRVL", "TCDLT", "TDMAX", "TDMIN", "TLMAX", "TLMIN",
    "DSTYP", "DSVAL", "DSFORM", "DSUNIT", "TDBIN", "MTYPE", "MFORM",
}  # fmt: skip
_NUMBERED = re.compile(r"^([^\d]+)([1-9]\d*)$")
_INTEGER = re.compile(r"^[+-]?\d+$")
_CFITSIO_SYNTAX = re.compile(r"[\[\]()|]|^\s|\s$|^[-!~]|\+\d+$|://")


@functools.lru_cache(maxsize=4096)
def _structural(key: str) -> bool:
    if key in _STRUCTURAL:
        return True
    match = _NUMBERED.match(key)
    return match is not None and match[1] in _STRUCTURAL_NUMBERED


# --- the cache ---------------------------------------------------------------------------
def file_key(path: str) -> tuple[str, int, int]:
    """(real path, size in bytes, modification time in ns) of a file."""
    st = os.stat(path)
    return os.path.realpath(path), st.st_size, st.st_mtime_ns


class ResponseFileCache:
    """ARF and RMF objects already read, handed out again while their file is unchanged.

    Parameters
    ----------
    max_entries : int, optional
        Most objects kept; the least recently used goes first.

    Notes
    -----
    Keys are (kind, real path, size, modification time in ns), so a file rewritten in
    place is read again. Spectra that share a response get the *same* object, as they
    did when Sherpa's reader was memoised; a caller that changes a response object
    in place should not use a cache. Safe to share between threads: the lookups hold a
    lock; two threads that miss the same file at once both read it and the first
    stored object wins.
    """

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = int(max_entries)
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def clear(self) -> None:
        """Forget every object."""
        with self._lock:
            self._items.clear()

    def get(self, kind: str, path: str, read: Callable[[str], Any]) -> Any:
        """The object for ``path``, read with ``read(path)`` unless already here.

        Parameters
        ----------
        kind : str
            What the file is ("arf", "rmf"); part of the key.
        path : str
            The file.
        read : callable
            Reads the file when it is not in the cache.
        """
        try:
            key = (kind, *file_key(path))
        except OSError:
            return read(path)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return found
        value = read(path)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self.hits += 1
                return found
            self.misses += 1
            self._items[key] = value
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)
        return value


_ACTIVE: contextvars.ContextVar[ResponseFileCache | None] = contextvars.ContextVar(
    "sherpa_latent_response_cache", default=None
)


@contextlib.contextmanager
def using_cache(cache: ResponseFileCache) -> Iterator[ResponseFileCache]:
    """Make ``cache`` the one :func:`read_spectrum` uses when given none, in this context.

    The setting is a context variable: it belongs to the calling thread (or asyncio
    task) only, and nothing outside this package changes.
    """
    token = _ACTIVE.set(cache)
    try:
        yield cache
    finally:
        _ACTIVE.reset(token)


def active_cache() -> ResponseFileCache | None:
    """The cache set by :func:`using_cache` in this context, or None."""
    return _ACTIVE.get()


# --- FITS files ----------------------------------------------------------------------------
class _NotKind(Exception):
    """The file is FITS but not the kind of file expected (message: what is missing)."""


def _parse_string(text: str) -> tuple[str, int]:
    """A quoted FITS string at the start of ``text``: its value and the index after it."""
    start = text.index("'") + 1
    pos = start
    while True:
        end = text.find("'", pos)
        if end < 0:  # no closing quote: take the rest, as astropy does
            return text[start:].replace("''", "'"), len(text)
        if text[end + 1 : end + 2] == "'":
            pos = end + 2
            continue
        return text[start:end].replace("''", "'"), end + 1


def _parse_value(text: str) -> Any:
    """A non-string FITS value (the card after ``= ``); None when undefined."""
    token = text.split("/", 1)[0].strip()
    if not token:
        return None
    if token == "T":
        return True
    if token == "F":
        return False
    if _INTEGER.match(token):
        return int(token)
    if token.startswith("("):
        real, imag = token.strip("()").split(",")
        return complex(_parse_value(real), _parse_value(imag))
    return float(token.replace("D", "E").replace("d", "e"))


def _astropy_value(card: str) -> Any:
    """The value astropy reads from a card this parser does not know (None if undefined)."""
    from astropy.io import fits

    try:
        value = fits.Card.fromstring(card).value
    except Exception:  # noqa: BLE001 - a card nobody can read has no value
        return None
    return None if isinstance(value, fits.card.Undefined) else value


def parse_header(block: bytes) -> dict[str, Any]:
    """Keyword values of a FITS header, as astropy gives them (first of repeated keys).

    COMMENT, HISTORY and blank cards are left out; long strings (CONTINUE cards) are
    joined; trailing blanks of strings are dropped.

    Parameters
    ----------
    block : bytes
        The header's bytes (80-character cards).

    Returns
    -------
    dict
        Upper-case keyword to value (str, int, float, bool, complex or None).
    """
    text = block.decode("ascii", errors="replace")
    cards = [text[k : k + 80] for k in range(0, len(text) - len(text) % 80, 80)]
    header: dict[str, Any] = {}
    i, n = 0, len(cards)
    while i < n:
        card = cards[i]
        i += 1
        key = card[:8].rstrip().upper()
        if key == "END":
            break
        if key == "HIERARCH" and "=" in card:
            key, rest = card[9:].split("=", 1)
            key = key.strip().upper()
        elif card[8:10] == "= ":
            rest = card[10:]
        else:
            continue  # COMMENT, HISTORY, blank, stray CONTINUE
        try:
            if rest.lstrip().startswith("'"):
                value, _ = _parse_string(rest)
                value = value.rstrip()
                while value.endswith("&") and i < n and cards[i][:8] == "CONTINUE":
                    more, _ = _parse_string(cards[i][8:])
                    value = value[:-1] + more.rstrip()
                    i += 1
            else:
                value = _parse_value(rest)
        except ValueError:
            value = _astropy_value(card)
        header.setdefault(key, value)
    return header


_TFORM = re.compile(r"^\s*(\d*)\s*([LXBIJKAEDCMPQ])([LXBIJKAEDCM]?)")
_TYPE_BYTES = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8, "C": 8, "M": 16}


def _table_layout(header: dict[str, Any]) -> dict[str, tuple[int, str, int]]:
    """Upper-case column name -> (byte offset in a row, type code, bytes per element).

    For a variable-length column (P or Q) the element is that of the array it points to.
    Columns after one whose TFORM cannot be read are left out.
    """
    layout: dict[str, tuple[int, str, int]] = {}
    offset = 0
    for n in range(1, int(header.get("TFIELDS") or 0) + 1):
        match = _TFORM.match(str(header.get(f"TFORM{n}", "")).upper())
        if match is None:
            break
        repeat = int(match[1]) if match[1] else 1
        code = match[2]
        name = str(header.get(f"TTYPE{n}", "")).strip().upper()
        if code in "PQ":
            element = _TYPE_BYTES.get(match[3], 1) if match[3] != "X" else 1
            layout[name] = (offset, code, element)
            offset += repeat * (8 if code == "P" else 16) if repeat else 0
        else:
            layout[name] = (offset, code, _TYPE_BYTES.get(code, 1))
            offset += (repeat + 7) // 8 if code == "X" else repeat * _TYPE_BYTES[code]
    return layout


def _fits_name(path: str) -> tuple[str, str | None]:
    """A name cfitsio reads literally: the path, or a symbolic link to it in a temp folder."""
    if not _CFITSIO_SYNTAX.search(path):
        return path, None
    folder = tempfile.mkdtemp(prefix="sherpa_latent_")
    link = os.path.join(folder, "file.gz" if path.endswith(".gz") else "file.fits")
    os.symlink(os.path.abspath(path), link)
    return link, folder


class _FitsFile:
    """One FITS file open with fitsio: HDU names, parsed headers, columns."""

    def __init__(self, path: str) -> None:
        self.path = path
        with open(path, "rb") as handle:
            self._gzipped = handle.read(2) == b"\x1f\x8b"
        name, self._tmp = _fits_name(path)
        try:
            self._fits = fitsio.FITS(name)
        except BaseException:
            self._cleanup()
            raise
        try:
            self.hdus = list(self._fits)
        except BaseException:
            self.close()
            raise
        self._raw: bytes | None = None
        self._headers: dict[int, dict[str, Any]] = {}
        self.names = [str(h.get_extname() or "").strip().upper() for h in self.hdus]

    def _cleanup(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def close(self) -> None:
        try:
            self._fits.close()
        finally:
            self._cleanup()

    def __enter__(self) -> _FitsFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _bytes(self, start: int, stop: int) -> bytes:
        """Bytes ``start:stop`` of the (decompressed) file; fewer where the file ends first."""
        if self._gzipped:
            if self._raw is None:
                self._raw = self._fits.read_raw()
            return self._raw[start:stop]
        with open(self.path, "rb") as handle:
            handle.seek(start)
            return handle.read(max(0, stop - start))

    def _header_bytes(self, index: int) -> bytes:
        offsets = self.hdus[index].get_offsets()
        return self._bytes(int(offsets["header_start"]), int(offsets["data_start"]))

    def _check_variable_columns(self, index: int, names: Sequence[str]) -> None:
        """Refuse variable-length columns whose descriptors point outside the heap.

        cfitsio follows a damaged descriptor (a flipped byte in a count or an offset) out
        of the file's data and can crash the process, so the descriptors of the columns
        about to be read are checked first, from the raw bytes of the table.
        """
        header = self.header(index)
        layout = _table_layout(header)
        wanted = [(n, *layout[n]) for n in names if n in layout and layout[n][1] in "PQ"]
        if not wanted:
            return
        width, rows = int(header.get("NAXIS1") or 0), int(header.get("NAXIS2") or 0)
        pcount = int(header.get("PCOUNT") or 0)
        theap = int(header.get("THEAP") or width * rows)
        heap_size = pcount - (theap - width * rows)
        start = int(self.hdus[index].get_offsets()["data_start"])
        table = self._bytes(start, start + width * rows)
        heap_end = start + theap + heap_size
        if len(table) < width * rows or len(self._bytes(heap_end - 1, heap_end)) < 1:
            raise _NotKind("the file ends inside its table (truncated)")
        rows_bytes = np.frombuffer(table, dtype=np.uint8).reshape(rows, width)
        for name, offset, kind, element in wanted:
            size = 8 if kind == "P" else 16
            raw = np.ascontiguousarray(rows_bytes[:, offset : offset + size])
            pairs = raw.view(">i4" if kind == "P" else ">i8").reshape(rows, 2).astype(np.int64)
            count, where = pairs[:, 0], pairs[:, 1]
            if (
                (count < 0).any()
                or (where < 0).any()
                or ((where + count * element) > heap_size).any()
            ):
                raise _NotKind(
                    f"the {name} column points outside the table's data (damaged "
                    "variable-length array descriptors)"
                )

    def header(self, index: int) -> dict[str, Any]:
        """All keyword values of HDU ``index`` (parsed once)."""
        found = self._headers.get(index)
        if found is None:
            found = self._headers[index] = parse_header(self._header_bytes(index))
        return found

    def keyword(self, index: int, key: str) -> Any:
        """One keyword's value (stripped, upper-case string) or None.

        Only the card itself is parsed when the header has not been parsed yet.
        """
        if index in self._headers:
            value = self._headers[index].get(key)
        else:
            value = None
            block, name = self._header_bytes(index), key.ljust(8).encode("ascii")
            for k in range(0, len(block) - 79, 80):
                if block[k : k + 8] == name and block[k + 8 : k + 10] == b"= ":
                    value = parse_header(block[k : k + 80]).get(key)
                    break
                if block[k : k + 8] == b"END     ":
                    break
        return value.strip().upper() if isinstance(value, str) else value

    def is_table(self, index: int) -> bool:
        return self.hdus[index].get_exttype() == "BINARY_TBL"

    def columns(self, index: int) -> dict[str, str]:
        """Upper-case column name to the name in the file."""
        if not self.is_table(index):
            return {}
        return {str(c).upper(): str(c) for c in self.hdus[index].get_colnames()}

    def read(self, index: int, names: Sequence[str]) -> dict[str, np.ndarray]:
        """Columns by upper-case name (those absent are left out)."""
        have = self.columns(index)
        wanted = [have[n] for n in names if n in have]
        if not wanted:
            return {}
        self._check_variable_columns(index, [n for n in names if n in have])
        data = self.hdus[index].read(columns=wanted, vstorage="object")
        return {name.upper(): data[name] for name in wanted}

    def column_min(self, index: int, name: str) -> Any:
        """TLMIN of a column, or None."""
        header = self.header(index)
        for n in range(1, int(header.get("TFIELDS", 0) or 0) + 1):
            if str(header.get(f"TTYPE{n}", "")).strip().upper() == name:
                return header.get(f"TLMIN{n}")
        return None

    def sherpa_header(self, index: int, leave_out: set[str] | frozenset = frozenset()):
        """The header as Sherpa keeps it: no structural keywords, none of ``leave_out``."""
        return {
            k: v for k, v in self.header(index).items() if not _structural(k) and k not in leave_out
        }


def describe_problem(path: str, exc: BaseException | str, kind: str) -> str:
    """Say in a few words why a file could not be read (checks the whole file with astropy).

    Parameters
    ----------
    path : str
        The file.
    exc : Exception or str
        What went wrong while reading it.
    kind : {"pha", "arf", "rmf"}
        What the file should have been.
    """
    from astropy.io import fits

    what = {"arf": "an ARF", "rmf": "an RMF", "pha": "a PHA spectrum"}[kind]
    gzip_problem = _gzip_problem(path)
    if gzip_problem:
        return gzip_problem
    try:
        with pywarnings.catch_warnings(), fits.open(path, memmap=False) as hdus:
            pywarnings.simplefilter("ignore")  # the message says what is wrong
            hdus.verify("exception")
            for hdu in hdus:
                _ = hdu.data  # forces reading every data block
    except Exception as fits_exc:  # noqa: BLE001 - any failure here means a damaged file
        text = str(fits_exc).splitlines()[0] if str(fits_exc) else type(fits_exc).__name__
        return f"not a readable FITS file (truncated or corrupt: {text})"
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"could not be read as {what}: {msg.replace(path, '').strip(' :')}"


def _gzip_problem(path: str) -> str | None:
    """Why a gzip file cannot be decompressed (None when it is not gzip or decompresses)."""
    try:
        with open(path, "rb") as handle:
            if handle.read(2) != b"\x1f\x8b":
                return None
            handle.seek(0)
            inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
            while chunk := handle.read(1 << 20):
                inflate.decompress(chunk, 1 << 20)
                while inflate.unconsumed_tail:
                    inflate.decompress(inflate.unconsumed_tail, 1 << 20)
            if not inflate.eof:
                return "damaged gzip file: it ends before its compressed data does (truncated)"
    except zlib.error:
        return "damaged gzip file: its compressed data cannot be decompressed (corrupt)"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


def _existing(path: str) -> str:
    """The file itself, or its gzipped copy (as Sherpa looks for ``name.gz``)."""
    check_file_name(path)
    if os.path.isfile(path):
        return path
    if os.path.isfile(path + ".gz"):
        return path + ".gz"
    raise SpectrumFileError(path, "file not found")


_READ_ERRORS = (
    OSError, ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError,
    EOFError, MemoryError, RuntimeError, zlib.error, SherpaErr,
)  # fmt: skip
"""What reading a damaged file can raise (each becomes a one-line SpectrumFileError)."""


@contextlib.contextmanager
def _opened(path: str, kind: str) -> Iterator[_FitsFile]:
    """Open a FITS file; every failure becomes a one-line :class:`SpectrumFileError`."""
    try:
        with _FitsFile(path) as fits_file:
            yield fits_file
    except (SpectrumError, SpectrumFileError):
        raise
    except _NotKind as exc:
        raise SpectrumFileError(path, describe_problem(path, exc, kind)) from None
    except _READ_ERRORS as exc:
        raise SpectrumFileError(path, describe_problem(path, exc, kind)) from None


# --- responses ---------------------------------------------------------------------------
def _read_arf_file(path: str) -> DataARF:
    with _opened(path, "arf") as f:
        index = next((f.names.index(n) for n in ("SPECRESP", "AXAF_ARF") if n in f.names), None)
        if index is None:
            if len(f.hdus) < 2 or not (
                f.keyword(1, "HDUCLAS1") == "RESPONSE" and f.keyword(1, "HDUCLAS2") == "SPECRESP"
            ):
                raise _NotKind("no SPECRESP block")
            index = 1
        if not f.is_table(index):
            raise _NotKind("the SPECRESP block is not a binary table")
        cols = f.read(index, ("ENERG_LO", "ENERG_HI", "SPECRESP"))
        missing = [n for n in ("ENERG_LO", "ENERG_HI", "SPECRESP") if n not in cols]
        if missing:
            raise _NotKind(f"no {missing[0]} column")
        return DataARF(
            path,
            np.asarray(cols["ENERG_LO"], dtype=SherpaFloat),
            np.asarray(cols["ENERG_HI"], dtype=SherpaFloat),
            np.asarray(cols["SPECRESP"], dtype=SherpaFloat),
            exposure=f.header(index).get("EXPOSURE"),
            header=f.sherpa_header(index, {"EXPOSURE"}),
            ethresh=sherpa_io.ogip_emin,
        )


def _cells(column: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat values and number of values per row of a scalar, fixed or variable-length column."""
    col = np.asarray(column)
    if col.dtype == object:
        rows = [np.ravel(np.asarray(cell)) for cell in col]
        lengths = np.array([r.size for r in rows], dtype=np.int64)
        flat = np.concatenate(rows) if rows else np.zeros(0)
        return flat, lengths
    if col.ndim == 1:
        return col, np.ones(len(col), dtype=np.int64)
    flat = col.reshape(len(col), -1)
    return flat.ravel(), np.full(len(col), flat.shape[1], dtype=np.int64)


def _leading(flat: np.ndarray, lengths: np.ndarray, take: np.ndarray):
    """The first ``take[r]`` values of each row ``r`` (fewer where a row is shorter)."""
    take = np.minimum(np.asarray(take, dtype=np.int64), lengths)
    starts = np.cumsum(lengths) - lengths
    row = np.repeat(np.arange(len(take)), take)
    within = np.arange(int(take.sum())) - np.repeat(np.cumsum(take) - take, take)
    return flat[starts[row] + within], take


def _is_matrix_block(f: _FitsFile, index: int) -> bool:
    """Is HDU ``index`` an OGIP response matrix (HDUCLAS1/2 = RESPONSE/RSP_MATRIX)?"""
    return (
        f.keyword(index, "HDUCLAS1") == "RESPONSE" and f.keyword(index, "HDUCLAS2") == "RSP_MATRIX"
    )


def _read_rmf_file(path: str) -> DataRMF:
    with _opened(path, "rmf") as f:
        blocks = [
            i
            for i, name in enumerate(f.names)
            if f.is_table(i) and (name in RMF_BLOCK_NAMES or _is_matrix_block(f, i))
        ]
        if not blocks:
            raise _NotKind("no MATRIX block")
        if len(blocks) > 1:
            log.warning(
                "RMF in %s contains %d MATRIX blocks; like Sherpa, only the first is used",
                path,
                len(blocks),
            )
        index = blocks[0]
        header = f.header(index)
        if header.get("DETCHANS") is None:
            raise _NotKind("no DETCHANS keyword")
        if "EBOUNDS" not in f.names:
            raise _NotKind("no EBOUNDS block")
        eb_index = f.names.index("EBOUNDS")
        names = ("ENERG_LO", "ENERG_HI", "N_GRP", "F_CHAN", "N_CHAN", "MATRIX")
        cols = f.read(index, names)
        ebounds = f.read(eb_index, ("CHANNEL", "E_MIN", "E_MAX"))
        missing = [n for n in names if n not in cols] + [
            n for n in ("CHANNEL", "E_MIN", "E_MAX") if n not in ebounds
        ]
        if missing:
            raise _NotKind(f"no {missing[0]} column")

        offset = f.column_min(index, "F_CHAN")
        if offset is None:
            offset = f.column_min(eb_index, "CHANNEL")
        if offset is None:
            offset = 1
            log.warning("%s: no TLMIN for F_CHAN or CHANNEL; channels taken to start at 1", path)
        if isinstance(offset, str):
            offset = int(float(offset))

        n_grp = np.asarray(cols["N_GRP"]).astype(np.int64).ravel()
        good = n_grp > 0
        ng = n_grp[good]
        f_chan, per_row = _leading(*_cells(np.asarray(cols["F_CHAN"])[good]), ng)
        n_chan, _ = _leading(*_cells(np.asarray(cols["N_CHAN"])[good]), ng)
        row_of_group = np.repeat(np.arange(len(ng)), per_row)
        in_row = np.bincount(row_of_group, weights=n_chan, minlength=len(ng)).astype(np.int64)
        matrix, _ = _leading(*_cells(np.asarray(cols["MATRIX"])[good]), in_row)

        rmf_header = f.sherpa_header(index, {"DETCHANS"})
        rmf_class = DataRosatRMF if rmf_header.get("TELESCOP") == "ROSAT" else DataRMF
        return rmf_class(
            path,
            int(header["DETCHANS"]),
            np.asarray(cols["ENERG_LO"], dtype=SherpaFloat),
            np.asarray(cols["ENERG_HI"], dtype=SherpaFloat),
            n_grp.astype(SherpaUInt),
            f_chan.astype(SherpaUInt),
            n_chan.astype(SherpaUInt),
            matrix.astype(SherpaFloat),
            offset=offset,
            e_min=np.asarray(ebounds["E_MIN"], dtype=SherpaFloat),
            e_max=np.asarray(ebounds["E_MAX"], dtype=SherpaFloat),
            header=rmf_header,
            ethresh=sherpa_io.ogip_emin,
        )


def read_arf(path: str | os.PathLike, cache: ResponseFileCache | None = None) -> DataARF:
    """Read an ARF into a Sherpa ``DataARF`` (from ``cache`` when it was read before).

    Parameters
    ----------
    path : str or path-like
        The ARF (``name.gz`` is used when only that exists).
    cache : ResponseFileCache, optional
        Objects already read.

    Raises
    ------
    SpectrumFileError
        Missing, not FITS, damaged, or not an ARF.
    """
    path = _existing(os.fspath(path))
    return _read_arf_file(path) if cache is None else cache.get("arf", path, _read_arf_file)


def read_rmf(path: str | os.PathLike, cache: ResponseFileCache | None = None) -> DataRMF:
    """Read an RMF into a Sherpa ``DataRMF`` (from ``cache`` when it was read before).

    Parameters
    ----------
    path : str or path-like
        The RMF (``name.gz`` is used when only that exists).
    cache : ResponseFileCache, optional
        Objects already read.

    Raises
    ------
    SpectrumFileError
        Missing, not FITS, damaged, or not an RMF.
    """
    path = _existing(os.fspath(path))
    return _read_rmf_file(path) if cache is None else cache.get("rmf", path, _read_rmf_file)


# --- spectra -------------------------------------------------------------------------------
@dataclass
class PHABlock:
    """One spectrum as read from its file, before any response or background is attached.

    Parameters
    ----------
    path : str
        The file.
    pha : sherpa.astro.data.DataPHA
        The spectrum (no response, no background).
    files : dict
        RESPFILE, ANCRFILE and BACKFILE as written in the header (None when absent);
        Sherpa leaves them out of ``pha.header``.
    extra_backgrounds : list of DataPHA
        Backgrounds held in BACKGROUND_UP/BACKGROUND_DOWN columns.
    """

    path: str
    pha: DataPHA
    files: dict[str, Any]
    extra_backgrounds: list[DataPHA] = field(default_factory=list)


def _spectrum_index(f: _FitsFile, use_background: bool) -> int:
    """The SPECTRUM block Sherpa would read (the BKG block of a pha3 file for a background)."""
    if "SPECTRUM" in f.names:
        index = f.names.index("SPECTRUM")
    elif len(f.hdus) > 1 and f.keyword(1, "HDUCLAS1") == "SPECTRUM":
        index = 1
    else:
        raise _NotKind("no SPECTRUM block")
    if use_background:
        for i in range(len(f.hdus)):
            if f.is_table(i) and f.keyword(i, "HDUCLAS2") == "BKG":
                index = i
    if not f.is_table(index):
        raise _NotKind("the SPECTRUM block is not a binary table")
    return index


def _scalar(value: Any) -> Any:
    """A keyword value as Sherpa passes it on (strings become numbers)."""
    if isinstance(value, str):
        return float(value)
    if isinstance(value, bool | np.bool_):
        return int(value)
    return value


def read_pha_block(
    path: str | os.PathLike, *, use_errors: bool = False, use_background: bool = False
) -> PHABlock:
    """Read one type I spectrum into a ``DataPHA`` (no response or background attached).

    Parameters
    ----------
    path : str or path-like
        The PHA file (``name.gz`` is used when only that exists).
    use_errors : bool, optional
        Keep STAT_ERR and SYS_ERR (Sherpa's ``use_errors``; default False).
    use_background : bool, optional
        The file is read as a background: the ``HDUCLAS2 = 'BKG'`` block of a file that
        has one (Chandra Source Catalog ``pha3``) is taken.

    Raises
    ------
    SpectrumFileError
        Missing, not FITS, damaged, or not a PHA spectrum.
    SpectrumError
        A type II file (several spectra).
    """
    path = _existing(os.fspath(path))
    with _opened(path, "pha") as f:
        index = _spectrum_index(f, use_background)
        header = f.header(index)
        wanted = (
            "CHANNEL", "COUNTS", "RATE", "STAT_ERR", "SYS_ERR", "GROUPING", "QUALITY",
            "BACKSCAL", "AREASCAL", "BACKGROUND_UP", "BACKGROUND_DOWN", "BACKSCUP", "BACKSCDN",
        )  # fmt: skip
        special = ("TG_M", "TG_PART", "TG_SRCID", "SPEC_NUM")
        cols = f.read(index, wanted + special)
        if "CHANNEL" not in cols:
            raise _NotKind("no CHANNEL column")
        channel = column_numbers(path, "CHANNEL", cols["CHANNEL"])
        pha_header = f.sherpa_header(index, _PHA_NOT_IN_HEADER)
        if channel.ndim == 2:
            if len(channel) != 1:
                raise SpectrumError(
                    path,
                    f"type II PHA file holding {len(channel)} spectra; sherpa_latent needs one "
                    "(type I)",
                )
            # One spectrum in a type II file: Sherpa reads it as that spectrum, its TG_M,
            # TG_PART, TG_SRCID and SPEC_NUM columns becoming keywords.
            cols = {k: np.asarray(v)[0] for k, v in cols.items()}
            channel = channel[0]
            for key in special:
                pha_header.pop(key, None)
            pha_header.update({k: cols[k] for k in special if k in cols})
        exposure = keyword_number(path, "EXPOSURE", header.get("EXPOSURE"))
        if "COUNTS" in cols:
            counts = column_numbers(path, "COUNTS", cols["COUNTS"])
        elif "RATE" in cols:
            if exposure is None:
                raise _NotKind("a RATE column but no EXPOSURE keyword")
            counts = column_numbers(path, "RATE", cols["RATE"]) * exposure
            if "STAT_ERR" in cols:
                cols["STAT_ERR"] = column_numbers(path, "STAT_ERR", cols["STAT_ERR"]) * exposure
        else:
            raise _NotKind("no COUNTS or RATE column")
        nrows = len(channel)

        def value(name: str, expand: bool = False):
            if name in cols:
                column = column_numbers(path, name, cols[name])
                return column[()] if column.ndim == 0 else column
            found = _scalar(keyword_number(path, name, header.get(name)))
            if found is None or not expand:
                return found
            return np.full(nrows, found, dtype=SherpaFloat)

        staterr = syserr = None
        if use_errors:
            staterr, syserr = value("STAT_ERR", True), value("SYS_ERR", True)
            staterr = None if staterr is not None and np.all(staterr == 0) else staterr
            syserr = None if syserr is not None and np.all(syserr == 0) else syserr
        kwargs = {
            "channel": channel,
            "grouping": cols.get("GROUPING"),
            "quality": cols.get("QUALITY"),
            "exposure": exposure,
            "header": pha_header,
        }
        pha = DataPHA(
            path,
            counts=counts,
            staterror=staterr,
            syserror=syserr,
            backscal=value("BACKSCAL"),
            areascal=value("AREASCAL"),
            **kwargs,
        )
        extra = [
            DataPHA(
                path,
                counts=column_numbers(path, name, cols[name]),
                backscal=value(scale),
                **{**kwargs, "header": dict(kwargs["header"])},
            )
            for name, scale in (("BACKGROUND_UP", "BACKSCUP"), ("BACKGROUND_DOWN", "BACKSCDN"))
            if name in cols
        ]
        files = {k: header.get(k) for k in _FILE_KEYS}
    return PHABlock(path=path, pha=pha, files=files, extra_backgrounds=extra)


def find_named_file(name: Any, base_dir: str) -> tuple[str | None, list[str]]:
    """Find the file a header keyword names: as written, beside the PHA, with/without .gz.

    Parameters
    ----------
    name : str or None
        The keyword's value (None, "", "none" or "null": no file).
    base_dir : str
        Folder of the PHA file (relative names are taken from there).

    Returns
    -------
    tuple
        The path found (or None) and the candidates tried.
    """
    if name is None:
        return None, []
    name = str(name).strip()
    if name.lower() in ("", "none", "null"):
        return None, []
    stem = name[:-3] if name.endswith(".gz") else name
    variants = [name, stem + ".gz" if stem == name else stem]
    candidates: list[str] = []
    for variant in variants:
        candidates.append(variant if os.path.isabs(variant) else os.path.join(base_dir, variant))
        candidates.append(os.path.join(base_dir, os.path.basename(variant)))
    seen: list[str] = []
    for cand in candidates:
        if cand not in seen:
            seen.append(cand)
            if os.path.isfile(cand):
                return cand, seen
    return None, seen


def header_file_names(path: str | os.PathLike) -> dict[str, Any]:
    """RESPFILE, ANCRFILE and BACKFILE as written in a spectrum's header (None if absent).

    Raises
    ------
    SpectrumFileError
        The file is missing or not readable FITS.
    """
    path = _existing(os.fspath(path))
    with _opened(path, "pha") as f:
        for i in range(1, len(f.hdus)):
            if f.names[i] == "SPECTRUM" or f.keyword(i, "HDUCLAS1") == "SPECTRUM":
                header = f.header(i)
                return {k: header.get(k) for k in _FILE_KEYS}
    return dict.fromkeys(_FILE_KEYS)


def read_background(
    path: str | os.PathLike,
    *,
    cache: ResponseFileCache | None = None,
    use_errors: bool = False,
    warnings: list[str] | None = None,
) -> DataPHA:
    """Read a background spectrum with the ARF and RMF its own header names.

    As Sherpa: the ``BKG`` block of a ``pha3`` file, responses named by the background's
    RESPFILE/ANCRFILE (a named file that is not there is skipped with a warning), none
    when it names none (the source's are attached by ``DataPHA.set_background``).

    Parameters
    ----------
    path : str or path-like
        The background file.
    cache : ResponseFileCache, optional
        Responses already read.
    use_errors : bool, optional
        Keep STAT_ERR and SYS_ERR.
    warnings : list of str, optional
        Receives a line for each response named but not found.
    """
    block = read_pha_block(path, use_errors=use_errors, use_background=True)
    base_dir = os.path.dirname(os.path.abspath(block.path))
    responses = []
    for key, reader in (("ANCRFILE", read_arf), ("RESPFILE", read_rmf)):
        found, tried = find_named_file(block.files.get(key), base_dir)
        if found is None and tried and warnings is not None:
            warnings.append(
                f"{key} of background {os.path.basename(block.path)} not found ({tried[0]})"
            )
        responses.append(None if found is None else reader(found, cache))
    block.pha.set_response(*responses)
    return block.pha


@dataclass
class SpectrumRead:
    """A spectrum read with its response and background.

    Parameters
    ----------
    pha : sherpa.astro.data.DataPHA
        With the ARF, RMF and background(s) attached, analysis in energy.
    warnings : list of str
        Problems that did not stop the reading (a background named but not found).
    """

    pha: DataPHA
    warnings: list[str] = field(default_factory=list)


def _required_rmf(path: str, files: dict, base_dir: str) -> str:
    found, tried = find_named_file(files.get("RESPFILE"), base_dir)
    if found is not None:
        return found
    if not tried:
        raise SpectrumError(path, "no response (RMF): RESPFILE is not set; pass it explicitly")
    raise SpectrumError(path, f"response (RMF) named in RESPFILE not found (looked for {tried[0]})")


def read_spectrum(
    path: str | os.PathLike,
    *,
    arf: str | os.PathLike | None = None,
    rmf: str | os.PathLike | None = None,
    background: str | os.PathLike | None = None,
    cache: ResponseFileCache | None = None,
    use_errors: bool = False,
    check: Callable[[DataPHA], None] | None = None,
) -> SpectrumRead:
    """Read a type I spectrum with its RMF, ARF and background, as Sherpa's ``load_pha``.

    Parameters
    ----------
    path : str or path-like
        The PHA file.
    arf, rmf, background : str or path-like, optional
        Files to use instead of those named by ANCRFILE, RESPFILE and BACKFILE. Header
        names are looked for as written (relative to the PHA's folder), beside the PHA,
        and with or without ``.gz``.
    cache : ResponseFileCache, optional
        Responses already read (default: the one set by :func:`using_cache`, else none:
        every response is read).
    use_errors : bool, optional
        Keep STAT_ERR and SYS_ERR.
    check : callable, optional
        Called with the spectrum before any response is read (to refuse it early).

    Returns
    -------
    SpectrumRead

    Raises
    ------
    SpectrumFileError
        A file is missing, not FITS, damaged, or not what it should be.
    SpectrumError
        Type II file, no RMF, an ARF named but not found, or a response or background
        with another number of channels.
    """
    path = os.fspath(path)
    check_file_name(path)
    if not os.path.isfile(path) and not os.path.isfile(path + ".gz"):
        raise SpectrumFileError(path, "file not found")
    cache = active_cache() if cache is None else cache
    block = read_pha_block(path, use_errors=use_errors)
    pha = block.pha
    if check is not None:
        check(pha)
    nchan = len(pha.channel)
    base_dir = os.path.dirname(os.path.abspath(path))
    warnings: list[str] = []

    rmf_path = os.fspath(rmf) if rmf is not None else _required_rmf(path, block.files, base_dir)
    rmf_obj = read_rmf(rmf_path, cache)
    if int(rmf_obj.detchans) != nchan:
        raise SpectrumError(
            path,
            f"RMF {os.path.basename(str(rmf_obj.name))} has {int(rmf_obj.detchans)} channels "
            f"but the spectrum has {nchan}",
        )
    arf_obj = None
    if arf is not None:
        arf_obj = read_arf(arf, cache)
    else:
        found, tried = find_named_file(block.files.get("ANCRFILE"), base_dir)
        if found is not None:
            arf_obj = read_arf(found, cache)
        elif tried:
            raise SpectrumError(
                path, f"ARF named in ANCRFILE not found (looked for {', '.join(tried)})"
            )
    pha.set_response(arf_obj, rmf_obj)

    backgrounds = []
    bkg_path = None
    if background is not None:
        bkg_path = os.fspath(background)
    else:
        bkg_path, tried = find_named_file(block.files.get("BACKFILE"), base_dir)
        if bkg_path is None and tried:
            warnings.append(
                f"background file named in BACKFILE not found ({tried[0]}); "
                "going on without a background"
            )
    if bkg_path is not None:
        bkg = read_background(bkg_path, cache=cache, use_errors=use_errors, warnings=warnings)
        if len(bkg.channel) != nchan:
            raise SpectrumError(
                path,
                f"background {os.path.basename(bkg_path)} has {len(bkg.channel)} channels but "
                f"the spectrum has {nchan}",
            )
        backgrounds.append(bkg)
    for extra in block.extra_backgrounds:
        extra.set_response(arf_obj, rmf_obj)
        backgrounds.append(extra)
    for idx, bkg in enumerate(backgrounds, 1):
        if len(bkg.channel) == nchan and np.any(bkg.channel != pha.channel):
            raise SpectrumError(
                path, f"background {os.path.basename(bkg.name)} has other channel numbers"
            )
        pha.set_background(bkg, idx)
    pha.set_analysis("energy")
    return SpectrumRead(pha=pha, warnings=warnings)
