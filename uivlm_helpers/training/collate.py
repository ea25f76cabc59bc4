"""The training collator: records in, the family's model inputs with answer-only labels out.

Shared by the plain training path (:mod:`.train`) and the cached-features path (:mod:`.features`), which
batches records exactly as this collator does before it swaps the pixels for cached features.
"""

from __future__ import annotations

from ..core.images import as_image
from ..models.wrapper import VLMWrapper


class UICollator:
    """Batch records (``image``, ``instruction``, ``action`` in pixels, ``id``; for a step of an episode
    ``episode_id``, ``history`` and ``history_images``) into model inputs."""

    def __init__(self, wrapper: VLMWrapper, max_length: int | None = None):
        self.wrapper = wrapper
        self.max_length = max_length

    def __call__(self, records: list[dict]):
        images = [as_image(r["image"]) for r in records]
        return self.encode(records, images, [img.size for img in images])

    def encode(self, records: list[dict], images, sizes, processor=None) -> dict:
        """The batch of ``records`` with these ``images``; answers are mapped for the screenshots' ``sizes``
        (``processor``: see :meth:`.VLMWrapper.encode`)."""
        targets = [self.wrapper.render_target(r["action"], size) for r, size in zip(records, sizes)]
        histories, history_images = self.wrapper.record_histories(records)
        return dict(self.wrapper.encode(images, [r["instruction"] for r in records], targets,
                                        max_length=self.max_length,
                                        record_ids=[r.get("id", i) for i, r in enumerate(records)],
                                        processor=processor, histories=histories, history_images=history_images,
                                        image_sizes=sizes))
