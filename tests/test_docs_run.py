"""Every code block of README.md and docs/user-guide.md runs as written (issue 13, point 7).

A block marked ``<!-- example: examples/NAME.py -->`` is a literal part of that script
(tests/test_examples.py checks that, and runs the script); every other block runs here:

- ``python`` blocks, each in a fresh interpreter, in a folder holding copies of the
  spectra and responses that ship inside the installed ``sherpa`` package;
- ``bash`` blocks, line by line, in that folder (``sherpa-latent ...`` through this
  environment's command; ``python examples/...`` from the repository root), except the
  two set-up commands, which ``.ci/run`` runs on every clean clone (checked here);
- ``text`` blocks are what the code before them prints: every number they quote must be
  printed by that code (the block's own run, or the example script's run for a block
  that follows an example-marked one).

Blocks without a language (the README's tree of files) are not code; tests/test_layout.py
checks that one against the tree.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "docs" / "user-guide.md"]
SETUP_COMMANDS = ("bash scripts/setup.sh", "bash scripts/test.sh")

FENCE = re.compile(
    r"^(?P<fence>```+)(?P<lang>[\w-]*)[ \t]*\n(?P<body>.*?)\n(?P=fence)[ \t]*$", re.M | re.S
)
MARKER = re.compile(r"<!--\s*example:\s*(?P<path>\S+)\s*-->\s*$")
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w])")


@dataclass(frozen=True)
class Block:
    doc: str
    line: int
    lang: str
    body: str
    example: str | None

    @property
    def name(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    """The fenced blocks of a Markdown file, each with the example it is marked as."""
    text = path.read_text(encoding="utf-8")
    out = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").splitlines()
        marker = MARKER.search(before[-1]) if before else None
        out.append(
            Block(
                doc=str(path.relative_to(ROOT)),
                line=text.count("\n", 0, match.start()) + 1,
                lang=match["lang"],
                body=match["body"],
                example=marker["path"] if marker else None,
            )
        )
    return out


ALL_BLOCKS = [block for doc in DOCS for block in blocks_of(doc)]
CODE = [b for b in ALL_BLOCKS if b.lang in ("python", "bash") and b.example is None]


def _source_of(block: Block) -> Block | None:
    """The code block whose output a text block shows: the nearest code block before it."""
    same_doc = [b for b in ALL_BLOCKS if b.doc == block.doc and b.line < block.line]
    code = [b for b in same_doc if b.lang in ("python", "bash")]
    return code[-1] if code else None


OUTPUTS = [(b, _source_of(b)) for b in ALL_BLOCKS if b.lang == "text"]


def test_every_block_has_a_known_kind() -> None:
    """python, bash and text blocks run or are checked; only the README tree has no language."""
    kinds = Counter(b.lang for b in ALL_BLOCKS)
    assert set(kinds) <= {"python", "bash", "text", ""}, kinds
    bare = [b for b in ALL_BLOCKS if b.lang == ""]
    assert [b.doc for b in bare] == ["README.md"], [b.name for b in bare]
    assert bare[0].body.startswith("sherpa_latent/"), "the bare block is not the layout tree"
    for text, source in OUTPUTS:
        assert source is not None, f"{text.name}: output with no code before it"


def test_setup_commands_are_what_ci_runs() -> None:
    """The README's two set-up commands are the ones .ci/run runs on a clean clone."""
    readme = [b for b in ALL_BLOCKS if b.doc == "README.md" and b.lang == "bash"]
    commands = [b.body.strip() for b in readme if b.body.strip() in SETUP_COMMANDS]
    assert commands == list(SETUP_COMMANDS)
    ci = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert [c for c in ci if c in SETUP_COMMANDS] == list(SETUP_COMMANDS)


@pytest.fixture(scope="module")
def data_folder(tmp_path_factory) -> Path:
    """A folder with copies of the spectra, responses and stacks of the sherpa package."""
    import sherpa

    source = Path(sherpa.__file__).parent / "astro" / "datastack" / "tests" / "data"
    folder = tmp_path_factory.mktemp("docs")
    for path in source.iterdir():
        shutil.copy(path, folder / path.name)
    return folder


def _env() -> dict[str, str]:
    bindir = str(Path(sys.executable).parent)
    return dict(
        os.environ,
        MPLBACKEND="Agg",
        PATH=bindir + os.pathsep + os.environ.get("PATH", ""),
        PYTHONPATH=str(ROOT),
        OMP_NUM_THREADS="1",
    )


def _run(args: list[str], cwd: Path, what: str) -> str:
    run = subprocess.run(
        args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600, check=False
    )
    assert run.returncode == 0, (
        f"{what} exited {run.returncode}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    )
    return run.stdout


def _commands(body: str) -> list[str]:
    """The commands of a bash block: one per line, comments and blank lines left out."""
    out = []
    for line in body.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(shlex.join(words))
    return out


_RESULTS: dict[str, str] = {}


def run_block(block: Block, folder: Path) -> str:
    """Run one unmarked code block as written; its standard output."""
    if block.name in _RESULTS:
        return _RESULTS[block.name]
    if block.lang == "python":
        output = _run([sys.executable, "-c", block.body], folder, block.name)
    else:
        output = ""
        for command in _commands(block.body):
            if command in SETUP_COMMANDS:
                continue  # .ci/run runs these (test_setup_commands_are_what_ci_runs)
            words = shlex.split(command)
            if words[0] == "python":
                output += _run([sys.executable, *words[1:]], ROOT, f"{block.name}: {command}")
            else:
                assert words[0] in ("sherpa-latent", "cd", "ls"), f"{block.name}: {command}"
                output += _run(["bash", "-c", command], folder, f"{block.name}: {command}")
    _RESULTS[block.name] = output
    return output


@cache
def example_output(script: str, folder: Path) -> str:
    """Standard output of an example script run into a fresh folder."""
    outdir = folder / ("out_" + Path(script).stem)
    outdir.mkdir()
    return _run([sys.executable, str(ROOT / script), str(outdir)], ROOT, script)


@pytest.mark.parametrize("block", CODE, ids=[b.name for b in CODE])
def test_code_block_runs(block: Block, data_folder: Path) -> None:
    from conftest import require_default_network

    require_default_network()
    run_block(block, data_folder)


def numbers(text: str) -> Counter:
    return Counter(NUMBER.findall(text))


@pytest.mark.parametrize("pair", OUTPUTS, ids=[t.name for t, _ in OUTPUTS])
def test_printed_values_match_the_text(pair: tuple[Block, Block], data_folder: Path) -> None:
    """Every number a text block quotes is printed by the code it follows."""
    from conftest import require_default_network

    require_default_network()
    text, source = pair
    if source.example is not None:
        printed = example_output(source.example, data_folder)
    else:
        printed = run_block(source, data_folder)
    missing = numbers(text.body) - numbers(printed)
    assert not missing, (
        f"{text.name} quotes {sorted(missing)} that {source.name} did not print:\n{printed}"
    )
