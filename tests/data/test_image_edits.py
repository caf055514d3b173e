"""Exact clip-art edits: geometric edits equal pixel operations, edits of different attributes commute on real
pixels, the filter drops pairs that do not commute, and bad images or instructions get errors naming them."""

import itertools

import numpy as np
import pytest
from PIL import Image

from genir.data.image_edits import (
    ALL_EDITS,
    Drawing,
    Edit,
    SceneState,
    apply_chain,
    claimed_to_commute,
    commutes,
    commuting_pairs,
    instruction_vocabulary,
    parse_instruction,
    render,
)
from genir.errors import DatasetError


def asymmetric_drawing(size=32, seed=0) -> Drawing:
    """A dark L-shape plus coloured noise blobs on white: no mirror or rotation symmetry."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size, 3), 255, np.uint8)
    img[4:26, 5:9] = (10, 10, 10)
    img[22:26, 5:20] = (10, 10, 10)
    img[8:14, 14:27] = rng.integers(0, 200, size=(6, 13, 3))
    return Drawing.from_image(img)


STATES = [SceneState(), SceneState(fg="red", bg="pink", flip=True, turns=3, small=True, border="blue",
                                   badge="top left"),
          SceneState(bg="grey", turns=1, badge="bottom right"), SceneState(fg="green", small=True, border="black")]


def test_geometric_edits_equal_pixel_operations_on_the_drawing():
    d = asymmetric_drawing()
    for s in (SceneState(), SceneState(fg="blue", bg="pink", flip=True, turns=1), SceneState(small=True, turns=2)):
        before = render(d, s)
        assert np.array_equal(render(d, Edit("mirror").apply(s)), before[:, ::-1])
        assert np.array_equal(render(d, Edit("rotate_cw").apply(s)), np.rot90(before, -1))
        assert np.array_equal(render(d, Edit("rotate_ccw").apply(s)), np.rot90(before, 1))


def test_each_edit_changes_the_picture_where_it_applies():
    d = asymmetric_drawing()
    for s in STATES:
        for e in ALL_EDITS:
            if e.applies(s):
                assert not np.array_equal(render(d, s), render(d, e.apply(s))), (s, e)


def test_edits_of_different_attributes_commute_on_pixels():
    drawings = [asymmetric_drawing(seed=k) for k in range(2)]
    checked = 0
    for d, s in itertools.product(drawings, STATES):
        for a, b in itertools.combinations(ALL_EDITS, 2):
            if claimed_to_commute(a, b) and a.applies(s) and b.applies(s):
                ab, ba = apply_chain(s, (a, b)), apply_chain(s, (b, a))
                assert np.array_equal(render(d, ab), render(d, ba)), (s, a, b)
                checked += 1
    assert checked > 500


def test_filter_drops_pairs_that_do_not_commute():
    d, s = asymmetric_drawing(), SceneState(border="black")
    kept = set(commuting_pairs(d, s))
    dropped = {(a, b) for a, b in itertools.combinations(ALL_EDITS, 2)} - kept
    red, blue = Edit("recolour_fg", "red"), Edit("recolour_fg", "blue")
    assert not commutes(d, s, red, blue) and (red, blue) in dropped
    assert not commutes(d, s, Edit("mirror"), Edit("rotate_cw"))  # the pose is not abelian
    assert (Edit("mirror"), Edit("rotate_cw")) in dropped
    # remove_border then add_border is fine, but add_border does not apply first on a border: not both orders
    assert not commutes(d, s, Edit("add_border", "red"), Edit("remove_border"))
    assert not commutes(d, s, Edit("shrink"), Edit("enlarge"))
    # quarter turns commute with each other although they share the pose
    assert commutes(d, s, Edit("rotate_cw"), Edit("rotate_ccw"))
    for a, b in kept:
        assert claimed_to_commute(a, b) or {a.op, b.op} == {"rotate_cw", "rotate_ccw"}, (a, b)
        assert np.array_equal(render(d, apply_chain(s, (a, b))), render(d, apply_chain(s, (b, a))))


def test_mirror_and_quarter_turn_commute_only_on_a_symmetric_drawing():
    img = np.full((32, 32, 3), 255, np.uint8)
    img[8:24, 8:24] = 0  # a centred square: symmetric under the whole dihedral group
    d = Drawing.from_image(img)
    assert commutes(d, SceneState(), Edit("mirror"), Edit("rotate_cw"))
    assert not commutes(asymmetric_drawing(), SceneState(), Edit("mirror"), Edit("rotate_cw"))


def test_chain_target_is_the_state_after_both_edits():
    d, s = asymmetric_drawing(), SceneState()
    a, b = Edit("add_badge", "top right"), Edit("recolour_bg", "light blue")
    target = render(d, apply_chain(s, (a, b)))
    assert np.array_equal(target, render(d, SceneState(bg="light blue", badge="top right")))
    assert apply_chain(s, (Edit("remove_badge"),)) is None


def test_every_template_sentence_parses_back_to_its_edit():
    for e in ALL_EDITS:
        for text in e.texts():
            assert parse_instruction(text) == e
            assert parse_instruction(text.upper() + ".") == e
    assert parse_instruction("") is None and parse_instruction("No change.") is None
    assert len(set(instruction_vocabulary())) == len(instruction_vocabulary())


@pytest.mark.parametrize("text", ["make it sparkle", "make the drawing magenta", "add a badge in the middle corner"])
def test_an_instruction_the_templates_cannot_parse_is_named(text):
    with pytest.raises(DatasetError, match="matches none of the edit templates") as err:
        parse_instruction(text)
    assert repr(text) in str(err.value)


def test_wrong_image_size_or_mode_is_named():
    with pytest.raises(DatasetError, match=r"photo\.png: expected a square image, got 32x48"):
        Drawing.from_image(np.zeros((32, 48, 3), np.uint8), where="photo.png")
    with pytest.raises(DatasetError, match=r"expected an \(H, W, 3\) RGB image, got shape \(32, 32, 4\)"):
        Drawing.from_image(np.zeros((32, 32, 4), np.uint8))
    with pytest.raises(DatasetError, match="expected uint8 pixels, got float32"):
        Drawing.from_image(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(DatasetError, match="expected an RGB image, got PIL mode 'L'"):
        Drawing.from_image(Image.new("L", (32, 32)))
    with pytest.raises(DatasetError, match="cannot be reduced to 24px"):
        Drawing.from_image(np.zeros((64, 64, 3), np.uint8), size=24)
    assert Drawing.from_image(Image.new("RGB", (64, 64), "white"), size=32).size == 32
