"""The action language: validation, canonical rendering, exact round trips (property-tested for
every type x format x space), and tolerant decoding of messy model outputs."""

import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uivlm_helpers.core.actions import (ACTION_FIELDS, ACTION_FORMATS, ACTION_TYPES, FORMAT_TEMPLATES, KEY_NAMES,
                                   KEY_PATTERN, MAX_ANSWER_CHARS, MODIFIER_KEYS, SCROLL_DIRECTIONS, Action,
                                   ActionDecoder, ParseFailure, decode_to_pixels, encode_action, get_space,
                                   parse_action, render_action)
from uivlm_helpers.core.coords import LocTokenSpace

SPACES = (None, "pixels", "norm1", "norm1000", "resized", "paligemma_loc", "florence_loc")


def resolve(space_name):
    if space_name is None:
        return None
    return get_space(space_name, size=(1288, 728)) if space_name == "resized" else get_space(space_name)


# --- Action: construction, validation, dicts -------------------------------------------------------

def test_to_dict_has_only_the_fields_that_apply_and_keeps_ints():
    assert Action("click", x=100, y=200).to_dict() == {"type": "click", "x": 100, "y": 200}
    assert type(Action("click", x=100, y=200).to_dict()["x"]) is int
    assert list(Action("drag", x=1, y=2, x2=3.5, y2=4).to_dict()) == ["type", "x", "y", "x2", "y2"]
    assert Action("done").to_dict() == {"type": "done"}
    for action_type, fields in ACTION_FIELDS.items():
        assert action_type in ACTION_TYPES and set(fields) <= set(Action.__dataclass_fields__)


def test_point():
    assert Action("click", x=1, y=2).point == (1, 2)
    assert Action("drag", x=1, y=2, x2=3, y2=4).point == (1, 2)
    assert Action("type", text="a").point is None


@pytest.mark.parametrize("d, message", [
    ({"type": "tap", "x": 1, "y": 2}, "unknown action 'tap' (expected one of click, double_click"),
    ({"x": 1, "y": 2}, "missing field 'type'"),
    ({"type": "click", "x": 1}, "missing y coordinate for click"),
    ({"type": "click", "x": "1", "y": 2}, "x coordinate must be a number, got '1'"),
    ({"type": "click", "x": True, "y": 2}, "x coordinate must be a number, got True"),
    ({"type": "click", "x": math.nan, "y": 2}, "x coordinate must be a number, got nan"),
    ({"type": "click", "x": 1, "y": 2, "text": "a"}, "click takes no text (it takes x, y)"),
    ({"type": "click", "x": 1, "y": 2, "button": "left"}, "unknown field 'button'"),
    ({"type": "type", "text": 5}, "text must be a string, got 5"),
    ({"type": "press", "key": "ctrl a"}, "key must be a key name like Enter or ctrl+a, got 'ctrl a'"),
    ({"type": "scroll", "direction": "Down", "amount": 1}, "direction must be one of up, down, left, right"),
    ({"type": "scroll", "direction": "down", "amount": 1.0}, "amount must be a whole number >= 0, got 1.0"),
    ({"type": "scroll", "direction": "down", "amount": -1}, "amount must be a whole number >= 0"),
    ({"type": "wait", "seconds": -0.5}, "seconds must be a number >= 0"),
    ({"type": "done", "seconds": 1}, "done takes no seconds (it takes nothing)"),
    (["click", 1, 2], "an action must be a dict, got list"),
])
def test_from_dict_names_the_field_and_what_was_expected(d, message):
    with pytest.raises(ValueError) as error:
        Action.from_dict(d)
    assert message in str(error.value)


def test_from_dict_round_trips_and_treats_none_as_absent():
    assert Action.from_dict({"type": "click", "x": 1, "y": 2.5, "text": None}) == Action("click", x=1, y=2.5)
    action = Action("scroll", direction="left", amount=3)
    assert Action.from_dict(action.to_dict()) == action


def test_parse_failure_is_falsy():
    failure = parse_action("nothing here", "text")
    assert isinstance(failure, ParseFailure) and not failure
    assert failure == ParseFailure("no action found", "nothing here")


# --- Canonical rendering ---------------------------------------------------------------------------

