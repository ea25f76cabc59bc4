"""Training: ``python -m uivlm_helpers.training --run-dir RUN`` trains a prepared run.

``collate`` (records -> model inputs with answer-only labels), ``train`` (the Trainer, its arguments,
sealed checkpoints, resume, the command line), ``checkpointing`` (partial activation checkpointing),
``features`` (the fast path: cached vision features, fused cross-entropy), ``memory`` (the training
memory estimate) and ``profiling`` (the measured peak). Imports from the layers below (core, data,
families, models).
"""
