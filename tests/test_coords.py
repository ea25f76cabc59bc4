"""Coordinate spaces: hand-computed mappings, Qwen2.5-VL smart_resize, clamping, and the half-unit
round-trip guarantee (property-tested)."""

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uivlm_helpers.core.actions import Action, decode_to_pixels, encode_action
from uivlm_helpers.core.coords import SPACE_NAMES, get_space, smart_resize


# --- Hand-computed cases per space -----------------------------------------------------------------

@pytest.mark.parametrize("space_kw, image_size, pixel_point, model_point, back", [
    # pixels: the identity.
    ({"name": "pixels"}, (1000, 500), (100, 200), (100, 200), (100, 200)),
    ({"name": "pixels"}, (1000, 500), (100.5, 0), (100.5, 0), (100.5, 0)),
    # norm1: fraction of the side, 3 decimals; back by multiplying.
    ({"name": "norm1"}, (1000, 500), (500, 125), (0.5, 0.25), (500, 125)),
    ({"name": "norm1"}, (3, 3), (1, 2), (0.333, 0.667), (0.999, 2.001)),
    # norm1000 on 1920x1080: 960 * 1000 / 1920 = 500 exactly; back to the centre of unit 500.
    ({"name": "norm1000"}, (1920, 1080), (960, 540), (500, 500), (500.5 * 1.92, 500.5 * 1.08)),
    ({"name": "norm1000"}, (1920, 1080), (0, 0), (0, 0), (0.5 * 1.92, 0.5 * 1.08)),
    # The far edge belongs to the last unit.
    ({"name": "norm1000"}, (1920, 1080), (1920, 1080), (999, 999), (999.5 * 1.92, 999.5 * 1.08)),
    # floor: 1.91 px is still unit 0 (a unit is 1.92 px wide).
    ({"name": "norm1000"}, (1920, 1080), (1.91, 1.07), (0, 0), (0.96, 0.54)),
    # resized to half the size: one resized pixel covers two screenshot pixels.
    ({"name": "resized", "size": (1288, 728)}, (2576, 1456), (100, 51), (50, 25), (101, 51)),
    # PaliGemma: 1024 units per side, whatever the image size.
    ({"name": "paligemma_loc"}, (1024, 512), (512, 256), (512, 512), (512.5, 256.25)),
    # Florence-2: 1000 units per side.
    ({"name": "florence_loc"}, (2000, 1000), (1000, 500), (500, 500), (1001, 500.5)),
])
def test_hand_computed_mappings(space_kw, image_size, pixel_point, model_point, back):
    kw = dict(space_kw)
    space = get_space(kw.pop("name"), **kw)
    assert space.to_model(*pixel_point, image_size) == model_point
    x, y, clamped = space.to_pixels(*model_point, image_size)
    assert (x, y) == pytest.approx(back) and clamped is False


def test_whole_number_spaces_give_ints():
    for name in ("norm1000", "paligemma_loc", "florence_loc"):
        mx, my = get_space(name).to_model(123.7, 45.2, (800, 600))
        assert type(mx) is int and type(my) is int


@pytest.mark.parametrize("name, model_point, expected", [
    ("norm1000", (1200, 500), (999.5 * 1.92, 500.5 * 1.08)),
    ("norm1000", (-3, 500), (0.5 * 1.92, 500.5 * 1.08)),
    # 1000 is outside Qwen2-VL's [0, 1000): the right edge, flagged.
    ("norm1000", (1000, 0), (999.5 * 1.92, 0.5 * 1.08)),
    ("norm1", (1.2, -0.1), (1920, 0)),
    ("pixels", (-5, 2000), (0, 1080)),
    ("paligemma_loc", (1024, 0), (1023.5 * 1920 / 1024, 0.5 * 1080 / 1024)),
    ("florence_loc", (0, 1000), (0.5 * 1.92, 999.5 * 1.08)),
])
def test_out_of_range_predictions_are_clamped_and_flagged(name, model_point, expected):
    x, y, clamped = get_space(name).to_pixels(*model_point, (1920, 1080))
    assert clamped is True
    assert (x, y) == pytest.approx(expected)


@pytest.mark.parametrize("name, model_point", [
    ("norm1000", (999, 0)), ("norm1", (1, 0)), ("pixels", (1920, 1080)), ("paligemma_loc", (1023, 1023)),
    ("florence_loc", (998.5, 0)),
])
def test_edges_of_the_range_are_not_flagged(name, model_point):
    assert get_space(name).to_pixels(*model_point, (1920, 1080))[2] is False


