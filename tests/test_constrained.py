"""Constrained decoding: the byte-level action grammar (every canonical action is accepted, prefix by
prefix; malformed text is rejected; everything it completes parses), the tokenizer index, the logits
processor's budget guard, and end to end on the untrained tiny Qwen2-VL: constrained answers always
parse, in every format, greedy or sampled; unconstrained ones do not."""

import random

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from uivlm_helpers.core.actions import (ACTION_FIELDS, ACTION_FORMATS, ACTION_TYPES, KEY_NAMES, MODIFIER_KEYS,
                                   SCROLL_DIRECTIONS, Action, ParseFailure, get_space, parse_action,
                                   render_action)
from uivlm_helpers.models.constrained import (DEFAULT_MAX_TEXT_LEN, ActionLogitsProcessor, action_grammar,
                                       is_complete, is_valid_prefix, token_vocabulary)
from uivlm_helpers.core.coords import GridSpace, LocTokenSpace, Norm1Space

PIXEL_SIZE = (1920, 1080)
RESIZED = get_space("resized", size=(1288, 728))
# (space, image size): every kind of coordinate range the grammar knows.
SPACES = {
    "plain": (None, None),
    "pixels": ("pixels", PIXEL_SIZE),
    "norm1": ("norm1", None),
    "norm1000": ("norm1000", None),
    "resized": (RESIZED, None),
    "paligemma_loc": ("paligemma_loc", None),
    "florence_loc": ("florence_loc", None),
}


def grammar_for(action_format, space_name, **options):
    space, size = SPACES[space_name]
    return action_grammar(action_format, space, size, **options)


# --- Actions inside the grammar's domain -----------------------------------------------------------

def coordinates(space_name):
    """(x, y) strategies for values a model should say in the space."""
    space, size = SPACES[space_name]
    space = get_space(space) if isinstance(space, str) else space
    if isinstance(space, GridSpace):
        return st.integers(0, space.grid[0] - 1), st.integers(0, space.grid[1] - 1)
    if isinstance(space, Norm1Space):
        unit = st.one_of(st.integers(0, 1), st.floats(0, 1).map(lambda v: round(v, 3)))
        return unit, unit
    width, height = size or (99_999, 99_999)

    def axis(limit):
        return st.one_of(st.integers(0, limit), st.floats(0, limit).map(lambda v: round(v, 2)))
    return axis(width), axis(height)


KEYS = st.one_of(
    st.sampled_from(KEY_NAMES + MODIFIER_KEYS + ("a", "z", "0", "F12")),
    st.builds(lambda mods, key: "+".join([*mods, key]),
              st.lists(st.sampled_from(MODIFIER_KEYS), min_size=1, max_size=3),
              st.sampled_from(KEY_NAMES + ("a", "5", "F1"))),
)
TEXT = st.one_of(st.text(max_size=40),
                 st.sampled_from(["", '"', "\\", "\n\t\x00\x7f", "é 😀 中文", "click(1, 2)", "<|im_end|>",
                                  "\u2028", '{"type": "done"}', "x" * 150]))


def in_domain_actions(action_type, space_name):
    x, y = coordinates(space_name)
    fields = {"x": x, "y": y, "x2": x, "y2": y, "text": TEXT, "key": KEYS,
              "direction": st.sampled_from(SCROLL_DIRECTIONS), "amount": st.integers(0, 10_000),
              "seconds": st.one_of(st.integers(0, 999), st.floats(0, 999).map(lambda v: round(v, 3)))}
    return st.builds(Action, st.just(action_type), **{f: fields[f] for f in ACTION_FIELDS[action_type]})


@pytest.mark.parametrize("space_name", SPACES)
@pytest.mark.parametrize("action_format", ACTION_FORMATS)
@pytest.mark.parametrize("action_type", ACTION_TYPES)
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_every_prefix_of_a_rendered_action_is_valid(action_type, action_format, space_name, data):
    action = data.draw(in_domain_actions(action_type, space_name))
    space = SPACES[space_name][0]
    rendered = render_action(action, action_format, space if space_name != "resized" else RESIZED)
    grammar = grammar_for(action_format, space_name)
    for end in range(len(rendered)):
        assert grammar.is_valid_prefix(rendered[:end]), (rendered, rendered[:end])
        assert (grammar.min_remaining(rendered[:end]) == 0) == grammar.is_complete(rendered[:end])
    assert grammar.is_complete(rendered), rendered
    assert grammar.min_remaining(rendered) == 0


