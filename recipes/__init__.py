"""Recipes that use the package but are not part of it: ``python -m recipes.pretrain`` (from the repository
root) pretrains the shipped tiny base models (``models/*/TRAINING.md``)."""
