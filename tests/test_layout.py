"""The layout of docs/architecture.md holds: layers, no cycles, no training stack at run time.

The layer table is read from docs/architecture.md itself, so the rule a newcomer reads is
the rule this test applies.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "sherpa_latent"
ARCHITECTURE = REPO / "docs" / "architecture.md"
LAZY_TRAINING_ALLOWED = {"cli"}
"""Runtime modules that may import training modules inside a function."""
TORCH_FREE_LAYERS = (0, 1, 2)
TORCH_FREE_EXTRA = {"clusters"}


@dataclass(frozen=True)
class Import:
    source: str  # importing module, relative to the package ("" is the package itself)
    target: str  # imported module, relative to the package
    line: int
    at_load: bool  # runs when the module is loaded (not inside a function)


def layer_table() -> dict[str, int]:
    """Module -> layer, from the table in docs/architecture.md."""
    layers = {}
    for line in ARCHITECTURE.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\|\s*(\d+)\s*\|[^|]*\|([^|]*)\|", line)
        if match:
            for name in re.findall(r"`([a-z_.]+)`", match.group(2)):
                layers["" if name == "sherpa_latent" else name] = int(match.group(1))
    return layers


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _function_nodes(tree: ast.AST) -> set[int]:
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            inside.update(id(n) for n in ast.walk(node) if n is not node)
    return inside


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                guarded.update(id(n) for n in ast.walk(child))
    return guarded


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """Imports of package modules by one module (type-checking-only imports left out)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    in_function = _function_nodes(tree)
    typing_only = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        targets = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".") if package else []
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.split(".")[0] == "sherpa_latent":
                stem = node.module.partition(".")[2]
            else:
                continue
            for alias in node.names:
                sub = f"{stem}.{alias.name}" if stem else alias.name
                targets.append(sub if sub in modules else stem)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sherpa_latent":
                    targets.append(alias.name.partition(".")[2])
        for target in targets:
            found.append(Import(name, target, node.lineno, id(node) not in in_function))
    return found


def all_imports() -> list[Import]:
    modules = package_modules()
    return [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]


def test_every_module_has_a_layer() -> None:
    layers = layer_table()
    assert layers, "no layer table found in docs/architecture.md"
    missing = sorted(set(package_modules()) - set(layers))
    assert not missing, f"modules missing from the layer table of docs/architecture.md: {missing}"
    stale = sorted(set(layers) - set(package_modules()))
    assert not stale, f"docs/architecture.md lists modules that do not exist: {stale}"


def test_imports_follow_the_layers() -> None:
    layers = layer_table()
    broken = []
    for imp in all_imports():
        if imp.target == imp.source:
            continue
        src, dst = layers[imp.source], layers[imp.target]
        if dst <= src:
            continue
        if imp.source in LAZY_TRAINING_ALLOWED and imp.target.startswith("training") and not (
            imp.at_load
        ):
            continue
        broken.append(f"{imp.source or 'sherpa_latent'}:{imp.line} imports {imp.target}")
    assert not broken, "imports against docs/architecture.md's layers:\n" + "\n".join(broken)


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {name: set() for name in package_modules()}
    for imp in all_imports():
        if imp.at_load and imp.target != imp.source:
            graph[imp.source].add(imp.target)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(m or "sherpa_latent" for m in cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_the_rules_catch_a_breach(tmp_path: Path) -> None:
    """The walker sees relative, absolute and function-level imports (so the rules can fail)."""
    source = tmp_path / "probe.py"
    source.write_text(
        "from .training.shards import read_shard\n"
        "import sherpa_latent.network\n"
        "def f():\n    from . import plotting\n"
        "if TYPE_CHECKING:\n    from .report import SpectrumReport\n"
    )
    modules = package_modules()
    found = {(i.target, i.at_load) for i in imports_of("grids", source, modules)}
    assert found == {("training.shards", True), ("network", True), ("plotting", False)}


def test_no_code_replaces_an_attribute_of_a_sherpa_module() -> None:
    """Nothing assigns to (or setattr's on) a name imported from the sherpa package."""
    offences = []
    for path in package_modules().values():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        sherpa_names = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "sherpa":
                        sherpa_names.add((alias.asname or alias.name).split(".")[0])
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                if node.module.split(".")[0] == "sherpa":
                    sherpa_names.update(a.asname or a.name for a in node.names)
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name):
                        if sub.value.id in sherpa_names:
                            offences.append(f"{path.name}:{node.lineno} {ast.unparse(sub)}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("setattr", "delattr")
                and node.args
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id in sherpa_names
            ):
                offences.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    assert not offences, "code that replaces attributes of Sherpa modules: " + ", ".join(offences)


def _modules_after(code: str) -> set[str]:
    run = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print('\\n'.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr
    return set(run.stdout.split())


def test_runtime_imports_no_training_stack() -> None:
    loaded = _modules_after(
        "import sherpa_latent.inference, sherpa_latent.ui, sherpa_latent.report"
    )
    ours = sorted(m for m in loaded if m.startswith("sherpa_latent"))
    assert not [m for m in ours if m.startswith("sherpa_latent.training")], ours
    assert "sklearn.mixture" not in loaded and "tqdm" not in loaded


def test_encoding_a_spectrum_imports_no_training_stack(pha_3c273: Path) -> None:
    from conftest import require_default_network

    require_default_network()
    loaded = _modules_after(
        "from sherpa_latent import load_spectrum\n"
        "from sherpa_latent.inference import load_encoder\n"
        f"result = load_encoder(device='cpu').encode([load_spectrum({str(pha_3c273)!r})])[0]\n"
        "assert result.cluster >= 0\n"
    )
    assert not [m for m in loaded if m.startswith("sherpa_latent.training")]
    assert "sklearn.mixture" not in loaded
    # torch itself loads tqdm (through torch.hub); encoding must add nothing of the kind.
    if "tqdm" in loaded:
        assert "tqdm" in _modules_after("import torch")


def test_reading_and_hardness_do_not_import_torch() -> None:
    layers = layer_table()
    light = sorted(
        n
        for n, layer in layers.items()
        if n and (layer in TORCH_FREE_LAYERS or n in TORCH_FREE_EXTRA)
    )
    loaded = _modules_after("\n".join(f"import sherpa_latent.{n}" for n in light))
    assert "torch" not in loaded, f"one of {light} imports torch"


def test_readme_layout_matches_the_tree() -> None:
    """Every module is in README.md's layout, and everything it names exists."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    listed: set[str] = set()
    folder = ""
    for line in block.splitlines():
        match = re.match(r"^(\s*)([\w./]+)", line)
        if not match:
            continue
        indent, name = len(match.group(1)), match.group(2)
        if name.endswith("/") and indent <= 2:
            folder = "" if name == "sherpa_latent/" else name
            if indent == 0 and name != "sherpa_latent/":
                assert (REPO / name).is_dir(), f"README.md names {name}, which is not here"
                folder = None
            continue
        if folder is not None and name.endswith(".py"):
            listed.add(folder + name)
    on_disk = {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if p.name != "__init__.py"
    }
    assert listed == on_disk, (
        f"README.md layout lacks {sorted(on_disk - listed)} and names missing "
        f"{sorted(listed - on_disk)}"
    )
