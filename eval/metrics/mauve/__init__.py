"""The `mauve` metric as a package: its script imports its sibling `minilm`."""
