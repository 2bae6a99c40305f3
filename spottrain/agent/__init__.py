"""The spottrain instance agent: runs one attempt of one job on the instance, then shuts it down.

Stdlib + boto3 only, and no syntax newer than Python 3.8 (the AMI's interpreter builds its venv).
`python -m spottrain.agent --help` documents the contract; docs/ARCHITECTURE.md pins the names.
"""
