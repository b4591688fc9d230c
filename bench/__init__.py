"""The Nucleus benchmark: raw psycopg baselines and the same work through the HTTP API, in one run.

`make bench` (or `python -m bench`) runs it; docs/performance.md describes the method.
"""
