"""Benchmarks for otaudit: ingest throughput, export latency and ledger verification.

Run with ``python -m bench`` (``make bench``); see ``python -m bench --help``.
Every figure is printed next to a baseline measured in the same run on the same data.
"""
