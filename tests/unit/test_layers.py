"""The layers of docs/ARCHITECTURE.md: every module of spottrain imports downward only.

Read from the source (ast), lazy and TYPE_CHECKING imports included: a wrong-way import fails here
before it couples two sides that ship apart (the agent's asset has no functions, the Lambdas' no agent).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[2] / "spottrain"

# layer -> the modules it is made of (a name and everything under it)
LAYERS = {
    "contract": ("spottrain.contract",),
    "agent": ("spottrain.agent",),
    "functions": ("spottrain.functions",),
    "infra": ("spottrain.infra",),
    "local": ("spottrain.local",),
    "cli": (
        "spottrain.cli",
        "spottrain.console",
        "spottrain.jobs",
        "spottrain.settings",
        "spottrain.demo",
        "spottrain.diagram",
        "spottrain.sweeps",
        "spottrain.sweep_commands",
        "spottrain.cost",
        "spottrain.secret_store",
    ),
}
# layer -> the layers it must not import; the contract imports nothing of spottrain outside it
FORBIDDEN = {
    "agent": {"functions", "infra", "local", "cli"},
    "functions": {"agent", "infra", "local", "cli"},
    "cli": {"infra"},
    "infra": {"local", "cli"},
    "local": {"agent", "infra"},
}
# Contract modules built on the Lambdas' libraries (jsonschema from the JsonSchema layer, pydantic from
# Powertools'): the agent runs on the AMI's Python, which has neither.
LAMBDA_ONLY = ("spottrain.contract.jobspec", "spottrain.contract.settings")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def _layer(name: str) -> str | None:
    return next(
        (
            layer
            for layer, prefixes in LAYERS.items()
            if any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)
        ),
        None,
    )


def _imports(module: str) -> set[str]:
    """Every spottrain name the module imports: `from a import b` counts as a.b (b may be a module)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "spottrain" or name.startswith("spottrain.")}


def test_every_module_belongs_to_a_layer():
    assert [module for module in MODULES if module != "spottrain" and _layer(module) is None] == []


def test_the_contract_imports_nothing_of_spottrain_outside_it():
    wrong = [
        f"{module} imports {name}"
        for module in MODULES
        if _layer(module) == "contract"
        for name in sorted(_imports(module))
        if _layer(name) != "contract"
    ]
    assert not wrong, "the contract is the bottom layer; move what it needs into spottrain/contract:\n" + "\n".join(
        wrong
    )


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_a_layer_it_must_not(layer):
    wrong = [
        f"{module} imports {name} ({_layer(name)})"
        for module in MODULES
        if _layer(module) == layer
        for name in sorted(_imports(module))
        if _layer(name) in FORBIDDEN[layer]
    ]
    assert not wrong, (
        f"{layer} may not import {', '.join(sorted(FORBIDDEN[layer]))}; "
        "share the fact through spottrain/contract instead:\n" + "\n".join(wrong)
    )


def _reached_from(start: str) -> set[str]:
    """Every spottrain module `start` loads, directly or through others (`from a import b`: a, and a.b if a module)."""
    reached, pending = set(), [start]
    while pending:
        module = pending.pop()
        for name in _imports(module):
            for candidate in (name, name.rpartition(".")[0]):
                if candidate in MODULES and candidate not in reached:
                    reached.add(candidate)
                    pending.append(candidate)
    return reached


def test_the_agent_never_loads_a_module_built_on_the_lambdas_libraries():
    wrong = [
        f"{module} loads {name}"
        for module in MODULES
        if _layer(module) == "agent"
        for name in sorted(_reached_from(module))
        if name in LAMBDA_ONLY
    ]
    assert not wrong, (
        "the agent checks job.json itself (spottrain/agent/job.py) and reads its options from "
        "its own environment (spottrain/agent/options.py):\n" + "\n".join(wrong)
    )


@pytest.mark.parametrize("module", [m for m in MODULES if _layer(m) in ("agent", "contract") and m not in LAMBDA_ONLY])
def test_what_the_agent_ships_parses_as_python_3_8(module):
    # The agent's asset runs on the AMI's interpreter, which may be as old as 3.8.
    ast.parse(MODULES[module].read_text(), str(MODULES[module]), feature_version=(3, 8))
