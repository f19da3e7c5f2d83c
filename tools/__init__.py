"""Project tooling beside the pipeline: ablations, code deps, reports, doc tables, checks and probes."""