@pytest.mark.parametrize("action_format, space_name, text", [
    ("text", "norm1000", "click(1000, 5)"),      # out of the space
    ("text", "norm1000", "click(01, 5)"),        # leading zero
    ("text", "norm1000", "click(-1, 5)"),
    ("text", "norm1000", "click(1.5, 5)"),       # whole numbers only
    ("text", "norm1000", "click(1,2)"),          # canonical spacing only
    ("text", "norm1000", "Click(1, 2)"),
    ("text", "norm1000", "tap(1, 2)"),
    ("text", "norm1000", " click(1, 2)"),
    ("text", "norm1000", "click(1, 2))"),        # nothing after a complete action
    ("text", "norm1000", "click(1, 2, 3"),
    ("text", "norm1000", "type(hello)"),
    ("text", "norm1000", 'type("a\nb")'),        # raw control character
    ("text", "norm1000", 'type("\\x")'),         # not a JSON escape
    ("text", "norm1000", 'type("\\ud83d")'),     # lone surrogate
    ("text", "norm1000", "press(ctrl a)"),
    ("text", "norm1000", "press(Return)"),       # not in the key vocabulary
    ("text", "norm1000", "scroll(sideways, 1)"),
    ("text", "norm1000", "scroll(down, 10001)"),
    ("text", "norm1000", "wait(-1)"),
    ("text", "norm1000", "wait(1.2345)"),
    ("text", "norm1000", "done(now)"),
    ("text", "norm1", "click(1.5, 0)"),
    ("text", "norm1", "click(0.1234, 0)"),
    ("text", "norm1", "click(1.01, 0)"),
    ("text", "pixels", "click(1921, 5)"),
    ("text", "pixels", "click(1920.5, 5)"),
    ("text", "pixels", "click(5, 1081)"),
    ("text", "resized", "click(1288, 5)"),
    ("text", "plain", "click(100000, 5)"),
    ("text", "paligemma_loc", "click(<loc1024>"),
    ("text", "paligemma_loc", "click(<loc512>"),
    ("text", "paligemma_loc", "click(100, 200)"),
    ("text", "florence_loc", "click(<loc_1000>"),
    ("json", "norm1000", "{'type': 'click'"),
    ("json", "norm1000", '{"type":"click"'),
    ("json", "norm1000", '{"type": "click", "y": 1'),  # key order is canonical
    ("json", "norm1000", '{"type": "click", "x": "1"'),
    ("json", "norm1000", '{"type": "click", "x": 1, "y": 2, "reason"'),
    ("json", "norm1000", '{"type": "press", "key": Enter'),
    ("coordinates", "norm1000", "100 200 tap"),
    ("coordinates", "norm1000", "100 200 300 click"),
    ("coordinates", "norm1000", "click(1, 2)"),  # the text shape is not this format's grammar
    ("coordinates", "norm1000", "done now"),
])
def test_malformed_text_is_rejected(action_format, space_name, text):
    assert not grammar_for(action_format, space_name).is_valid_prefix(text)


def test_prefix_checker_api_and_completion_lengths():
    assert is_valid_prefix("click(12", "text", "norm1000")
    assert not is_complete("click(12", "text", "norm1000")
    assert is_complete("click(12, 34)", "text", "norm1000")
    assert is_complete('{"type": "done"}', "json") and is_complete("done", "coordinates")
    grammar = action_grammar("text", "norm1000")
    assert grammar.min_length == len("done()")
    assert action_grammar("json").min_length == len('{"type": "done"}')
    assert grammar.min_remaining("") == 6
    assert grammar.min_remaining("click(") == len("0, 0)")
    assert grammar.min_remaining('type("\\u12') == len('34")')
    assert grammar.min_remaining("click(1000") is None
    # "wait 1" is complete and can go on.
    coordinates = action_grammar("coordinates", "norm1000")
    assert coordinates.is_complete("wait 1") and coordinates.is_valid_prefix("wait 12")
    assert grammar.action_types(grammar.state_of("d")) == ["done", "double_click", "drag"]
    with pytest.raises(ValueError, match="supported: text, json, coordinates"):
        action_grammar("yaml")
    with pytest.raises(ValueError, match="keys"):
        action_grammar("text", keys="some")


