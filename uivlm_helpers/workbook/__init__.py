"""The workbook layer: what the notebooks call, on top of every other layer.

``runner`` (``python -m uivlm_helpers.workbook``: run 01 -> 05 with papermill; each notebook's start and
results), ``widgets`` (the model and action-format pickers, the prediction browser), ``viz`` (overlays,
galleries, bar charts), ``envcheck`` (the environment report) and ``nbclean``
(``python -m uivlm_helpers.workbook.nbclean``: strip outputs from notebooks).
"""