CANONICAL = [
    (Action("click", x=100, y=200), "click(100, 200)", '{"type": "click", "x": 100, "y": 200}',
     "100 200 click"),
    (Action("double_click", x=1.5, y=2), "double_click(1.5, 2)", '{"type": "double_click", "x": 1.5, "y": 2}',
     "1.5 2 double_click"),
    (Action("long_press", x=1, y=2), "long_press(1, 2)", '{"type": "long_press", "x": 1, "y": 2}',
     "1 2 long_press"),
    (Action("drag", x=1, y=2, x2=3, y2=4), "drag(1, 2, 3, 4)",
     '{"type": "drag", "x": 1, "y": 2, "x2": 3, "y2": 4}', "1 2 3 4 drag"),
    (Action("type", text='say "hi"\\\né'), r'type("say \"hi\"\\\né")',
     r'{"type": "type", "text": "say \"hi\"\\\né"}', r'type "say \"hi\"\\\né"'),
    (Action("press", key="ctrl+a"), "press(ctrl+a)", '{"type": "press", "key": "ctrl+a"}', "press ctrl+a"),
    (Action("scroll", direction="down", amount=100), "scroll(down, 100)",
     '{"type": "scroll", "direction": "down", "amount": 100}', "scroll down 100"),
    (Action("wait", seconds=1), "wait(1)", '{"type": "wait", "seconds": 1}', "wait 1"),
    (Action("wait", seconds=1.0), "wait(1.0)", '{"type": "wait", "seconds": 1.0}', "wait 1.0"),
    (Action("done"), "done()", '{"type": "done"}', "done"),
]


@pytest.mark.parametrize("action, text, json_form, coordinates", CANONICAL,
                         ids=lambda v: getattr(v, "type", None))
def test_canonical_strings(action, text, json_form, coordinates):
    assert render_action(action, "text") == text
    assert render_action(action, "json") == json_form
    assert render_action(action, "coordinates") == coordinates


def test_location_token_rendering():
    click, drag = Action("click", x=256, y=512), Action("drag", x=1, y=2, x2=3, y2=4)
    assert render_action(click, "text", "paligemma_loc") == "click(<loc0512><loc0256>)"
    assert render_action(click, "coordinates", "paligemma_loc") == "<loc0512><loc0256> click"
    assert render_action(click, "text", "florence_loc") == "click(<loc_256><loc_512>)"
    assert render_action(drag, "text", "florence_loc") == "drag(<loc_1><loc_2>, <loc_3><loc_4>)"
    assert render_action(drag, "coordinates", "paligemma_loc") == "<loc0002><loc0001> <loc0004><loc0003> drag"
    assert render_action(click, "json", "paligemma_loc") == '{"type": "click", "x": 256, "y": 512}'
    # Spaces without tokens write plain numbers.
    assert render_action(click, "text", "norm1000") == "click(256, 512)"
    with pytest.raises(ValueError, match="0..1023"):
        render_action(Action("click", x=1024, y=0), "text", "paligemma_loc")


def test_unknown_formats_are_caller_errors():
    with pytest.raises(ValueError, match="supported: text, json, coordinates"):
        ActionDecoder("yaml")
    with pytest.raises(ValueError, match="supported: text, json, coordinates"):
        parse_action("click(1, 2)", "xml")
    with pytest.raises(ValueError, match="supported: text, json, coordinates"):
        render_action(Action("done"), "csv")


def test_grammar_data_is_consistent():
    assert set(FORMAT_TEMPLATES) == set(ACTION_FORMATS) - {"json"}
    for templates in FORMAT_TEMPLATES.values():
        assert set(templates) == set(ACTION_TYPES)
    for key in KEY_NAMES + MODIFIER_KEYS:
        assert Action("press", key=key).key == key
    assert SCROLL_DIRECTIONS == ("up", "down", "left", "right")


# --- Seed API --------------------------------------------------------------------------------------

@pytest.mark.parametrize("action_format", ACTION_FORMATS)
def test_seed_decoder_api(action_format):
    expected = {"type": "click", "x": 100, "y": 200}
    rendered = render_action(Action.from_dict(expected), action_format)
    assert ActionDecoder(action_format).decode(rendered) == expected
    assert ActionDecoder(action_format).decode_action(rendered) == Action("click", x=100, y=200)
    assert ActionDecoder("text").decode("click(100, 200)") == expected


# --- Round trips for every type x format x space ---------------------------------------------------

