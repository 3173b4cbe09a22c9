#!/usr/bin/env bash
# The whole pipeline on the embedded demo dataset (or your own data: see README).
#   demo data -> targets -> folds -> mean-embedding baseline (OOF) -> submission -> test score
set -euo pipefail
cd "$(dirname "$0")"

# The README's install command makes .venv/; PYTHON overrides.
if [[ -z "${PYTHON:-}" && -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; fi
PY=${PYTHON:-python}
WORK=work
N_TRAIN=1800
N_TEST=300
SIZE=64
SEED=0
K=3
THRESHOLD=0.9

usage() {
  cat <<USAGE
usage: ./run_all.sh [--work DIR] [--n-train N] [--n-test N] [--size PX] [--seed S] [--k K] [--threshold T]
  Runs the pipeline on the demo dataset; artifacts go under --work (default: work/).
USAGE
}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --work) WORK=$2; shift 2 ;;
    --n-train) N_TRAIN=$2; shift 2 ;;
    --n-test) N_TEST=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --k) K=$2; shift 2 ;;
    --threshold) THRESHOLD=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run_all.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
DATA=$WORK/data/demo
T0=$(date +%s)
stage() { echo; echo "== [$(( $(date +%s) - T0 ))s] $*"; }

stage "demo dataset -> $DATA"
$PY -m datagen.demo --out "$DATA" --n-train "$N_TRAIN" --n-test "$N_TEST" --size "$SIZE" --seed "$SEED"

stage "targets (all-MiniLM-L6-v2)"
$PY -m core.targets --prompts "$DATA/train" --out "$WORK/targets/train"
$PY -m core.targets --prompts "$DATA/test_prompts.csv" --out "$WORK/targets/test"

stage "folds (K=$K, grouped at cosine >= $THRESHOLD)"
$PY -m core.folds --prompts "$DATA/train" --targets "$WORK/targets/train" --k "$K" \
  --threshold "$THRESHOLD" --out "$WORK/folds.csv"

stage "mean-embedding baseline (OOF)"
$PY -m models.mean_baseline --train "$DATA/train" --test "$DATA/test" --targets "$WORK/targets/train" \
  --folds "$WORK/folds.csv" --out "$WORK/runs/mean_baseline"

stage "submission"
$PY -m core.submission write --pred "$WORK/runs/mean_baseline/test.npy" \
  --ids "$WORK/runs/mean_baseline/test_ids.csv" --out "$WORK/submission.csv"

stage "score of the submission against the demo test set's true prompts"
$PY -m core.metric "$WORK/submission.csv" --targets "$WORK/targets/test"
echo "total $(( $(date +%s) - T0 )) s"
