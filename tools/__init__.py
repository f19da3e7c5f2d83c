"""Tools around the pipeline, run by no DVC stage: ablation runs, reports, code deps, checks and probes."""