AWKWARD_TEXT = st.one_of(
    st.text(),
    st.sampled_from(["", '"', "'", "\\", "\\n", "\n", "\t", "\x00", "é 😀 中文", "click(1, 2)",
                     "100 200 click",
                     '{"type": "done"}', "<|im_end|>", "</s>", ")", "done", '\\"', "\u2028"]),
)


def coordinate(space):
    if isinstance(space, LocTokenSpace):
        return st.integers(0, space.grid[0] - 1)
    if space is not None and space.name == "norm1":
        return st.floats(0, 1).map(lambda v: round(v, 3))
    if space is not None and space.name in ("norm1000", "resized"):
        return st.integers(0, 999)
    return st.one_of(st.integers(-10**9, 10**9), st.floats(allow_nan=False, allow_infinity=False))


def actions(action_type, space):
    c = coordinate(space)
    fields = {
        "x": c, "y": c, "x2": c, "y2": c, "text": AWKWARD_TEXT,
        "key": st.one_of(st.sampled_from(KEY_NAMES + MODIFIER_KEYS),
                         st.from_regex(KEY_PATTERN, fullmatch=True)),
        "direction": st.sampled_from(SCROLL_DIRECTIONS),
        "amount": st.integers(0, 10**12),
        "seconds": st.one_of(st.integers(0, 10**6), st.floats(0, 1e6)),
    }
    return st.builds(Action, st.just(action_type), **{f: fields[f] for f in ACTION_FIELDS[action_type]})


@pytest.mark.parametrize("space_name", SPACES, ids=str)
@pytest.mark.parametrize("action_format", ACTION_FORMATS)
@pytest.mark.parametrize("action_type", ACTION_TYPES)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_render_then_parse_is_exact(action_type, action_format, space_name, data):
    space = resolve(space_name)
    action = data.draw(actions(action_type, space))
    rendered = render_action(action, action_format, space)
    assert render_action(action, action_format, space) == rendered  # deterministic
    parsed = parse_action(rendered, action_format, space)
    assert parsed == action
    assert repr(parsed) == repr(action)  # types too: 1 and 1.0 are equal but not the same answer
    assert ActionDecoder(action_format, space).decode(rendered) == action.to_dict()


JUNK = st.lists(st.sampled_from([
    "click", "Click", "drag", "type", "press", "scroll", "wait", "done", "tap", "(", ")", "((", "[", "]", ",",
    "=", ":", "x", "down", "1", "-2.5", "1e5", '"', "'", "\\", "<loc0012>", "<loc_3>", "<|box_start|>",
    "<|box_end|>",
    "<|object_ref_start|>", "{", "}", '"type"', " ", "\n", "<|im_end|>", "```json",
]), max_size=30).map("".join)


@pytest.mark.parametrize("action_format", ACTION_FORMATS)
@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(), JUNK), space=st.sampled_from([None, "paligemma_loc", "florence_loc"]))
def test_parsing_never_raises_on_model_output(action_format, text, space):
    result = parse_action(text, action_format, space)
    if not isinstance(result, Action):
        assert isinstance(result, ParseFailure) and result.reason and result.text == text


def test_non_text_output_is_a_failure_not_an_exception():
    assert parse_action(None, "text") == ParseFailure("expected text, got NoneType", "None")


# --- Messy model outputs ---------------------------------------------------------------------------

def fails(reason):
    return ("fails", reason)


def click(x, y):
    return {"type": "click", "x": x, "y": y}


