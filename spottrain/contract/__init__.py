"""The contract every side of spottrain imports, and which imports nothing of spottrain outside it.

Status values and the callback wait's error names, the S3 layout and tags, marker and task-token
formats, derived names, instance states, the stack's defaults, the Lambda settings and a job's limits,
the job spec and its schema, user-data rendering. It ships in the
Lambda asset and in the agent's, so: no syntax newer than Python 3.8 (the AMI's interpreter runs the
agent), and stdlib only in every module the agent imports (it never loads jobspec or settings, built on
jsonschema and pydantic from the Lambdas' layers).
"""
