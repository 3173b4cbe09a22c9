#!/usr/bin/env bash
# The whole pipeline: demo data (or your data) -> targets -> folds -> baseline -> models (OOF)
# -> stacker (nested CV) -> submission.csv -> its score. `./run_all.sh --help` for options.
# Artifacts go under ./work (or --work) relative to where you run it.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH="$HERE${PYTHONPATH:+:$PYTHONPATH}"
# The README's install command makes .venv/; PYTHON overrides.
if [[ -z "${PYTHON:-}" && -x "$HERE/.venv/bin/python" ]]; then PYTHON="$HERE/.venv/bin/python"; fi
exec "${PYTHON:-python3}" -m pipeline.run "$@"