def test_typed_text_and_keys_have_limits():
    grammar = action_grammar("text", "norm1000", max_text_len=3)
    assert grammar.is_complete('type("abc")') and not grammar.is_valid_prefix('type("abcd')
    assert not grammar.is_valid_prefix('type("ab\\u')  # the escape would not fit
    assert grammar.is_complete('type("é")') and not grammar.is_valid_prefix('type("éé')  # bytes
    assert action_grammar("text").is_valid_prefix('type("' + "x" * DEFAULT_MAX_TEXT_LEN)
    assert not action_grammar("text").is_valid_prefix('type("' + "x" * (DEFAULT_MAX_TEXT_LEN + 1))
    assert action_grammar("text", max_text_len=None).is_valid_prefix('type("' + "x" * 5000)
    free = action_grammar("text", keys="any")
    assert free.is_complete("press(Return)") and free.is_complete("press(ctrl+Return)")
    assert not free.is_valid_prefix("press(+") and not free.is_valid_prefix("press(ctrl++")


def test_invalid_utf8_is_rejected_byte_by_byte():
    grammar = action_grammar("text")
    start = grammar.state_of('type("')
    assert grammar.advance(start, "é".encode()[:1]) is not None       # half a character: wait
    assert grammar.advance(start, b"\xc3\x28") is None                  # bad continuation
    assert grammar.advance(start, b"\xed\xa0\x80") is None              # UTF-8 surrogate
    assert grammar.advance(start, b"\xc0\xaf") is None                  # overlong
    assert grammar.min_rest(grammar.advance(start, "😀".encode()[:2])) == 2 + 2  # 2 bytes, ", )


@pytest.mark.parametrize("space_name", SPACES)
@pytest.mark.parametrize("action_format", ACTION_FORMATS)
def test_everything_the_grammar_completes_parses_inside_the_space(action_format, space_name):
    """Random walks through the automaton: each complete text parses to an action in range."""
    grammar = grammar_for(action_format, space_name)
    space = SPACES[space_name][0]
    space = get_space(space) if isinstance(space, str) else space
    rng = random.Random(f"{action_format}-{space_name}")
    for _ in range(60):
        data, state = b"", grammar.start
        while True:
            choices = grammar.allowed_bytes(state)
            if grammar.complete(state) and (not choices or rng.random() < 0.3 or len(data) > 60):
                break
            assert choices, data  # a state that is not complete always goes on
            if len(data) > 60:  # head for the end
                best = min(grammar.min_rest(grammar.step(state, b)) for b in choices)
                choices = [b for b in choices if grammar.min_rest(grammar.step(state, b)) == best]
            byte = rng.choice(choices)
            data, state = data + bytes((byte,)), grammar.step(state, byte)
        text = data.decode("utf-8")  # valid UTF-8 by construction
        action = parse_action(text, action_format, space)
        assert isinstance(action, Action), (text, action)
        check_in_space(action, space_name)


def check_in_space(action, space_name, image_size=None):
    space, size = SPACES[space_name]
    space = get_space(space) if isinstance(space, str) else space
    size = size or image_size
    for fx, fy in (("x", "y"), ("x2", "y2")):
        x, y = getattr(action, fx), getattr(action, fy)
        if x is None:
            continue
        if isinstance(space, (GridSpace, LocTokenSpace)):
            assert 0 <= x < space.grid[0] and 0 <= y < space.grid[1], action
            assert isinstance(x, int) and isinstance(y, int)
        elif isinstance(space, Norm1Space):
            assert 0 <= x <= 1 and 0 <= y <= 1, action
        else:
            limit = size or (99_999, 99_999)
            assert 0 <= x <= limit[0] and 0 <= y <= limit[1], action


# --- The tokenizer index and the processor, without a model ----------------------------------------

