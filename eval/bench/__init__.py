"""The benchmark suite's machinery: tasks, decoders, generation, scoring and reports.

`eval/run.py` is the entry point; these modules are importable on their own (tests put `eval/` on
`sys.path`). Nothing here is part of the installed `icp` package.
"""
