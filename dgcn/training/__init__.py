"""Training loops: the cue classifier, DGCN, and the retrained segmentation network share one epoch loop."""
