"""The fast training path: the frozen vision tower's features cached on disk, and a fused cross-entropy.

**Cached vision features** (``training.cache_vision_features``). A frozen vision tower gives the same
features for the same screenshot every epoch, and on a GPU its forward costs about as much as the
language model's LoRA step (bench/README.md §5b: 3.6-3.7x the plain recipe's tokens/s on Qwen2-VL-2B
on an H200). :func:`build_cache` runs the tower once per distinct screenshot before training and stores the
output of the model's own ``get_image_features`` as safetensors shards. During training
:class:`CachedFeaturesCollator` batches records exactly as :class:`~uivlm_helpers.training.train.UICollator` does,
drops the pixels and adds the cached features (and, for the Qwen families, the M-RoPE ``position_ids``
from the model's ``get_rope_index``, the same call the plain forward makes). A forward pre-hook on the
model (:func:`install_feature_hook`) then builds ``inputs_embeds`` from the text embeddings with the
cached features scattered at the image-token positions - what the plain forward does after running the
tower - so the loss and the LoRA gradients are the plain path's (bit-identical on the tiny models on
CPU; see ``tests/test_features.py``). A tower with DeepStack (Qwen3-VL: features of intermediate ViT
blocks added inside the first language-model layers) caches those levels beside the merger's output, and
the hook hands them back as the model's own ``mm_encoder_outputs``. A self-check compares the two paths'
losses on a real batch before training starts.

It is exact only while nothing in the tower trains (no trainable parameter, LoRA or otherwise), no
layer of the tower behaves differently in training mode (dropout, stochastic depth, batch norm) and the
images are not augmented per epoch. ``auto`` caches when all three hold and says why not otherwise;
``true`` raises :class:`FastPathError` where it cannot be exact.

The cache lives in ``RUN_DIR/cache/vision_features/`` (or ``training.feature_cache_dir``), in one folder
per *feature key*: the model configuration, a hash of the vision tower's weights (and dtype), the
processor's pixel budget and image-processor settings, the compute device and mixed precision and the
transformers version. Change any of them and the folder's name changes, so nothing stale is ever
reused. Within a folder entries are keyed by a hash of each image's decoded pixels. Shards are written
to a temporary file and renamed into place; a manifest (also written atomically) lists each shard's
length and each entry's checksum. An interrupted build leaves only shards the manifest does not list or
temporary files: both are deleted and their entries rebuilt. A shard that is truncated or does not match
its manifest is dropped and rebuilt, and an entry whose checksum fails when read is recomputed.

**Fused cross-entropy** (``training.fused_cross_entropy``). liger-kernel's model patch (fused linear
cross-entropy, RMSNorm, RoPE) never materialises the fp32 logits over the vocabulary, which dominate
peak memory with Qwen's 152k vocabulary (Qwen2-VL-2B, batch 4 with checkpointing: 16.4 -> 7.4 GiB,
``bench/results/gpu_anchor_2b_h100.jsonl``). It needs CUDA and the
optional extra ``pip install 'uivlm[fast]'``; ``auto`` uses it when both are there.

One job per module, each importing only the ones listed before it: :mod:`.tower` (the loaded model's
vision tower and its forward), :mod:`.decide` (whether each switch is on, and why), :mod:`.key` (feature
keys and hashes), :mod:`.store` (the on-disk cache and :func:`build_cache`), :mod:`.collate` (the cached
collator and the model's pre-hook), :mod:`.report` (the self-check and the notebook's report) and
:mod:`.prepare` (the switch ``build_trainer`` calls). Every name is re-exported here.
"""

from __future__ import annotations

from .collate import (FEATURES_KEY, ROPE_INDEX_FAMILIES, VISION_INPUT_KEYS, CachedFeaturesCollator, deepstack_levels,
                      install_feature_hook, remove_feature_hook, rope_position_ids)
from .decide import (FAST_EXTRA, SWITCH_CHOICES, Decision, FastPathError, apply_fused_ce, cache_decision, decide_cache,
                     decide_fused_ce, mode_dependent_in_spec, mode_dependent_vision_modules, trainable_vision_parameters)
from .key import (_INT_OF_SIZE, CACHE_FORMAT, _fingerprint, feature_key, image_hash, key_hash, tensor_checksum,
                  vision_weights_hash)
from .prepare import prepare_fast_path
from .report import _answer_loss, check_exact, compare_paths, fast_path_report
from .store import (CACHE_SUBDIR, KEY_FILE, MANIFEST, FeatureCache, build_cache, cache_root, describe_cache,
                    record_history_screens, record_image_keys)
from .tower import compute_features, image_layouts, image_token_id

__all__ = [
    "CACHE_FORMAT", "CACHE_SUBDIR", "FAST_EXTRA", "FEATURES_KEY", "KEY_FILE", "MANIFEST", "ROPE_INDEX_FAMILIES",
    "SWITCH_CHOICES", "VISION_INPUT_KEYS", "CachedFeaturesCollator", "Decision", "FastPathError", "FeatureCache",
    "apply_fused_ce", "build_cache", "cache_decision", "cache_root", "check_exact", "compare_paths",
    "compute_features", "decide_cache", "decide_fused_ce", "deepstack_levels", "describe_cache", "fast_path_report",
    "feature_key", "image_hash", "image_layouts", "image_token_id", "install_feature_hook", "key_hash",
    "mode_dependent_in_spec", "mode_dependent_vision_modules", "prepare_fast_path", "record_history_screens", "record_image_keys",
    "remove_feature_hook", "rope_position_ids", "tensor_checksum", "trainable_vision_parameters",
    "vision_weights_hash",
    # the tests reach these helpers through the package: the GPU weight fingerprint and the answer-only loss
    "_INT_OF_SIZE", "_answer_loss", "_fingerprint",
]
