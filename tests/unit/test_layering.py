"""The layering docs/architecture.md promises, enforced: routes -> services -> pure and
store; the store imports no services or routes; pure modules import no I/O library."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HUB = ROOT / "server" / "honeymesh_hub"
CLIENT = ROOT / "client" / "honeymesh_client"
IO_LIBRARIES = {"aiohttp", "asyncpg", "redis", "limits", "prometheus_client"}
# Pure modules: no I/O, no framework; they import only the standard library, the
# shared protocol package and one another.
PURE = {
    "honeymesh_hub.addresses",
    "honeymesh_hub.callers",
    "honeymesh_hub.clock",
    "honeymesh_hub.config",
    "honeymesh_hub.crowdsec",
    "honeymesh_hub.cursor",
    "honeymesh_hub.entitlements",
    "honeymesh_hub.errors",
    "honeymesh_hub.lifecycle",
    "honeymesh_hub.shapes",
    "honeymesh_hub.stix",
    "honeymesh_hub.taxii",
    "honeymesh_hub.tokens",
    "honeymesh_hub.validation",
    "honeymesh_hub.views",
    "honeymesh_hub.services.review.after",
    "honeymesh_hub.services.review.rules",
    "honeymesh_hub.services.review.views",
}


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    """Every module `path` imports, absolute, including TYPE_CHECKING-only ones."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def _modules(root: Path) -> dict[str, set[str]]:
    return {_module_name(p, root): _imports(p, _module_name(p, root)) for p in root.rglob("*.py")}


MODULES = {**_modules(HUB), **_modules(CLIENT)}


def _known(imported: set[str]) -> set[str]:
    """Imported project modules; the two top packages themselves are only namespaces
    (`from .. import views` names the module honeymesh_hub.views)."""
    return {i for i in imported if i in MODULES and "." in i}


def _top(imported: set[str]) -> set[str]:
    return {i.split(".")[0] for i in imported}


def _layer(module: str) -> str:
    if module in PURE:
        return "pure"
    for layer in ("routes", "services", "store"):
        if module.startswith(f"honeymesh_hub.{layer}"):
            return layer
    if module.startswith("honeymesh_client.protocol"):
        return "pure"
    return "edge"


def test_the_pure_modules_exist() -> None:
    assert set(MODULES) >= PURE


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) == "pure"))
def test_pure_modules_import_no_io_and_only_pure_modules(module: str) -> None:
    imported = MODULES[module]
    assert not _top(imported) & IO_LIBRARIES, module
    impure = {i for i in _known(imported) if _layer(i) != "pure"}
    assert not impure, f"{module} imports {sorted(impure)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) == "store"))
def test_the_store_imports_no_services_routes_or_web(module: str) -> None:
    imported = MODULES[module]
    assert not {i for i in _known(imported) if _layer(i) in ("services", "routes", "edge")}
    assert not _top(imported) & {"aiohttp", "redis", "limits"}


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) == "services"))
def test_services_import_no_routes_and_no_web_framework(module: str) -> None:
    imported = MODULES[module]
    assert not {i for i in _known(imported) if _layer(i) == "routes"}, module
    assert "aiohttp" not in _top(imported), module


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) == "routes"))
def test_routes_reach_the_database_only_through_services(module: str) -> None:
    imported = MODULES[module]
    assert not {i for i in _known(imported) if _layer(i) == "store"}, module
    assert "asyncpg" not in _top(imported), module


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("honeymesh_client")))
def test_the_client_never_imports_the_hub(module: str) -> None:
    assert "honeymesh_hub" not in _top(MODULES[module]), module


def test_sql_lives_in_the_store_and_the_migrations() -> None:
    """No SQL text outside store/: a statement keyword at the start of a string."""
    keywords = ("SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM", "WITH ")
    offenders = []
    for path in HUB.rglob("*.py"):
        if "store" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                text = node.value.lstrip()
                if text.startswith(keywords) and ("FROM" in text or "SET" in text or "(" in text):
                    offenders.append(f"{path.relative_to(ROOT)}: {text[:40]!r}")
    assert not offenders, offenders
