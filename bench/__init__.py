"""rocketd's benchmark harness: real servers, wrk and pgbench on the same machine.

Run it with `.venv/bin/python -m bench [scenario-or-set ...]`; see bench/README.md.
Benchmarks are not part of the test run.
"""
