"""The contract every side of spottrain imports, and which imports nothing of spottrain outside it.

Status values, the S3 layout and tags, marker formats, derived names, instance states, the Lambda
settings and the stack's defaults, the job spec and its schema, user-data rendering. Stdlib only and
no syntax newer than Python 3.8: the instance agent, which runs on the AMI's interpreter, ships it.
"""
