"""python -m benchmarks.survey: see the package docstring."""

from benchmarks.survey.cli import main

main()
