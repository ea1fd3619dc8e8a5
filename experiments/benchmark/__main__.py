"""`python -m experiments.benchmark`: runs the command line in cli.py (kept there so the package can re-export main
without importing this module, which runpy would then warn about and execute twice)."""

from experiments.benchmark.cli import main

main()
