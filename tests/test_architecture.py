"""The package's rooms and which may use which, read from the source with :mod:`ast` (every ``import``, at the
top, in a function or under ``TYPE_CHECKING``).

The command line is one-way: ``cli.py`` is the entry, which loads a command's module when it is dispatched; a
command uses the shared helpers of ``commands/_*.py`` and the library; the library knows nothing of either.
The mapping is pure: the OpenTelemetry SDK is adapted in ``sdk.py``, which the mapping does not reach. The
tables' layout under a location (the ``dt=`` folders) is written down once, in ``location.py``.
"""

from __future__ import annotations

import ast
import itertools
import re
from collections.abc import Iterator
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
PACKAGE = REPOSITORY / "otel_datasink"
"""The checkout's source, which these rules are about (CI tests an installed copy: ARCHITECTURE.md is not in it)."""
CLI = "otel_datasink.cli"
COMMANDS = "otel_datasink.commands"
MAPPING = "otel_datasink.mapping"
SDK_ADAPTER = "otel_datasink.sdk"
SDK = "opentelemetry.sdk"
LOCATION = "otel_datasink.location"
PARTITION_COLUMN = "PARTITION_COLUMN"


def _modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    return modules


def _imported(name: str, path: Path, modules: dict[str, Path], *, at_import: bool = False) -> Iterator[str]:
    """The modules of the package that module ``name`` imports: ``from a import b`` is module ``a.b`` when there
    is one, else ``a``; relative imports resolved. ``at_import``: only what importing it runs at once, its
    top-level imports (not those in functions, nor those under ``if TYPE_CHECKING``, which never run)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    nodes = _run_at_import(tree.body) if at_import else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base


def _run_at_import(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    for node in body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            yield from _run_at_import(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            yield from _run_at_import(node.body + node.orelse + node.finalbody)
        else:
            yield node


def _is_command_side(name: str) -> bool:
    return name == CLI or name == COMMANDS or name.startswith(COMMANDS + ".")


def _is_command(name: str) -> bool:
    """A command's own module (``commands/query.py``), not a shared helper (``commands/_args.py``)."""
    return name.startswith(COMMANDS + ".") and not name.rpartition(".")[2].startswith("_")


