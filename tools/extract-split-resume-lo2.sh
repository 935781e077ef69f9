#!/usr/bin/env bash
# Extract the LO2 release archives run by run: ordered, in chunks, resumable.
#
#   MODE=newest SPLIT=4 DRY_RUN=0 bash tools/extract-split-resume-lo2.sh          # all 4 chunks
#   MODE=newest SPLIT=4 CHUNK=2 DRY_RUN=0 bash tools/extract-split-resume-lo2.sh  # 2nd quarter
#
# Environment: LO2_ARCHIVES (default data/lo2_archives), LO2_ROOT (default data/lo2_runs),
# MODE (newest | oldest | all), SPLIT (chunks, default 1), CHUNK (1-based; default all chunks),
# DRY_RUN (default 1: only print the plan), LIST (1: list every selected run),
# PYTHON (default .venv/bin/python of this checkout if present, else python3).
# Relative paths are taken from the current directory. Extra arguments go to the Python tool
# (see --help). The work is done by loglead_lo2/tools/extract.py (standard library only).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$REPO/.venv/bin/python" ]]; then PYTHON="$REPO/.venv/bin/python"; else PYTHON=python3; fi
fi
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m loglead_lo2.tools.extract "$@"