@pytest.mark.parametrize("name", ["pixels", "norm1", "norm1000", "paligemma_loc", "florence_loc"])
def test_pixel_points_outside_the_screenshot_are_errors(name):
    with pytest.raises(ValueError, match="outside the 100x50 screenshot"):
        get_space(name).to_model(101, 10, (100, 50))
    with pytest.raises(ValueError, match="outside"):
        get_space(name).to_model(10, -1, (100, 50))


def test_location_tokens():
    paligemma, florence = get_space("paligemma_loc"), get_space("florence_loc")
    assert paligemma.format_point(256, 512) == "<loc0512><loc0256>"  # y first
    assert florence.format_point(256, 512) == "<loc_256><loc_512>"  # x first
    assert paligemma.read_tokens(["<loc0512>", "<loc0256>", "<loc0001>", "<loc0002>"]) == [256, 512, 2, 1]
    assert florence.read_tokens(["<loc_256>", "<loc_512>"]) == [256, 512]
    with pytest.raises(ValueError, match="0..1023"):
        paligemma.format_point(1024, 0)
    with pytest.raises(ValueError, match="whole numbers"):
        florence.format_point(1.5, 0)
    with pytest.raises(ValueError, match="not a paligemma_loc location token"):
        paligemma.read_tokens(["<loc_1>", "<loc_2>"])
    with pytest.raises(ValueError, match="a point needs two"):
        florence.read_tokens(["<loc_1>"])


