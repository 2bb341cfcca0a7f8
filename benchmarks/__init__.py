"""Benchmark scripts, run as ``python benchmarks/<name>.py`` or ``python -m benchmarks.<name>``; a package so that
scripts and tests import the shared helpers as ``benchmarks.<module>`` (``provenance``, ``authors``, ``bids_tree``,
``launch``). Run as a script, each first puts the repository root on ``sys.path`` (see ``provenance``)."""
