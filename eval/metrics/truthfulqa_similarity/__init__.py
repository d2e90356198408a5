"""The `truthfulqa_similarity` metric as a package: its script imports its sibling `minilm`."""
