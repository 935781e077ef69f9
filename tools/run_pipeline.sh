#!/usr/bin/env bash
# Run the LO2 pipeline end to end on the package's embedded (generated) sample.
# Usage: bash tools/run_pipeline.sh [SAMPLE_DIR] [RESULT_DIR]
# Environment: PYTHON (default: .venv/bin/python if present, else python3),
#              LO2_SAMPLE_RUNS (default 6), LO2_SAMPLE_SCALE (default 0.05), LO2_SEED (42),
#              LO2_WINDOW (seconds, default 5: equal windows; "none" = whole sequences).
set -euo pipefail
usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  echo "Options: -h, --help  print this help and exit"
}
for arg in "$@"; do
  case "$arg" in
    -h|--help) usage; exit 0 ;;
    -*) echo "run_pipeline.sh: error: unknown option $arg (see bash tools/run_pipeline.sh --help)" >&2
        exit 2 ;;
  esac
done
if [[ $# -gt 2 ]]; then
  echo "run_pipeline.sh: error: at most two arguments, SAMPLE_DIR and RESULT_DIR, got $# (see bash tools/run_pipeline.sh --help)" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
SAMPLE="${1:-demo/result/lo2_sample}"
RESULT="${2:-demo/result/lo2}"
RUNS="${LO2_SAMPLE_RUNS:-6}"
SCALE="${LO2_SAMPLE_SCALE:-0.05}"
SEED="${LO2_SEED:-42}"
WINDOW="${LO2_WINDOW:-5}"
WINDOW_ARGS=()
if [[ "$WINDOW" != "none" ]]; then WINDOW_ARGS=(--window "$WINDOW"); fi

echo "== 1/4 generate the embedded LO2 sample -> $SAMPLE"
"$PYTHON" -m loglead_lo2.generator --out "$SAMPLE" --runs "$RUNS" --scale "$SCALE" \
  --seed "$SEED" --with-metrics --overwrite

echo "== 2/4 loader + enhancers -> $RESULT"
"$PYTHON" demo/lo2_e2e/run_lo2_loader.py --root "$SAMPLE" --seed "$SEED" \
  --save-parquet --save-events --save-base-sequences --load-metrics \
  --output-dir "$RESULT" --overwrite ${WINDOW_ARGS[@]+"${WINDOW_ARGS[@]}"}

echo "== 3/4 detection (Isolation Forest + default models) -> $RESULT/metrics"
"$PYTHON" demo/lo2_e2e/LO2_samples.py --phase full --root "$RESULT" \
    --report-precision-at 50 --report-fp-alpha 0.01 --report-psi
echo "== 4/4 explainability (nearest normal, SHAP, false positives) -> $RESULT/explainability"
MPLBACKEND=Agg "$PYTHON" demo/lo2_e2e/lo2_phase_f_explainability.py --root "$RESULT" \
  --nn-top-k 20 --shap-sample 100 --overwrite

echo "== report (one self-contained HTML page) -> $RESULT/report"
MPLBACKEND=Agg "$PYTHON" -m loglead_lo2.report --root "$RESULT" --overwrite --quiet >/dev/null
echo "== done: artifacts under $RESULT"
echo "$RESULT/report/report.html"
