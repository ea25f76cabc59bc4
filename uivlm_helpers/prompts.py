"""Prompt text: the task prompt template, its format and coordinate hints, and few-shot examples."""

from __future__ import annotations

FORMAT_HINTS = {
    "text": 'click(x, y), type("text"), scroll(down, 100) or wait(1)',
    "json": '{"type": "click", "x": x, "y": y}',
    "coordinates": "x y click",
}

COORDINATE_HINTS = {
    "norm1000": "as whole numbers from 0 to 1000 (x from the left edge, y from the top)",
    "norm1": "as numbers from 0 to 1 (x from the left edge, y from the top)",
    "pixels": "in screenshot pixels (x from the left edge, y from the top)",
    "resized": "in pixels of the resized image (x from the left edge, y from the top)",
    "paligemma_loc": "as location tokens, y before x",
    "florence_loc": "as location tokens, x before y",
}


def user_text(task_prompt: str, instruction: str, action_format: str, coordinate_space: str,
              examples: list[tuple[str, str]] | None = None) -> str:
    """The user turn for one screenshot.

    Args:
        task_prompt: template with ``{instruction}`` and optionally ``{format_hint}`` and
            ``{coordinate_hint}`` (other literal braces must be doubled, as in ``str.format``).
        instruction: what the user wants done.
        action_format: text, json or coordinates.
        coordinate_space: the family's coordinate space name.
        examples: few-shot (instruction, answer) pairs shown before the instruction.
    """
    text = task_prompt.format(instruction=instruction, format_hint=FORMAT_HINTS[action_format],
                              coordinate_hint=COORDINATE_HINTS.get(coordinate_space, ""))
    if examples:
        shots = "\n".join(f"Instruction: {i}\nAnswer: {a}" for i, a in examples)
        text = f"Examples of instructions and answers:\n{shots}\n\n{text}"
    return text
