"""The contract every side of spottrain imports, and which imports nothing of spottrain outside it.

Status values, the S3 layout and tags, marker formats, derived names, instance states, the stack's
defaults and the Lambda settings, the job spec and its schema, user-data rendering. It ships in the
Lambda asset and in the agent's, so: no syntax newer than Python 3.8 (the AMI's interpreter runs the
agent), and stdlib only in every module the agent imports (it never imports jobspec, the validator).
"""
