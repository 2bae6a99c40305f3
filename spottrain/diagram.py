"""The state machine as a Mermaid flowchart, generated from the ASL so the README's picture cannot drift.

python -m spottrain.diagram            # print the diagram
python -m spottrain.diagram --check    # exit 1 if README.md's copy is stale
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ASL = REPO_ROOT / "statemachine" / "spottrain.asl.json"
README = REPO_ROOT / "README.md"
BEGIN, END = "<!-- state-machine:begin -->", "<!-- state-machine:end -->"
# The clean-up chain every state after the launch can fall into; drawn once, not from every state.
CATCH_TARGET = "TerminateOnError"

_SHAPES = {
    "Task": "[{}]",
    "Wait": "([{}])",
    "Choice": "{{{{{}}}}}",
    "Pass": "[/{}/]",
    "Succeed": "(({}))",
    "Fail": "(({}))",
}


def _choice_label(rule: dict) -> str:
    """The value compared, or the flag tested: `SUCCEEDED`, `retry_allowed`."""
    if "And" in rule:
        return " & ".join(_choice_label(r) for r in rule["And"])
    flag = rule.get("Variable", "").rsplit(".", 1)[-1]
    for key, value in rule.items():
        if key.startswith("Boolean"):
            return flag if value else f"not {flag}"
        if key.startswith("String") or key.startswith("Numeric"):
            return str(value)
    return ""


def _edges(name: str, state: dict) -> list[tuple[str, str, str]]:
    edges = [(name, state["Next"], "")] if "Next" in state else []
    for rule in state.get("Choices", []):
        edges.append((name, rule["Next"], _choice_label(rule)))
    if "Default" in state:
        edges.append((name, state["Default"], "otherwise"))
    return edges


def _caught(name: str, state: dict) -> list[tuple[str, str, str]]:
    """Errors a state routes somewhere else than the clean-up (the callback wait's answers and timeouts)."""
    return [
        (name, clause["Next"], ", ".join(error.replace("States.", "") for error in clause["ErrorEquals"]))
        for clause in state.get("Catch", [])
        if clause["Next"] != CATCH_TARGET
    ]


def mermaid(definition: dict) -> str:
    lines = ["flowchart TD"]
    for name, state in definition["States"].items():
        shape = _SHAPES.get(state["Type"], "[{}]").format(name)
        style = ":::fail" if state["Type"] == "Fail" else ":::ok" if state["Type"] == "Succeed" else ""
        lines.append(f"    {name}{shape}{style}")
    caught = [
        name
        for name, state in definition["States"].items()
        if any(c["Next"] == CATCH_TARGET for c in state.get("Catch", []))
    ]
    for name, state in definition["States"].items():
        for source, target, label in _edges(name, state):
            arrow = f"-->|{label}|" if label else "-->"
            lines.append(f"    {source} {arrow} {target}")
        for source, target, label in _caught(name, state):
            lines.append(f"    {source} -.->|{label}| {target}")
    if caught:
        lines.append(f"    AnyError>any error after launch] -.-> {CATCH_TARGET}")
    lines.append("    classDef fail fill:#fdd,stroke:#c33")
    lines.append("    classDef ok fill:#dfd,stroke:#3a3")
    return "\n".join(lines)


def readme_block(definition: dict) -> str:
    return f"{BEGIN}\n```mermaid\n{mermaid(definition)}\n```\n{END}"


def main(argv: list[str]) -> int:
    definition = json.loads(ASL.read_text())
    if "--check" not in argv:
        sys.stdout.write(readme_block(definition) + "\n")
        return 0
    text = README.read_text()
    start, end = text.find(BEGIN), text.find(END)
    current = text[start : end + len(END)] if start >= 0 and end >= 0 else ""
    if current != readme_block(definition):
        sys.stderr.write("README.md's state machine diagram is stale: run `python -m spottrain.diagram` and paste it\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
