#!/usr/bin/env bash
# The README's test command: installs what it needs, runs ruff and the whole pytest suite on the CPU.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
ruff check .
python -m pytest -q "$@"
