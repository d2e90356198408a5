"""The `prompt_coherence` metric as a package: its script imports its sibling `minilm`."""
