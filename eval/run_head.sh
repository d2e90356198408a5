#!/usr/bin/env bash
# One pass of the benchmark suite at the current commit: what eval/results/head/ holds and what the README's
# tables come from (`python eval/readme_tables.py`). Every suite runs every decoder, ICP's seeds' law and (on
# the short-answer suites) ICP with its abstention; knowledge and reading, 400 questions each, run greedy,
# temperature, ICP and ICP with abstention only (every decoder there would take about 4 h on 2 CPU cores).
# Writes OUT/<suite>.{json,md,examples.jsonl} and plots; an interrupted pass resumes from OUT/cache.
#
#   bash eval/run_head.sh [OUT]          # OUT defaults to outputs/head; about 70 min on 2 CPU cores
#   cp OUT/<suite>.{json,md} OUT/<suite>.*.png eval/results/head/
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-outputs/head}
PYTHON=${PYTHON:-python}
EVERY=greedy,sampling,temperature,top_p,min_p,typical,top_h,eta,repetition_penalty,mirostat,edt,entropix,adaptive_p,dry,icp
for suite in loops instruct reading qa grounded_qa truthfulqa knowledge; do
  case $suite in
    reading|knowledge) decoders=greedy,temperature,icp,icp_abstain ;;
    loops|instruct) decoders=$EVERY,icp_seeds_law ;;
    *) decoders=$EVERY,icp_seeds_law,icp_abstain ;;
  esac
  "$PYTHON" eval/run.py --suite "$suite" --decoders "$decoders" --batch-size 64 --no-progress \
    --cache-dir "$OUT/cache" --out "$OUT/$suite.json"
done
