"""Placeholder until the CLI lands (issue 6)."""


def main() -> int:
    raise SystemExit("spottrain CLI: not built yet")
