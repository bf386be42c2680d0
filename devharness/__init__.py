"""Developer harness: real servers (Prometheus, exporters) and a simulated twin for tests, demos and benches.

Importable from the repository root ("." is on the pytest pythonpath; `python -m devharness...` from the root).
"""
