"""Benchmarks of the issuer portal: they measure and print, they are not timed tests.

``python -m bench`` runs the issuance benchmarks in sequence and prints a summary; each one also
runs alone as ``python -m bench.<name>``. Figures are written to ``bench/results/<name>.json``
and server logs to ``bench/results/logs/`` (git-ignored).
"""