def _forbidden(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported``, or None."""
    if imported == CLI and importer != CLI:
        return "only the console script and python -m load cli.py: shared helpers live in commands/_*.py"
    if not _is_command_side(importer) and _is_command_side(imported):
        return "the library imports nothing of the command line"
    if _is_command_side(importer) and _is_command(imported) and imported != importer:
        return "only cli.py loads a command's module (when dispatched): what commands share goes in commands/_*.py"
    return None


def _violations() -> list[str]:
    modules = _modules()
    found = []
    for name, path in modules.items():
        for imported in sorted(set(_imported(name, path, modules))):
            why = _forbidden(name, imported)
            if why:
                found.append(f"{name} imports {imported}: {why}")
    return found


def test_the_cli_is_one_way():
    assert _violations() == []


def _import_names(path: Path) -> Iterator[str]:
    """The module each absolute import of a module names (``from a.b import c`` names ``a.b``)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.module


def _top_level_imports(path: Path) -> set[str]:
    """The top-level names of the absolute imports of a module (``argparse``, ``otel_datasink``)."""
    return {name.partition(".")[0] for name in _import_names(path)}


def test_the_library_reads_no_command_line():
    # A setting's text is read and checked by the library (ValueError); making that an argparse error is the
    # command's part (commands/collector.py's flags of the collector's settings).
    readers = [name for name, path in _modules().items() if "argparse" in _top_level_imports(path)]
    assert [name for name in readers if not _is_command_side(name)] == []


def test_no_module_imports_itself_back_when_imported():
    """No import loop: following the top-level imports from any module never comes back to it (a loop works only
    while its modules happen to be imported in one order, and breaks on the first new import)."""
    modules = _modules()
    graph = {name: set(_imported(name, path, modules, at_import=True)) - {name} for name, path in modules.items()}
    loops = []
    for start in graph:
        seen, stack = set(), [(start, (start,))]
        while stack:
            name, trail = stack.pop()
            for imported in graph.get(name, ()):
                if imported == start:
                    loops.append(" -> ".join((*trail, start)))
                elif imported not in seen:
                    seen.add(imported)
                    stack.append((imported, (*trail, imported)))
    assert loops == []


def test_every_module_is_on_the_map_and_the_map_names_no_module_that_is_gone():
    """ARCHITECTURE.md names every module of the package by its path, and only modules that exist."""
    named = set(re.findall(r"`(otel_datasink/[\w/]+\.py)`", (REPOSITORY / "ARCHITECTURE.md").read_text()))
    present = {path.relative_to(REPOSITORY).as_posix() for path in _modules().values()}
    assert sorted(present - named) == [], "modules missing from ARCHITECTURE.md"
    assert sorted(named - present) == [], "ARCHITECTURE.md names modules that are gone"


def _reached(name: str, modules: dict[str, Path]) -> set[str]:
    """The modules of the package that importing ``name`` may load: ``name`` and whatever it imports, in turn."""
    reached = {name}
    pending = [name]
    while pending:
        current = pending.pop()
        for imported in _imported(current, modules[current], modules):
            if imported in modules and imported not in reached:
                reached.add(imported)
                pending.append(imported)
    return reached


def test_the_mapping_reaches_no_sdk():
    modules = _modules()
    reached = _reached(MAPPING, modules)
    assert SDK_ADAPTER not in reached, "SDK spans are adapted in sdk.py, which imports the mapping, not the reverse"
    sdk_imports = [
        f"{name} imports {imported}"
        for name in sorted(reached)
        for imported in _import_names(modules[name])
        if imported == SDK or imported.startswith(SDK + ".")
    ]
    assert sdk_imports == []


def _partition_folders(path: Path) -> Iterator[str]:
    """The code of the file that spells out a ``dt=`` folder: a string holding ``dt=``, or an f-string putting
    ``=`` after the partition column's name. Documentation (a string standing as a statement) is not code."""
    tree = ast.parse(path.read_text(), str(path))
    documentation = {
        id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in documentation:
            if "dt=" in node.value:
                yield f"line {node.lineno}: {node.value!r}"
        elif isinstance(node, ast.JoinedStr):
            for part, after in itertools.pairwise(node.values):
                if (
                    isinstance(part, ast.FormattedValue)
                    and isinstance(part.value, ast.Name)
                    and part.value.id == PARTITION_COLUMN
                    and isinstance(after, ast.Constant)
                    and str(after.value).startswith("=")
                ):
                    yield f"line {node.lineno}: an f-string of {PARTITION_COLUMN}="


def test_only_the_location_lays_out_the_partition_folders():
    found = [
        f"{name} {where}" for name, path in _modules().items() if name != LOCATION for where in _partition_folders(path)
    ]
    assert found == [], "table_path, partition_folder and files_glob of otel_datasink.location say where files go"


# --- the tests' own rooms: fixtures in conftest.py, helpers in helper modules (tests/<what they hold>.py) ----------

TESTS = Path(__file__).parent


def _test_import_violations(folder: Path) -> list[str]:
    """Each import of a module of ``folder`` (the tests) that takes a test module or conftest.py for a helper."""
    test_modules = {path.stem for path in folder.glob("test_*.py")}
    found = []
    for path in sorted(folder.glob("*.py")):
        for imported in sorted(_top_level_imports(path)):
            if imported in test_modules:
                found.append(f"{path.stem} imports {imported}: what tests share goes in a helper module, not a test")
            elif imported == "conftest":
                found.append(f"{path.stem} imports conftest: conftest.py holds fixtures (pytest passes them by name)")
    return found


def _conftest_non_fixtures(conftest: Path) -> list[str]:
    """The top-level functions and classes of ``conftest`` that are neither fixtures nor pytest hooks."""
    found = []
    for node in ast.parse(conftest.read_text(), str(conftest)).body:
        if isinstance(node, ast.ClassDef):
            found.append(node.name)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith("pytest_"):
            if not any("fixture" in ast.unparse(decorator) for decorator in node.decorator_list):
                found.append(node.name)
    return found


def test_no_test_module_imports_another_or_a_helper_from_conftest():
    assert _test_import_violations(TESTS) == []


def test_conftest_holds_only_fixtures():
    assert _conftest_non_fixtures(TESTS / "conftest.py") == []
