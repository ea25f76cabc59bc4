"""Prompt text: the task prompt template, its format and coordinate hints, few-shot examples and the
episode's history (earlier actions, earlier screenshots)."""

from __future__ import annotations

import string

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

#: Where a template puts the instruction; the seed guide's YAML writes ``{task_description}``.
INSTRUCTION_PLACEHOLDERS = ("instruction", "task_description")
#: Every placeholder a task prompt (or few-shot prompt) template may use.
PROMPT_PLACEHOLDERS = (*INSTRUCTION_PLACEHOLDERS, "format_hint", "coordinate_hint")


def template_problem(template: str) -> str | None:
    """Why ``template`` cannot serve as a task prompt, or None when it can.

    A template needs ``{instruction}`` (or ``{task_description}``); it may also use ``{format_hint}``
    and ``{coordinate_hint}``. Any other ``{name}``, and single literal braces, are refused here so a
    run configuration fails when it loads rather than at the first prompt.
    """
    allowed = ", ".join("{" + name + "}" for name in PROMPT_PLACEHOLDERS)
    braces = "write literal braces as {{ and }}"
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as error:
        return f"{error}; {braces}"
    unknown = [name for name in names if name not in PROMPT_PLACEHOLDERS]
    if unknown:
        shown = ", ".join("{" + name + "}" for name in dict.fromkeys(unknown))
        return f"unknown placeholder {shown}; allowed placeholders: {allowed} ({braces})"
    if not set(names) & set(INSTRUCTION_PLACEHOLDERS):
        return ("must contain '{instruction}' (or the seed guide's '{task_description}') where the "
                f"instruction goes; allowed placeholders: {allowed}")
    try:  # conversions and format specs ("{instruction!r:>5}") are checked by using them once
        _fill(template, "instruction", "text", "")
    except (ValueError, KeyError, IndexError, AttributeError) as error:
        return f"cannot be filled in ({type(error).__name__}: {error}); {braces}"
    return None


def _fill(template: str, instruction: str, action_format: str, coordinate_space: str) -> str:
    return template.format(instruction=instruction, task_description=instruction,
                           format_hint=FORMAT_HINTS[action_format],
                           coordinate_hint=COORDINATE_HINTS.get(coordinate_space, ""))


def history_text(actions: list[str] | None, history_image_count: int = 0) -> str:
    """The history block of a user turn: the episode's earlier actions, oldest first, each written as an
    answer is (``actions`` are rendered answers), and what the extra images are.

    ``None`` (history off) gives ``""``; an empty list (the first step of an episode) says so, because a
    model that reads its position from the history must see that nothing happened yet.
    """
    if actions is None:
        return ""
    lines = [f"{i}. {a}" for i, a in enumerate(actions, 1)] or ["none"]
    text = "Previous actions, oldest first:\n" + "\n".join(lines)
    if history_image_count == 1:
        text += "\nThe first image is the previous screen; the last image is the current screen."
    elif history_image_count:
        text += (f"\nThe first {history_image_count} images are earlier screens, oldest first; the last image "
                 "is the current screen.")
    return text


def user_text(task_prompt: str, instruction: str, action_format: str, coordinate_space: str,
              examples: list[tuple[str, str]] | None = None, few_shot_prompt: str | None = None,
              history: list[str] | None = None, history_image_count: int = 0) -> str:
    """The user turn for one screenshot.

    Args:
        task_prompt: template with ``{instruction}`` (or its synonym ``{task_description}``) and
            optionally ``{format_hint}`` and ``{coordinate_hint}`` (other literal braces must be
            doubled, as in ``str.format``).
        instruction: what the user wants done.
        action_format: text, json or coordinates.
        coordinate_space: the family's coordinate space name.
        examples: few-shot (instruction, answer) pairs shown before the instruction.
        few_shot_prompt: template used instead of ``task_prompt`` when ``examples`` are given
            (the run configuration's ``few_shot_prompt``; it may hold worked examples of its own).
        history: the episode's last earlier actions as rendered answers, oldest first (None: no history
            block; ``[]``: the first step); see :func:`history_text`.
        history_image_count: earlier screenshots shown before the current one.
    """
    template = few_shot_prompt if examples and few_shot_prompt else task_prompt
    text = _fill(template, instruction, action_format, coordinate_space)
    if examples:
        shots = "\n".join(f"Instruction: {i}\nAnswer: {a}" for i, a in examples)
        text = f"Examples of instructions and answers:\n{shots}\n\n{text}"
    block = history_text(history, history_image_count)
    return f"{block}\n\n{text}" if block else text
