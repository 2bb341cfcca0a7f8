"""Benchmark scripts (run as ``python benchmarks/<name>.py``); a package so that tests and scripts can
import the shared helpers as ``benchmarks.provenance`` and ``benchmarks.authors``."""
