"""Tooling outside the pipeline's stages."""
