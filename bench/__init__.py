"""Benchmarks of the pipeline's stages (not tests): `python -m bench [extract|transform|load|all]`."""