MESSY = [
    # text format
    ("text", None, "click(100, 200)", click(100, 200)),
    ("text", None, "The answer is click(10, 20).", click(10, 20)),
    ("text", None, "Click(10, 20)", click(10, 20)),
    ("text", None, "CLICK(  10 ,   20 )", click(10, 20)),
    ("text", None, "click(x=100, y=200)", click(100, 200)),
    ("text", None, "click(y=200, x=100)", click(100, 200)),
    ("text", None, "click(x: 100, y: 200)", click(100, 200)),
    ("text", None, "click(100 200)", click(100, 200)),
    ("text", None, "click(10.5, 20.25)", click(10.5, 20.25)),
    ("text", None, "click(-5, 20)", click(-5, 20)),
    ("text", None, "click((10,20),(30,40))", click(20, 30)),
    ("text", None, "click([10, 20, 30, 41])", click(20, 30.5)),
    ("text", None, "click(<|box_start|>(10,20),(30,40)<|box_end|>)", click(20, 30)),
    ("text", None, "<|object_ref_start|>Save button<|object_ref_end|><|box_start|>(100,200),(300,400)<|box_end|>"
     "<|im_end|>", click(200, 300)),
    ("text", None, "<|im_start|>assistant\nclick(5, 6)<|im_end|>", click(5, 6)),
    ("text", None, "assistant\nclick(5, 6)</s>", click(5, 6)),
    ("text", None, "click(5, 6)<|endoftext|><|endoftext|>", click(5, 6)),
    ("text", None, "```\nclick(5, 6)\n```", click(5, 6)),
    ("text", None, 'click(5, 6) and then type("x")', click(5, 6)),
    ("text", None, "Thought: the Save button is top right.\nAction: double_click(1, 2)",
     {"type": "double_click", "x": 1, "y": 2}),
    ("text", None, "long_press(3, 4)", {"type": "long_press", "x": 3, "y": 4}),
    ("text", None, "drag((1, 2), (3, 4))", {"type": "drag", "x": 1, "y": 2, "x2": 3, "y2": 4}),
    ("text", None, "drag(x1=1, y1=2, x2=3, y2=4)", {"type": "drag", "x": 1, "y": 2, "x2": 3, "y2": 4}),
    ("text", None, r'type("hello \"world\"")', {"type": "type", "text": 'hello "world"'}),
    ("text", None, r"type('it\'s')", {"type": "type", "text": "it's"}),
    ("text", None, r'type("line1\nline2")', {"type": "type", "text": "line1\nline2"}),
    ("text", None, 'Type(text="héllo 😀")', {"type": "type", "text": "héllo 😀"}),
    ("text", None, 'type("")', {"type": "type", "text": ""}),
    ("text", None, "press(Enter)", {"type": "press", "key": "Enter"}),
    ("text", None, 'press(key="Tab")', {"type": "press", "key": "Tab"}),
    ("text", None, "scroll(Down, 100)", {"type": "scroll", "direction": "down", "amount": 100}),
    ("text", None, "scroll(direction=up, amount=3)", {"type": "scroll", "direction": "up", "amount": 3}),
    ("text", None, "scroll(100, left)", {"type": "scroll", "direction": "left", "amount": 100}),
    ("text", None, "wait(0.5)", {"type": "wait", "seconds": 0.5}),
    ("text", None, "Done()", {"type": "done"}),
    ("text", None, '{"type": "done"}', {"type": "done"}),
    ("text", None, "tap(10, 20)", fails("unknown action 'tap'")),
    ("text", None, "click(100)", fails("missing y coordinate for click")),
    ("text", None, "click()", fails("missing x coordinate for click")),
    ("text", None, "click(1, 2, 3)",
     fails("click takes a point (x, y) or a box (x1, y1, x2, y2), got 3 numbers")),
    ("text", None, "drag(1, 2, 3)", fails("missing y2 coordinate for drag")),
    ("text", None, "click(abc, 20)", fails("expected a number, got 'abc'")),
    ("text", None, "click(10, 20", fails("incomplete action")),
    ("text", None, "type(hello)", fails("type needs a quoted string")),
    ("text", None, "scroll(down)", fails("missing amount for scroll")),
    ("text", None, "scroll(sideways, 5)", fails("direction must be one of up, down, left, right")),
    ("text", None, "wait(-1)", fails("seconds must be a number >= 0")),
    ("text", None, "done(now)", fails("done takes no arguments")),
    ("text", None, "I cannot help with that.", fails("no action found")),
    ("text", None, "  \n", fails("empty output")),
    ("text", None, "100 200 click", fails("no action found")),  # the coordinates shape needs that format
    ("text", None, "click(<loc0512><loc0256>)", fails("needs a location-token space")),
    # json format
    ("json", None, '{"type": "click", "x": 100, "y": 200}', click(100, 200)),
    ("json", None, '```json\n{"type": "click", "x": 100, "y": 200}\n```', click(100, 200)),
    ("json", None, 'Sure! {"type": "type", "text": "click(1, 2)"} Hope that helps.',
     {"type": "type", "text": "click(1, 2)"}),
    ("json", None, '{"type": "Click", "x": 1.5, "y": 2, "reason": "the Save button"}', click(1.5, 2)),
    ("json", None, '{"action": {"type": "scroll", "direction": "DOWN", "amount": 3}}',
     {"type": "scroll", "direction": "down", "amount": 3}),
    ("json", None, '{"type": "wait", "seconds": 2}<|im_end|>', {"type": "wait", "seconds": 2}),
    ("json", None, "click(1, 2)", click(1, 2)),
    ("json", None, '{"type": "click", "x": 1', fails("invalid JSON")),
    ("json", None, "{'type': 'click', 'x': 1, 'y': 2}", fails("invalid JSON")),
    ("json", None, '{"type": "tap", "x": 1, "y": 2}', fails("unknown action 'tap'")),
    ("json", None, '{"type": "click", "x": "100", "y": 200}', fails("x coordinate must be a number")),
    ("json", None, '{"type": "click", "x": 1, "y": 2, "text": "a"}', fails("click takes no text")),
    # coordinates format
    ("coordinates", None, "100 200 click", click(100, 200)),
    ("coordinates", None, "The answer is 100 200 click.", click(100, 200)),
    ("coordinates", None, "100, 200 Click", click(100, 200)),
    ("coordinates", None, "Step 2: 100 200 click", click(100, 200)),
    ("coordinates", None, "100 200 click<|im_end|>", click(100, 200)),
    ("coordinates", None, "10 20 30 40 click", click(20, 30)),
    ("coordinates", None, "1 2 3 4 drag", {"type": "drag", "x": 1, "y": 2, "x2": 3, "y2": 4}),
    ("coordinates", None, r'type "hello \"x\""', {"type": "type", "text": 'hello "x"'}),
    ("coordinates", None, 'type "wait 5"', {"type": "type", "text": "wait 5"}),
    ("coordinates", None, "press Enter.", {"type": "press", "key": "Enter"}),
    ("coordinates", None, "scroll Down 100", {"type": "scroll", "direction": "down", "amount": 100}),
    ("coordinates", None, "wait 1", {"type": "wait", "seconds": 1}),
    ("coordinates", None, "done", {"type": "done"}),
    ("coordinates", None, "click(100, 200)", click(100, 200)),
    ("coordinates", None, '{"type": "type", "text": "wait 5"}', {"type": "type", "text": "wait 5"}),
    ("coordinates", None, "100 200 tap", fails("unknown action 'tap'")),
    ("coordinates", None, "1 2 3 click", fails("got 3 numbers")),
    ("coordinates", None, "type the name", fails("no action found")),
    # location-token spaces
    ("text", "paligemma_loc", "click(<loc0512><loc0256>)", click(256, 512)),
    ("coordinates", "paligemma_loc", "<loc0100><loc0200><loc0300><loc0400> click", click(300, 200)),
    ("text", "paligemma_loc", "click(<loc_12><loc_34>)", fails("not a paligemma_loc location token")),
    ("text", "paligemma_loc", "click(<loc0512>)", fails("a point needs two")),
    ("text", "florence_loc", "The element is at click(<loc_256> <loc_512>)", click(256, 512)),
    ("coordinates", "florence_loc", "<loc_10><loc_20> <loc_30><loc_40> drag",
     {"type": "drag", "x": 10, "y": 20, "x2": 30, "y2": 40}),
    # Out-of-range units are read as written; decode_to_pixels clamps and flags them.
    ("text", "florence_loc", "click(<loc_1500><loc_20>)", click(1500, 20)),
    ("text", "norm1000", "click(1200, -4)", click(1200, -4)),
]


