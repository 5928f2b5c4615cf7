"""Benchmarks: `make bench` (or `python -m bench [NAME ...]`) runs each module's `main()`."""
