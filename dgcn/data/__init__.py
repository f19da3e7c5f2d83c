"""Data sets: the VOC layout reader, the embedded synthetic generator, palettes and image loading."""