@pytest.mark.parametrize("action_format, space, output, expected", MESSY,
                         ids=[repr(m[2])[:50] for m in MESSY])
def test_messy_model_outputs(action_format, space, output, expected):
    result = ActionDecoder(action_format, space).decode(output)
    if isinstance(expected, tuple):
        assert isinstance(result, ParseFailure), result
        assert expected[1] in result.reason and result.text == output
    else:
        assert result == expected
        assert [type(v) for v in result.values()] == [type(v) for v in expected.values()]


def test_from_model_output_to_pixels_end_to_end():
    image_size = (1920, 1080)
    target = Action("click", x=1000, y=100)
    answer = render_action(encode_action(target, "norm1000", image_size), "text")
    assert answer == "click(520, 92)"
    parsed = parse_action(f"Sure. {answer}<|im_end|>", "text")
    action, clamped = decode_to_pixels(parsed, "norm1000", image_size)
    assert not clamped and abs(action.x - 1000) <= 0.96 and abs(action.y - 100) <= 0.54
    _, clamped = decode_to_pixels(parse_action("click(1200, -4)", "text"), "norm1000", image_size)
    assert clamped


# --- Hostile outputs: huge numbers, runaway length -------------------------------------------------

NINES = "9" * 400  # beyond any float (math.isfinite raised OverflowError on such ints)
MANY_NINES = "9" * 5000  # beyond Python's 4,300-digit int() limit too