@pytest.fixture(scope="module")
def tokenizer(tiny_path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(tiny_path).tokenizer


def test_token_bytes_are_exact(tokenizer):
    vocabulary = token_vocabulary(tokenizer)
    assert vocabulary is token_vocabulary(tokenizer)  # cached per tokenizer
    assert vocabulary.size == len(tokenizer)
    for text in ['type("héllo 😀 中文")', '{"type": "click", "x": 100, "y": 200}', "scroll down 100\n"]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert b"".join(vocabulary.token_bytes[i] for i in ids) == text.encode()
    for special in tokenizer.all_special_ids:
        assert vocabulary.token_bytes[special] is None
    assert set(range(256)) <= vocabulary.single_bytes  # byte-level BPE: every byte is a token


def random_decode(tokenizer, action_format, max_new_tokens, seed, space="norm1000", rows=4,
                  image_sizes=None, temperature=None):
    """Decode through the processor with random logits (a stand-in for an untrained model)."""
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    processor = ActionLogitsProcessor(tokenizer, action_format, space, image_sizes=image_sizes,
                                      max_new_tokens=max_new_tokens, end_token_ids=[end])
    generator = torch.Generator().manual_seed(seed)
    ids = torch.full((rows, 5), tokenizer.pad_token_id)  # a 5-token "prompt"
    for _ in range(max_new_tokens):
        scores = processor(ids, torch.randn(rows, len(tokenizer), generator=generator) * 3)
        if temperature:
            probs = torch.softmax(scores / temperature, dim=-1)
            new = torch.multinomial(probs, 1, generator=generator)
        else:
            new = scores.argmax(dim=-1, keepdim=True)
        ids = torch.cat([ids, new], dim=1)
    texts = []
    for row in ids[:, 5:].tolist():
        row = row[:row.index(end)] if end in row else row
        texts.append(tokenizer.decode(row, skip_special_tokens=True))
    return texts


@pytest.mark.parametrize("action_format", ACTION_FORMATS)
def test_random_logits_always_give_parseable_actions(tokenizer, action_format):
    for seed in range(6):
        for text in random_decode(tokenizer, action_format, 40, seed, temperature=1.0 if seed % 2 else None):
            action = parse_action(text, action_format, "norm1000")
            assert isinstance(action, Action), text
            check_in_space(action, "norm1000")


@pytest.mark.parametrize("action_format", ACTION_FORMATS)
def test_the_budget_forces_a_complete_answer(tokenizer, action_format):
    """Even with just enough tokens for the shortest action, every answer is complete."""
    shortest = action_grammar(action_format, "norm1000").min_length
    for budget in (shortest, shortest + 3, shortest + 9):
        for seed in range(4):
            for text in random_decode(tokenizer, action_format, budget, seed, temperature=2.0):
                assert is_complete(text, action_format, "norm1000"), (budget, text)
                assert parse_action(text, action_format, "norm1000")


def test_rows_get_their_own_screenshot_bounds(tokenizer):
    sizes = [(50, 40), (8, 6)]
    for seed in range(4):
        texts = random_decode(tokenizer, "text", 30, seed, space="pixels", rows=2, image_sizes=sizes)
        for text, size in zip(texts, sizes):
            action = parse_action(text, "text", "pixels")
            assert isinstance(action, Action), text
            if action.x is not None:
                assert 0 <= action.x <= size[0] and 0 <= action.y <= size[1], (text, size)


def test_processor_allows_end_only_when_complete(tokenizer):
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    processor = ActionLogitsProcessor(tokenizer, "text", "norm1000", end_token_ids=[end])
    encode = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert end not in processor.allowed_tokens(0, encode("click(1, 2")).tolist()
    after = processor.allowed_tokens(0, encode("click(1, 2)")).tolist()
    assert after == [end]
    # Still inside the number: digits, the separator, nothing else.
    allowed = {tokenizer.decode([i]) for i in processor.allowed_tokens(0, encode("click(12"))}
    assert allowed >= {"0", "9", ","} and not allowed & {")", " ", "a"}
    assert processor.allowed_tokens(0, encode("click(1, 2)") + [end, 5]).tolist() == [end]  # finished


# --- End to end on the untrained tiny model --------------------------------------------------------

@pytest.fixture(scope="module")
def sixteen_screens(tmp_path_factory):
    from uivlm_helpers.data import schema, synth
    from uivlm_helpers.data.run_data import as_plain

    folder = tmp_path_factory.mktemp("constrained-screens")
    return [as_plain(r) for r in schema.read_records(synth.generate_records(16, seed=11, out_dir=folder))]


@pytest.fixture(scope="module")
def agents():
    from uivlm_helpers.models.wrapper import VLMWrapper

    return {fmt: VLMWrapper(action_format=fmt, max_new_tokens=32) for fmt in ACTION_FORMATS}


def parse_rate(texts, action_format):
    return sum(isinstance(parse_action(t, action_format, "norm1000"), Action) for t in texts) / len(texts)


@pytest.mark.parametrize("action_format", ACTION_FORMATS)
def test_untrained_model_constrained_always_parses(agents, sixteen_screens, action_format):
    agent = agents[action_format]
    images = [s["image"] for s in sixteen_screens]
    instructions = [s["instruction"] for s in sixteen_screens]
    free = agent.generate_text(images, instructions)
    assert parse_rate(free, action_format) < 1.0  # the random model writes junk on its own
    texts = agent.generate_text(images, instructions, logits_processor=agent.action_logits_processor(images))
    assert parse_rate(texts, action_format) == 1.0, texts
    for text in texts:
        check_in_space(parse_action(text, action_format, "norm1000"), "norm1000")
    predictions = agent.predict(images, instructions, constrained=True)
    assert [p.raw_text for p in predictions] == texts
    for prediction, screen in zip(predictions, sixteen_screens):
        assert prediction.action is not None and prediction.failure is None and not prediction.clamped
        if prediction.point:
            width, height = screen["image_size"]
            assert 0 <= prediction.point[0] <= width and 0 <= prediction.point[1] <= height


@pytest.mark.parametrize("action_format", ACTION_FORMATS)
def test_sampling_with_temperature_stays_valid(agents, sixteen_screens, action_format):
    agent = agents[action_format]
    images = [s["image"] for s in sixteen_screens[:8]]
    instructions = [s["instruction"] for s in sixteen_screens[:8]]
    saved = dict(agent.generation)
    agent.generation.update(do_sample=True, temperature=1.5)
    try:
        torch.manual_seed(0)
        texts = agent.generate_text(images, instructions, logits_processor=agent.action_logits_processor(images))
    finally:
        agent.generation.clear()
        agent.generation.update(saved)
    assert parse_rate(texts, action_format) == 1.0, texts
    assert len(set(texts)) > 1  # it did sample


def test_wrapper_switch_config_and_tight_budget(sixteen_screens):
    from uivlm_helpers.core.config import load_config
    from uivlm_helpers.models.wrapper import VLMWrapper

    config = load_config()
    config.model.constrained_decoding, config.model.action_format = True, "json"
    config.model.max_new_tokens = 17  # '{"type": "done"}' is 16 bytes: just enough
    agent = VLMWrapper.from_config(config, with_lora=False)
    assert agent.constrained
    screens = sixteen_screens[:4]
    results = agent.predict_action([s["image"] for s in screens], [s["instruction"] for s in screens])
    assert all(isinstance(r, dict) for r in results), results
    unconstrained = agent.predict_action([s["image"] for s in screens], [s["instruction"] for s in screens],
                                         constrained=False)
    assert any(isinstance(r, ParseFailure) for r in unconstrained)


def test_a_token_forced_by_an_earlier_processor_wins(tokenizer):
    """A row that another processor forced (BOS, EOS at max_length) is never left all -inf."""
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    processor = ActionLogitsProcessor(tokenizer, "text", "norm1000", end_token_ids=[end])
    forced = torch.full((1, len(tokenizer)), float("-inf"))
    forced[0, end] = 0.0  # e.g. ForcedEOSTokenLogitsProcessor on an unfinished answer
    prompt = torch.full((1, 3), tokenizer.pad_token_id)
    assert processor(prompt, forced)[0, end] == 0.0
    free = processor(prompt, torch.zeros(1, len(tokenizer)))
    assert torch.isinf(free[0, end]) and not torch.isinf(free[0]).all()
