"""The bottom layer: what every other layer shares, with no model, data set or notebook behind it.

``coords`` (coordinate spaces), ``actions`` (the one action schema: parse, render, decode),
``prompts`` (prompt templates), ``config`` (the run configuration), ``paths`` (a run's files, the split
file names, the repository's folders) and ``images`` (screenshots as the models take them).

The package's layers, each importing only from the layers below it (``tests/test_layers.py``):
core -> data -> families -> models -> training -> evaluation -> sharing -> workbook.
"""
