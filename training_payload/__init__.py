"""The Chainer multi-head training payload a spottrain job clones and runs.

Entry scripts (run from the repository root): `training_payload/make_data.py` and
`training_payload/train.py`.
"""
