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
from collections.abc import Iterator
from pathlib import Path

import otel_datasink

PACKAGE = Path(otel_datasink.__file__).parent
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


def _import_names(path: Path) -> Iterator[str]:
    """Every module an ``import`` of the file names, absolute (``from a import b`` names ``a``; relative imports
    name a module of the package: these are :func:`_imported`'s)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.module


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


def _imported(name: str, path: Path, modules: dict[str, Path]) -> Iterator[str]:
    """The modules of the package that module ``name`` imports: ``from a import b`` is module ``a.b`` when there
    is one, else ``a``; relative imports resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base


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
