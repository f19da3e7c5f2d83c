"""One-off measurements behind figures and decisions in the docs; each runs as `python -m tools.probes.<name>`."""
