"""docs/design.md names only modules and functions that exist: every `x.py` (or `a/b.py`) it
names is a file of the repo, and every `module.name` / `Class.name` it puts in backticks
resolves to an attribute of that gateway module or class. A rename that forgets the page
fails here."""

from __future__ import annotations

import ast
import importlib
import re
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GATEWAY = REPO / "gateway"
DESIGN = (REPO / "docs" / "design.md").read_text()

#: names the page puts in backticks that are not the gateway's (libraries, the stdlib)
OUTSIDE = {"aiohttp", "asyncio", "redis", "prometheus_client", "time", "orjson", "web", "os",
           "json", "hdrs", "structlog", "pydantic", "uvloop", "socket", "signal"}
#: config sections: `server.port` is a config key, not the module server.py
SECTIONS = {"server", "limits", "ratelimit", "upstreams", "routes", "prices", "tenants", "streams",
            "store"}
PY_FILE = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[\w-]+\.py)\b")
DOTTED = re.compile(r"^([A-Za-z_]\w*)\.([A-Za-z_]\w*)(?:\(\))?$")


def _files() -> list[Path]:
    return [p for p in REPO.rglob("*.py") if ".venv" not in p.parts and "node_modules" not in p.parts]


@cache
def _modules() -> dict[str, list[str]]:
    """module basename -> dotted names of the gateway modules (and packages) called that."""
    found: dict[str, list[str]] = {}
    for path in GATEWAY.rglob("*.py"):
        parts = path.relative_to(REPO).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.setdefault(parts[-1], []).append(".".join(parts))
    return found


@cache
def _classes() -> dict[str, list[str]]:
    """class name -> dotted names of the gateway modules that define it."""
    found: dict[str, list[str]] = {}
    for path in GATEWAY.rglob("*.py"):
        dotted = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                found.setdefault(node.name, []).append(dotted)
    return found


def _has(dotted: str, name: str, owner: str | None = None) -> bool:
    try:
        module = importlib.import_module(dotted)
    except ImportError:  # an optional extra (OpenTelemetry): read the source instead
        source = (REPO / (dotted.replace(".", "/") + ".py")).read_text()
        return re.search(rf"\b(def|class)\s+{name}\b|^\s*{name}\s*[:=]", source, re.M) is not None
    target = getattr(module, owner) if owner is not None else module
    if hasattr(target, name):
        return True
    # a dataclass field or a slot given in __init__: in the class's annotations or its source
    annotations = getattr(target, "__annotations__", {})
    if name in annotations:
        return True
    source = (REPO / (dotted.replace(".", "/") + ".py")).read_text()
    return owner is not None and re.search(rf"self\.{name}\b", source) is not None


def test_every_file_the_design_names_exists() -> None:
    names = set(PY_FILE.findall(DESIGN))
    assert names, "the page names no module"
    paths = {str(p.relative_to(REPO)) for p in _files()}
    missing = []
    for name in sorted(names):
        if "/" in name:
            ok = any(p == name or p.endswith("/" + name) for p in paths)
        else:
            ok = any(p.rsplit("/", 1)[-1] == name for p in paths)
        if not ok:
            missing.append(name)
    assert not missing, f"docs/design.md names files that do not exist: {missing}"


def test_every_module_or_class_attribute_the_design_names_exists() -> None:
    spans = re.findall(r"`([^`\n]+)`", DESIGN)
    checked, missing = 0, []
    for span in spans:
        found = DOTTED.match(span.strip())
        if found is None:
            continue
        head, name = found.groups()
        if head in OUTSIDE or head in SECTIONS or name == "py":
            continue
        if head[0].isupper():
            owners = _classes().get(head)
            if not owners:
                continue  # not a class of ours (a metric label, a config value)
            checked += 1
            if not any(_has(dotted, name, head) for dotted in owners):
                missing.append(span)
        elif head in _modules():
            checked += 1
            if not any(_has(dotted, name) for dotted in _modules()[head]):
                missing.append(span)
    assert checked > 10, "the check found almost nothing to check: is its pattern right?"
    assert not missing, f"docs/design.md names what does not exist: {missing}"
