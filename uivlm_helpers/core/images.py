"""Screenshots as the models take them."""

from __future__ import annotations

from PIL import Image


def as_image(image) -> Image.Image:
    """An RGB PIL image of a PIL image or an image file's path."""
    return image.convert("RGB") if isinstance(image, Image.Image) else Image.open(image).convert("RGB")
