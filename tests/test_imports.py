"""The package's imports point one way: no module reaches itself again, and the library never imports the CLI."""

import ast
from pathlib import Path

import transfer_neurons

ROOT = Path(transfer_neurons.__file__).parent


def module_name(path: Path) -> str:
    """Dotted name of a source file of the package."""
    parts = ("transfer_neurons", *path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its source (lazy imports included)."""
    files = {module_name(path): path for path in ROOT.rglob("*.py")}
    graph = {}
    for name, path in files.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = here.split(".")[: len(here.split(".")) - node.level + 1] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                submodules = {f"{module}.{alias.name}" for alias in node.names} & set(files)
                targets |= submodules or {module}
        graph[name] = {target for target in targets if target in files and target != name}
    return graph


def test_no_module_imports_itself_through_others():
    graph = package_imports()
    assert len(graph) > 50, "the walk should see every module of the package"
    for start in graph:
        seen, stack = set(), list(graph[start])
        while stack:
            module = stack.pop()
            assert module != start, f"{start} imports itself through {sorted(seen)}"
            if module not in seen:
                seen.add(module)
                stack.extend(graph[module])


def test_the_library_never_imports_the_cli():
    for module, targets in package_imports().items():
        if not module.startswith("transfer_neurons.cli"):
            assert not {t for t in targets if t.startswith("transfer_neurons.cli")}, module
