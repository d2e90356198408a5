"""How often ICP's loop detector fires on text that legitimately repeats, and how often it catches
real degenerate loops: a small labelled set, tokenised with the default model's tokenizer and fed to
the detector one token at a time, exactly as `LoopStoppingCriteria` sees a generation.

Run:
    python eval/loop_false_positives.py            # default LoopConfig
    python eval/loop_false_positives.py --min-loop-tokens 24
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from icp import LoopConfig, load_default_model  # noqa: E402
from icp.signals import trailing_cycle  # noqa: E402

# Text that repeats on purpose: a good decoder writes these, a loop detector must let them through.
LEGITIMATE = {
    "markdown table": "| Planet | Moons | Rings |\n|---|---|---|\n| Mercury | 0 | No |\n| Venus | 0 | No |\n"
    "| Earth | 1 | No |\n| Mars | 2 | No |\n| Jupiter | 95 | Yes |\n| Saturn | 146 | Yes |\n| Uranus | 28 | Yes |\n",
    "numbered list": "1. Preheat the oven to 180 degrees.\n2. Grease the tin with butter.\n3. Mix the flour and "
    "the sugar.\n4. Add the eggs one at a time.\n5. Pour the batter into the tin.\n6. Bake for 40 minutes.\n",
    "code with repeated lines": "def reset(self):\n    self.x = 0\n    self.y = 0\n    self.z = 0\n    self.vx = 0\n"
    "    self.vy = 0\n    self.vz = 0\n\ndef step(self):\n    self.x += self.vx\n    self.y += self.vy\n"
    "    self.z += self.vz\n",
    "csv rows": "date,city,temp\n2024-01-01,Paris,3\n2024-01-02,Paris,4\n2024-01-03,Paris,2\n2024-01-04,Paris,5\n"
    "2024-01-05,Paris,6\n2024-01-06,Paris,4\n2024-01-07,Paris,3\n",
    "json array": '[{"id": 1, "name": "apple", "ok": true}, {"id": 2, "name": "pear", "ok": true}, '
    '{"id": 3, "name": "plum", "ok": false}, {"id": 4, "name": "fig", "ok": true}]',
    "song with a refrain": "Row, row, row your boat, gently down the stream.\nMerrily, merrily, merrily, merrily, "
    "life is but a dream.\nRow, row, row your boat, gently down the stream.\nMerrily, merrily, merrily, merrily, "
    "life is but a dream.\n",
    "html list": "<ul>\n  <li>Home</li>\n  <li>About</li>\n  <li>Blog</li>\n  <li>Contact</li>\n  <li>Shop</li>\n"
    "  <li>Help</li>\n</ul>\n",
    "anaphora": "We shall fight on the beaches, we shall fight on the landing grounds, we shall fight in the "
    "fields and in the streets, we shall fight in the hills; we shall never surrender.",
    "multiplication table": "7 x 1 = 7\n7 x 2 = 14\n7 x 3 = 21\n7 x 4 = 28\n7 x 5 = 35\n7 x 6 = 42\n7 x 7 = 49\n"
    "7 x 8 = 56\n7 x 9 = 63\n",
    "ascii rule and headings": "Introduction\n============\n\nMethods\n=======\n\nResults\n=======\n\nDiscussion\n"
    "==========\n",
    "matrix": "[[0, 0, 0, 0],\n [0, 1, 0, 0],\n [0, 0, 1, 0],\n [0, 0, 0, 1]]\n",
    "repeated test assertions": "assert f(1) == 1\nassert f(2) == 4\nassert f(3) == 9\nassert f(4) == 16\n"
    "assert f(5) == 25\nassert f(6) == 36\n",
}
# Degenerate loops as small models produce them: the detector should fire.
LOOPS = {
    "repeated sentence": "The answer is simple. " + "I think that the answer is that it is not. " * 5,
    "repeated phrase": "In the stillness of the snow, " + "a warrior stands, " * 10,
    "single token": "Well" + "!" * 40,
    "two-word cycle": "It was very " + "very very " * 15,
    "repeated list item": "Tips:\n" + "- Drink water and sleep well.\n" * 6,
    "repeated question": "Can you help me? " * 8,
}


def first_detection(ids: list[int], config: LoopConfig) -> int:
    """The first token index at which the detector reports a loop, or -1."""
    tokens = torch.tensor([ids])
    for end in range(1, len(ids) + 1):
        window = tokens[:, max(0, end - config.window) : end]
        if bool(trailing_cycle(window, config.max_period, config.min_repeats, config.min_loop_tokens).progress[0] >= 1):
            return end - 1
    return -1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-period", type=int, default=LoopConfig.max_period)
    parser.add_argument("--min-repeats", type=int, default=LoopConfig.min_repeats)
    parser.add_argument("--min-loop-tokens", type=int, default=LoopConfig.min_loop_tokens)
    args = parser.parse_args()
    config = LoopConfig(args.max_period, args.min_repeats, args.min_loop_tokens)
    _, tokenizer = load_default_model()
    false_positives, caught = 0, 0
    print(
        f"LoopConfig: max_period={config.max_period}, min_repeats={config.min_repeats}, "
        f"min_loop_tokens={config.min_loop_tokens}\n"
    )
    for label, group in (("legitimate", LEGITIMATE), ("loop", LOOPS)):
        for name, text in group.items():
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            at = first_detection(ids, config)
            flagged = at >= 0
            false_positives += flagged and label == "legitimate"
            caught += flagged and label == "loop"
            where = f"fires at token {at}/{len(ids)}" if flagged else f"silent over {len(ids)} tokens"
            print(f"{label:<10} {name:<26} {where}")
    print(
        f"\nfalse-positive rate: {false_positives}/{len(LEGITIMATE)} legitimate texts flagged; "
        f"recall: {caught}/{len(LOOPS)} loops caught"
    )


if __name__ == "__main__":
    main()