@pytest.mark.parametrize("digits", [NINES, MANY_NINES], ids=["400 digits", "5000 digits"])
@pytest.mark.parametrize("action_format, template, reason", [
    ("text", "click({n}, 5)", "x coordinate is too large"),
    ("text", "click(x=5, y={n})", "y coordinate is too large"),
    ("text", "click(1, 2, {n}, 4)", "x coordinate is too large"),  # a box, clicked at its centre
    ("text", "drag(1, 2, 3, -{n})", "y2 coordinate is too large"),
    ("text", "wait({n})", "seconds is too large"),
    ("text", "scroll(down, {n})", "amount is too large"),
    ("json", '{{"type":"click","x":{n},"y":1}}', "x coordinate is too large"),
    ("json", '{{"type":"wait","seconds":{n}}}', "seconds is too large"),
    ("json", '{{"type":"scroll","direction":"up","amount":{n}}}', "amount is too large"),
    ("coordinates", "{n} 5 click", "x coordinate is too large"),
    ("coordinates", "wait {n}", "seconds is too large"),
    ("coordinates", "scroll down {n}", "amount is too large"),
])
def test_numbers_too_large_for_a_float_are_a_failure_naming_the_field(digits, action_format, template,
                                                                       reason):
    output = template.format(n=digits)
    result = parse_action(output, action_format, "norm1000")
    assert isinstance(result, ParseFailure), result
    assert reason in result.reason and "1.8e+308" in result.reason and result.text == output
    assert len(result.reason) < 200  # the number itself is not repeated


@pytest.mark.parametrize("output, reason", [
    ("click(1e400, 5)", "x coordinate is too large"),
    ("wait(-1e999)", "seconds is too large"),
    ('{"type": "wait", "seconds": Infinity}', "seconds is too large"),
    ("click(1e999, 1, -1e999, 3)", "x coordinate is too large"),  # not NaN from inf - inf
])
def test_float_literals_beyond_range_are_too_large(output, reason):
    result = parse_action(output, "json")
    assert isinstance(result, ParseFailure) and reason in result.reason


@pytest.mark.parametrize("space", ["paligemma_loc", "florence_loc"])
@pytest.mark.parametrize("digits", [NINES, MANY_NINES], ids=["400 digits", "5000 digits"])
def test_location_tokens_with_huge_numbers_are_a_failure(space, digits):
    token, small = (f"<loc{digits}>", "<loc0001>") if space == "paligemma_loc" else (f"<loc_{digits}>", "<loc_1>")
    result = parse_action(f"click({small}{token})", "text", space)
    assert isinstance(result, ParseFailure), result
    assert f"its number has {len(digits):,} digits" in result.reason and len(result.reason) < 200
    # Long but plausible out-of-grid numbers are still read and clamped when decoding.
    assert parse_action("click(<loc_0000000000001500><loc_20>)", "text", "florence_loc") == Action(
        "click", x=1500, y=20)


def test_actions_reject_huge_numbers_with_a_value_error():
    for value in (10**400, -(10**5000), math.inf):
        with pytest.raises(ValueError, match="x coordinate is too large"):
            Action("click", x=value, y=1)
    assert Action("click", x=10**300, y=1).x == 10**300  # large but a float can hold it


def test_answers_longer_than_the_limit_are_a_failure_naming_length_and_limit():
    answer = "click(1, 2) " + " " * MAX_ANSWER_CHARS
    result = parse_action(answer, "text")
    assert result == ParseFailure(f"answer too long: {len(answer):,} characters; the decoder reads at most "
                                  f"{MAX_ANSWER_CHARS:,} (max_chars)", answer)
    assert parse_action(answer[:MAX_ANSWER_CHARS], "text") == Action("click", x=1, y=2)
    # Per decoder and per call.
    assert ActionDecoder("text", max_chars=len(answer)).decode(answer) == click(1, 2)
    short = ActionDecoder("json", max_chars=5).decode("click(1, 2)")
    assert isinstance(short, ParseFailure) and "11 characters" in short.reason and "at most 5" in short.reason
    assert parse_action(answer, "text", max_chars=len(answer)) == Action("click", x=1, y=2)
    for bad in (0, -1, 2.5, True, None):
        with pytest.raises(ValueError, match="max_chars must be a whole number >= 1"):
            ActionDecoder("text", max_chars=bad)