def test_get_space_errors_and_immutability():
    assert set(SPACE_NAMES) == {"pixels", "norm1", "norm1000", "resized", "paligemma_loc", "florence_loc"}
    with pytest.raises(ValueError, match="supported: pixels, norm1, norm1000, resized"):
        get_space("norm100")
    with pytest.raises(ValueError, match="takes no options"):
        get_space("norm1000", size=(10, 10))
    with pytest.raises(ValueError, match="needs size"):
        get_space("resized")
    with pytest.raises(ValueError, match="unknown smart_resize options"):
        get_space("resized", image_size=(100, 100), max_pixel=5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_space("norm1000").grid = (10, 10)


# --- Qwen2.5-VL smart_resize -----------------------------------------------------------------------

@pytest.mark.parametrize("height, width, kw, expected", [
    # Both sides already multiples of 28 (26 and 46 patches), area within budget: unchanged.
    (728, 1288, {}, (728, 1288)),
    # 1080 / 28 = 38.57 -> 39 * 28 = 1092; 1920 / 28 = 68.57 -> 69 * 28 = 1932; 2.1 MP < 12.8 MP.
    (1080, 1920, {}, (1092, 1932)),
    # Too small: 28 x 28 = 784 < 3136, so beta = sqrt(3136 / 400) = 2.8 and 20 * 2.8 = 56.
    (20, 20, {}, (56, 56)),
    # Too large: round -> 4004 x 5992 > 12845056; beta = sqrt(24e6 / 12845056) = 1.36690;
    # 4000 / beta / 28 = 104.5 -> 2912 and 6000 / beta / 28 = 156.8 -> 4368.
    (4000, 6000, {}, (2912, 4368)),
    # The transformers processor's budget (1280 patches): beta = sqrt(2073600 / 1003520) = 1.43747;
    # 1080 / beta / 28 = 26.8 -> 728 and 1920 / beta / 28 = 47.7 -> 1316.
    (1080, 1920, {"max_pixels": 1280 * 28 * 28}, (728, 1316)),
    # A side rounding to 0 patches: 0 x 1008 is below the budget, so beta = sqrt(3136 / 10000) = 0.56;
    # 10 * 0.56 / 28 -> 1 patch = 28 and 1000 * 0.56 / 28 = 20 -> 560 (what the processor feeds the model).
    (10, 1000, {}, (28, 560)),
    # Shrinking never floors a side to 0: 20 x 3900 over a 10-patch budget, beta = sqrt(78000 / 7840)
    # = 3.154; 20 / beta = 6.3 -> 0 patches, lifted to one (28); 3900 / beta / 28 = 44.2 -> 1232.
    (20, 3900, {"max_pixels": 10 * 28 * 28}, (28, 1232)),
])
def test_smart_resize_known_values(height, width, kw, expected):
    assert smart_resize(height, width, **kw) == expected


def test_smart_resize_is_the_image_processors_arithmetic():
    """The one smart_resize (the resized space and model_configs' token counts) matches transformers'
    Qwen-VL processor on ordinary screenshots and on the edge cases (tiny sides, extreme shrinking)."""
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize as processor_resize

    sizes = [(h, w) for h in (1, 10, 13, 14, 15, 28, 100, 224, 728, 1080, 2160, 4000)
             for w in (1, 10, 14, 27, 150, 224, 1000, 1288, 1920, 3840, 6000) if max(h, w) / min(h, w) <= 200]
    budgets = [{}, {"max_pixels": 1280 * 28 * 28, "min_pixels": 56 * 56}, {"max_pixels": 200 * 28 * 28},
               {"factor": 32, "min_pixels": 64 * 64, "max_pixels": 16384 * 32 * 32}]
    for kw in budgets:
        full = {"factor": 28, "min_pixels": 4 * 28 * 28, "max_pixels": 16384 * 28 * 28, **kw}
        for height, width in sizes:
            assert smart_resize(height, width, **kw) == processor_resize(height, width, **full), (height, width, kw)


def test_smart_resize_rejects_extreme_aspect_ratios_and_feeds_the_resized_space():
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(1, 201)
    # image_size is (width, height); smart_resize is height-first; the space swaps back.
    assert get_space("resized", image_size=(1920, 1080)).grid == (1932, 1092)
    assert get_space("resized", image_size=(1920, 1080), max_pixels=1280 * 28 * 28).grid == (1316, 728)


# --- Whole actions ---------------------------------------------------------------------------------

def test_encode_and_decode_whole_actions():
    drag = Action("drag", x=960, y=540, x2=0, y2=1080)
    encoded = encode_action(drag, "norm1000", (1920, 1080))
    assert encoded == Action("drag", x=500, y=500, x2=0, y2=999)
    decoded, clamped = decode_to_pixels(encoded, get_space("norm1000"), (1920, 1080))
    assert clamped is False
    assert (decoded.x, decoded.y, decoded.x2, decoded.y2) == pytest.approx((960.96, 540.54, 0.96, 1079.46))
    # Only the drag's end is out of range: the whole action is flagged.
    _, clamped = decode_to_pixels(Action("drag", x=1, y=1, x2=1001, y2=5), "norm1000", (1920, 1080))
    assert clamped is True
    # Actions without coordinates pass through unchanged.
    press = Action("press", key="Enter")
    assert decode_to_pixels(press, "norm1000", (10, 10)) == (press, False)
    assert encode_action(Action("wait", seconds=1), "norm1", (10, 10)) == Action("wait", seconds=1)
    with pytest.raises(ValueError, match="space is required"):
        encode_action(drag, None, (1920, 1080))


# --- The round-trip guarantee ----------------------------------------------------------------------

@st.composite
def space_and_image(draw):
    """A space, an image size, and the model unit's size in pixels along each axis."""
    width, height = draw(st.integers(1, 4000)), draw(st.integers(1, 4000))
    name = draw(st.sampled_from(SPACE_NAMES))
    if name == "resized":
        space = get_space(name, size=(draw(st.integers(1, 4000)), draw(st.integers(1, 4000))))
        units = space.grid
    else:
        space = get_space(name)
        units = {"pixels": (width, height), "norm1": (1000, 1000)}.get(name) or space.grid
    return space, (width, height), (width / units[0], height / units[1])


@st.composite
def box_and_point(draw, size, unit):
    """A box at least one unit wide inside ``[0, size]``, and a point at least half a unit inside it."""
    low = draw(st.floats(0, size - unit))
    # min/max: keep the bounds ordered when float rounding puts them one ulp apart the wrong way.
    high = draw(st.floats(min(low + unit, size), size))
    inner_low = min(low + unit / 2, high)
    return low, high, draw(st.floats(inner_low, max(inner_low, high - unit / 2)))


@settings(max_examples=400, deadline=None)
@given(data=st.data(), setup=space_and_image())
def test_encode_then_decode_stays_inside_boxes_at_least_one_unit_wide(data, setup):
    space, (width, height), (unit_x, unit_y) = setup
    x1, x2, x = data.draw(box_and_point(width, unit_x))
    y1, y2, y = data.draw(box_and_point(height, unit_y))
    back_x, back_y, clamped = space.to_pixels(*space.to_model(x, y, (width, height)), (width, height))
    assert not clamped
    # Slack for float rounding at exact edges only (1e-9 of the image side).
    assert x1 - 1e-9 * width <= back_x <= x2 + 1e-9 * width
    assert y1 - 1e-9 * height <= back_y <= y2 + 1e-9 * height
    # The underlying bound: a round trip moves a point by at most half a unit.
    assert abs(back_x - x) <= unit_x / 2 * (1 + 1e-9) and abs(back_y - y) <= unit_y / 2 * (1 + 1e-9)


@settings(max_examples=200, deadline=None)
@given(setup=space_and_image(), mx=st.floats(-5000, 5000), my=st.floats(-5000, 5000))
def test_decoding_always_lands_on_the_screenshot(setup, mx, my):
    space, (width, height), _ = setup
    x, y, _ = space.to_pixels(mx, my, (width, height))
    assert 0 <= x <= width and 0 <= y <= height and math.isfinite(x) and math.isfinite(y)
