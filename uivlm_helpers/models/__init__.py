"""Models: name resolution, the embedded tiny and shipped checkpoints, and the model API.

``resolve`` (a model name -> the folder to load and its family), ``tiny`` (build the tiny checkpoints of
every family offline), ``pretrained`` (the models shipped in ``models/``), ``model_configs`` (published
architecture specs and parameter counts), ``constrained`` (decoding that can only write valid actions)
and ``wrapper`` (:class:`~.wrapper.VLMWrapper`: load, encode, loss, predict). Imports from core, data
and families.
"""