# Each repeated many times, these made the decoder try (and fail) a candidate at every few
# characters, or scan to the end of the text from each one.
HOSTILE_PIECES = ["click(", "{", '{"', "type(\"", "type('", "click(<|object_ref_start|>", "1 ", "<loc0001>",
                  "(", "[", "<|box_start|>", "a(", "wait ", "1e", NINES[:40], "-", '"', "\\", "\n"]


def _repeat(piece, length):
    return (piece * (length // len(piece) + 1))[:length]


def test_answers_of_any_length_are_rejected_at_once():
    for piece in HOSTILE_PIECES:
        output = _repeat(piece, 400_000)  # took seconds to minutes before the length limit
        for action_format in ACTION_FORMATS:
            started = time.perf_counter()
            result = parse_action(output, action_format, "paligemma_loc")
            assert time.perf_counter() - started < 1.0
            assert isinstance(result, ParseFailure) and "answer too long: 400,000 characters" in result.reason


@pytest.mark.parametrize("piece", ["click(", "{", "type(\"", "1 "])
def test_worst_answers_at_the_limit_decode_in_bounded_time(piece):
    output = _repeat(piece, MAX_ANSWER_CHARS)
    started = time.perf_counter()
    result = parse_action(output, "coordinates", "paligemma_loc")  # tries every shape
    # Generous for a loaded machine: the worst of these takes about 0.3 s.
    assert time.perf_counter() - started < 2.0
    assert isinstance(result, ParseFailure) and len(result.reason) <= 200


def _hostile_number():
    digits = st.integers(1, 6000).map(lambda n: "9" * n)
    return st.one_of(st.integers().map(str), digits, st.builds("{}e{}".format, st.integers(), st.integers()),
                     st.sampled_from(["Infinity", "-Infinity", "NaN", "1e400", "-0", "00000000000001"]))


def _hostile_answer():
    """Any format's shapes with numbers of any size and junk around them."""
    number = _hostile_number()
    loc = number.map(lambda n: f"<loc{n.lstrip('-')}>") | number.map(lambda n: f"<loc_{n.lstrip('-')}>")
    arguments = st.lists(st.one_of(number, loc), max_size=5).map(", ".join)
    verb = st.sampled_from(ACTION_TYPES + ("tap",))
    call = st.builds("{}({})".format, verb, arguments)
    bare = st.builds("{} {}".format, st.lists(st.one_of(number, loc), max_size=5).map(" ".join), verb)
    json_action = st.builds(lambda t, fields: "{" + ", ".join([f'"type": "{t}"'] + [f'"{k}": {v}' for k, v in fields])
                            + "}", verb, st.lists(st.tuples(st.sampled_from(("x", "y", "x2", "y2", "amount",
                                                                                "seconds", "direction")),
                                                            number), max_size=5))
    piece = st.one_of(call, bare, json_action, JUNK, st.text(max_size=20))
    return st.lists(piece, min_size=1, max_size=4).map(" ".join)


@pytest.mark.parametrize("action_format", ACTION_FORMATS)
@settings(max_examples=150, deadline=None)
@given(output=_hostile_answer(), space_name=st.sampled_from(SPACES))
def test_fuzz_hostile_answers_decode_to_an_action_or_a_failure(action_format, output, space_name):
    space = resolve(space_name)
    started = time.perf_counter()
    result = parse_action(output, action_format, space)
    assert time.perf_counter() - started < 2.0
    if isinstance(result, ParseFailure):
        assert result.reason and result.text == output and len(result.reason) <= 200
        return
    assert isinstance(result, Action)
    if space is not None:  # what an agent does next: map to pixels, all finite and on the screenshot
        pixels, _ = decode_to_pixels(result, space, (1288, 728))
        for name in ("x", "y", "x2", "y2"):
            value = getattr(pixels, name)
            assert value is None or 0 <= value <= 1288
