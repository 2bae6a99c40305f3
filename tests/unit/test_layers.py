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
    "cli": ("spottrain.cli", "spottrain.jobs", "spottrain.settings", "spottrain.demo", "spottrain.diagram",
            "spottrain.secret_store"),
}
# layer -> the layers it must not import; the contract imports nothing of spottrain outside it
FORBIDDEN = {
    "agent": {"functions", "infra", "local", "cli"},
    "functions": {"agent", "infra", "local", "cli"},
    "cli": {"infra"},
    "infra": {"local", "cli"},
    "local": {"agent", "infra"},
}
# The agent runs on the AMI's Python, without the Lambdas' validator and its dependencies.
AGENT_MAY_NOT_IMPORT = "spottrain.contract.jobspec"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def _layer(name: str) -> str | None:
    return next((layer for layer, prefixes in LAYERS.items()
                 if any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)), None)


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
    wrong = [f"{module} imports {name}" for module in MODULES if _layer(module) == "contract"
             for name in sorted(_imports(module)) if _layer(name) != "contract"]
    assert not wrong, "the contract is the bottom layer; move what it needs into spottrain/contract:\n" + "\n".join(wrong)


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_layer_imports_a_layer_it_must_not(layer):
    wrong = [f"{module} imports {name} ({_layer(name)})" for module in MODULES if _layer(module) == layer
             for name in sorted(_imports(module)) if _layer(name) in FORBIDDEN[layer]]
    assert not wrong, (f"{layer} may not import {', '.join(sorted(FORBIDDEN[layer]))}; "
                       "share the fact through spottrain/contract instead:\n" + "\n".join(wrong))


def test_the_agent_never_imports_the_job_spec_validator():
    wrong = [f"{module} imports {name}" for module in MODULES if _layer(module) == "agent"
             for name in _imports(module) if name == AGENT_MAY_NOT_IMPORT or name.startswith(AGENT_MAY_NOT_IMPORT + ".")]
    assert not wrong, "the agent checks job.json itself (spottrain/agent/job.py):\n" + "\n".join(wrong)


@pytest.mark.parametrize("module", [m for m in MODULES if _layer(m) in ("agent", "contract") and m != AGENT_MAY_NOT_IMPORT])
def test_what_the_agent_ships_parses_as_python_3_8(module):
    # The agent's asset runs on the AMI's interpreter, which may be as old as 3.8.
    ast.parse(MODULES[module].read_text(), str(MODULES[module]), feature_version=(3, 8))
