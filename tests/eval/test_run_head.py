"""eval/run_head.sh: the pass that makes eval/results/head/ names every decoder of the suite, and only real ones."""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "eval"))

from bench.decoders import DECODERS, parse_decoders  # noqa: E402
from bench.tasks import load_tasks  # noqa: E402

SCRIPT = (ROOT / "eval" / "run_head.sh").read_text()


def test_every_means_every_decoder_of_the_suite():
    every = re.search(r"^EVERY=(\S+)$", SCRIPT, re.M).group(1)
    assert every.split(",") == list(DECODERS)


def test_each_suite_runs_real_decoders_and_every_suite_is_run():
    lists = re.findall(r"decoders=(\S+) ;;", SCRIPT)
    assert len(lists) == 3
    for text in lists:
        parse_decoders(text.replace("$EVERY", ",".join(DECODERS)))  # raises on an unknown name
    suites = re.search(r"for suite in ([a-z_ ]+); do", SCRIPT).group(1).split()
    assert sorted(suites) == sorted({task.suite for task in load_tasks().values()})
