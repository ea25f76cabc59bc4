"""Oracle policies: scripted players that read the DOM (exact element positions).

They produce demonstrations (:func:`~uivlm_helpers.data.miniwob_env.record_demonstrations`) and
check the environment (:func:`~uivlm_helpers.data.miniwob_env.rollout`). An oracle is a plan of
steps (click this element, type that text, click Submit); :func:`oracle_step` re-reads the current
DOM at every step and returns the step's action in screenshot pixels with the element it aims at.
:data:`ORACLES` maps each task to its oracle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .state import Element, MiniWoBState


@dataclass(frozen=True)
class OracleStep:
    """One oracle decision: the action (screenshot pixels) and the element it aims at, if any."""

    action: dict
    element: Element | None = None


def _click(state: MiniWoBState, element: Element) -> OracleStep:
    x, y = state.click_point(element)
    return OracleStep({"type": "click", "x": x, "y": y}, element)


def _type(text: str) -> OracleStep:
    return OracleStep({"type": "type", "text": text})


def _plan_step(plan: list[Callable[[], OracleStep]], step: int, state: MiniWoBState) -> OracleStep:
    if step >= len(plan):
        raise LookupError(f"{state.task}: the oracle's plan has {len(plan)} steps; asked for step {step + 1}")
    return plan[step]()


def _button(state: MiniWoBState, text: str) -> Element:
    return state.one(tag="button", text=text)


def _labelled_input(state: MiniWoBState, tag: str, label: str) -> Element:
    """The checkbox/radio whose label text is ``label``."""
    for e in state.find(tag=tag):
        if any(c.tag == "t" and c.text.strip() == label for c in state.children(_parent(state, e))):
            return e
    raise LookupError(f"{state.task}: no {tag} labelled {label!r}")


def _parent(state: MiniWoBState, element: Element) -> Element:
    for e in state.elements:
        if e.ref == element.parent:
            return e
    raise LookupError(f"{state.task}: element {element.ref} has no parent")


def _fill(state: MiniWoBState, step: int, entries: list[tuple[Element, str]], submit: Element) -> OracleStep:
    """Click each field and type its text, then click ``submit``."""
    plan: list[Callable[[], OracleStep]] = []
    for element, text in entries:
        plan += [lambda e=element: _click(state, e), lambda t=text: _type(t)]
    plan.append(lambda: _click(state, submit))
    return _plan_step(plan, step, state)


def _targets(state: MiniWoBState) -> list[str]:
    keys = sorted((k for k in state.fields if k.startswith("target")),
                  key=lambda k: int(k.split()[-1]) if k.split()[-1].isdigit() else -1)
    return [state.fields[k] for k in keys]


def _oracle_click_test(state, step):
    return _plan_step([lambda: _click(state, state.one(tag="button"))], step, state)


def _oracle_click_target_button(state, step):  # click-test-2, click-test-transfer, click-button, unicode-test
    return _plan_step([lambda: _click(state, _button(state, state.fields["target"]))], step, state)


def _oracle_click_link(state, step):
    link = state.one(tag="span", cls="alink", text=state.fields["target"])
    return _plan_step([lambda: _click(state, link)], step, state)


def _oracle_click_dialog(state, step):
    return _plan_step([lambda: _click(state, state.one(tag="button", cls="ui-dialog-titlebar-close"))], step, state)


def _oracle_focus_text(state, step):
    return _plan_step([lambda: _click(state, state.one(tag="input_text"))], step, state)


def _oracle_focus_text_2(state, step):
    field = state.one(tag="input_text", id=f"tt{int(state.fields['target'])}")
    return _plan_step([lambda: _click(state, field)], step, state)


def _oracle_enter_text(state, step):
    return _fill(state, step, [(state.one(tag="input_text"), state.fields["target"])], _button(state, "Submit"))


def _oracle_enter_text_2(state, step):
    text = state.fields["text"]
    text = text.upper() if state.fields["case"] == "upper" else text.lower()
    return _fill(state, step, [(state.one(tag="input_text"), text)], _button(state, "Submit"))


def _oracle_login_user(state, step):
    entries = [(state.one(id="username"), state.fields["username"]),
               (state.one(id="password"), state.fields["password"])]
    return _fill(state, step, entries, _button(state, "Login"))


def _oracle_enter_password(state, step):
    target = state.fields["target"]
    return _fill(state, step, [(state.one(id="password"), target), (state.one(id="verify"), target)],
                 _button(state, "Submit"))


def _oracle_click_checkboxes(state, step):
    plan = [lambda name=name: _click(state, _labelled_input(state, "input_checkbox", name))
            for name in _targets(state)]
    plan.append(lambda: _click(state, _button(state, "Submit")))
    return _plan_step(plan, step, state)


def _oracle_click_option(state, step):
    plan = [lambda: _click(state, _labelled_input(state, "input_radio", state.fields["target"])),
            lambda: _click(state, _button(state, "Submit"))]
    return _plan_step(plan, step, state)


def _oracle_click_tab(state, step):
    tab = state.one(cls="ui-tabs-anchor", text=f"Tab #{state.fields['target']}")
    return _plan_step([lambda: _click(state, tab)], step, state)


def _oracle_click_button_sequence(state, step):
    return _plan_step([lambda: _click(state, _button(state, "ONE")), lambda: _click(state, _button(state, "TWO"))],
                      step, state)


def _oracle_click_collapsible(state, step):
    # The section opens with a jQuery animation: wait for it, then click the button where it now is.
    plan = [lambda: _click(state, state.one(cls="ui-accordion-header")),
            lambda: OracleStep({"type": "wait", "seconds": 1}),
            lambda: _click(state, _button(state, "Submit"))]
    return _plan_step(plan, step, state)


def _oracle_click_tab_2(state, step):
    """Look through the tabs in order until the link is on the open one, then click it.

    Only the open tab's panel is in the DOM; each call re-reads it, so the plan is one click per
    tab visited and one on the link (any link with the target's text counts).
    """
    links = [e for e in state.find(tag="span", cls="alink", text=state.fields["target"])
             if state.box_pixels(e) is not None]
    if links:
        return _click(state, links[0])
    tabs = state.find(cls="ui-tabs-anchor")
    active = [i for i, tab in enumerate(tabs) if "ui-tabs-active" in _parent(state, tab).class_list]
    following = active[0] + 1 if active else 0
    if following >= len(tabs):
        raise LookupError(f"{state.task}: no tab shows a link {state.fields['target']!r}")
    return _click(state, tabs[following])


def _autocomplete_matches(state: MiniWoBState, item: str) -> bool:
    return item.startswith(state.fields["start"]) and item.endswith(state.fields.get("end", ""))


#: jQuery UI's autocomplete opens its menu 300 ms after the last key: wait a little longer.
_AUTOCOMPLETE_WAIT_S = 0.4


def _oracle_use_autocomplete(state, step):
    """Type the start, pick the matching suggestion from the menu, Submit.

    The menu can run below the screenshot: when the matching suggestion is not on it, the oracle
    types the rest of the suggestion so that the menu narrows to it.
    """
    field = state.one(id="tags")
    value = field.value
    if step == 0 or (not field.focused and not value):  # the field may keep the focus of the last episode
        return _click(state, field)
    if not value:
        return _type(state.fields["start"])
    menu = state.find(cls="ui-autocomplete")
    items = [e for e in state.find(cls="ui-menu-item-wrapper") if menu and state.is_inside(e, menu[0])]
    wanted = [e for e in items if _autocomplete_matches(state, e.text)]
    if not items:
        # The typed start alone may pass; the oracle still shows the widget's use (a whole suggestion),
        # so right after typing it waits for the menu. Later (step 3 on), the start is the suggestion.
        if _autocomplete_matches(state, value) and (value != state.fields["start"] or step >= 3):
            return _click(state, _button(state, "Submit"))
        return OracleStep({"type": "wait", "seconds": _AUTOCOMPLETE_WAIT_S})
    if not wanted:
        raise LookupError(f"{state.task}: no suggestion for {state.utterance!r} among {[e.text for e in items]}")
    choice = wanted[0]
    box = state.box_pixels(choice)
    if box is not None and box[3] - box[1] >= choice.height * state.scale[1] / 2:
        return _click(state, choice)
    if value != choice.text and choice.text.startswith(value):
        return _type(choice.text[len(value):])
    return OracleStep({"type": "wait", "seconds": _AUTOCOMPLETE_WAIT_S})  # the menu has not narrowed yet


_WIDGET_TAGS = {"radio": "input_radio", "checkbox": "input_checkbox", "text": "input_text",
                "textarea": "textarea", "button": "button"}


def _oracle_click_widget(state, step):
    widget = state.one(tag=_WIDGET_TAGS[state.fields["target"]])
    return _plan_step([lambda: _click(state, widget)], step, state)


#: task -> oracle ``(state, step_index) -> OracleStep``. The step index is the number of actions
#: already taken in the episode (``len(history)``); each call re-reads the current DOM.
ORACLES: dict[str, Callable[[MiniWoBState, int], OracleStep]] = {
    "click-test": _oracle_click_test,
    "click-test-2": _oracle_click_target_button,
    "click-button": _oracle_click_target_button,
    "click-link": _oracle_click_link,
    "click-dialog": _oracle_click_dialog,
    "focus-text": _oracle_focus_text,
    "enter-text": _oracle_enter_text,
    "login-user": _oracle_login_user,
    "click-checkboxes": _oracle_click_checkboxes,
    "click-tab": _oracle_click_tab,
    "click-test-transfer": _oracle_click_target_button,
    "unicode-test": _oracle_click_target_button,
    "focus-text-2": _oracle_focus_text_2,
    "enter-text-2": _oracle_enter_text_2,
    "enter-password": _oracle_enter_password,
    "click-option": _oracle_click_option,
    "click-button-sequence": _oracle_click_button_sequence,
    "click-collapsible": _oracle_click_collapsible,
    "click-widget": _oracle_click_widget,
    "click-tab-2": _oracle_click_tab_2,
    "use-autocomplete": _oracle_use_autocomplete,
}
#: Every task with an oracle.
ORACLE_TASKS = tuple(ORACLES)
#: The ten core tasks (also the default task list of ``data.source: miniwob``).
REQUIRED_ORACLE_TASKS = ("click-test", "click-test-2", "click-button", "click-link", "click-dialog",
                         "focus-text", "enter-text", "login-user", "click-checkboxes", "click-tab")
DEFAULT_TASKS = REQUIRED_ORACLE_TASKS


def oracle_step(state: MiniWoBState, step: int) -> OracleStep:
    """The oracle's decision for ``state`` after ``step`` actions.

    Raises:
        KeyError: no oracle for the task (the message lists those there are).
        LookupError: the expected element is not on the page.
    """
    if state.task not in ORACLES:
        raise KeyError(f"no oracle policy for MiniWoB++ task {state.task!r}; oracles: {sorted(ORACLES)}")
    return ORACLES[state.task](state, step)


def oracle_policy(record: dict) -> dict:
    """The oracle as a policy: ``record`` must come from
    :meth:`~uivlm_helpers.data.miniwob_env.MiniWoBTask.record_dict`."""
    return oracle_step(record["miniwob"], len(record["history"])).action
