"""The README's state machine picture is generated from the ASL; a stale copy misleads every reader."""

import json

from spottrain import diagram


def test_readme_diagram_matches_the_state_machine():
    # Given the ASL that CDK deploys, When the diagram is generated, Then the README carries exactly it
    assert diagram.main(["--check"]) == 0, "run `python -m spottrain.diagram` and paste it into README.md"


def test_diagram_draws_every_state_and_transition():
    definition = json.loads(diagram.ASL.read_text())
    chart = diagram.mermaid(definition)
    for name, state in definition["States"].items():
        assert f"    {name}" in chart
        if "Next" in state:
            assert f"{name} --> {state['Next']}" in chart
