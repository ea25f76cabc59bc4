"""Binding experiments (does a tiny model bind a colour word to the pixels of the named box?), run from
the repository root: ``python -m bench.binding.two_boxes TAG STEPS LR``; bench/README.md section 6."""
