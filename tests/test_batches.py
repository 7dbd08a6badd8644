import numpy as np
import pytest

from helpers.batches import padded_batch, padding_fraction, sentences


@pytest.mark.parametrize("padding", [0.0, 0.25, 0.5, 0.75])
def test_padded_batch_has_the_asked_padding(padding):
    ids, mask = padded_batch(30000, batch=64, length=128, padding=padding)
    assert ids.shape == mask.shape == (64, 128)
    assert padding_fraction(mask) == pytest.approx(padding, abs=0.03)
    assert mask.sum(1).max() == 128 and mask.sum(1).min() >= 1
    assert (ids[mask == 0] == 0).all()


@pytest.mark.parametrize("padding", [1.0, -0.1])
def test_padding_out_of_range_says_what_it_is(padding):
    with pytest.raises(ValueError, match=r"fraction in \[0, 1\)"):
        padded_batch(100, 2, 8, padding)


def test_sentences_are_real_and_deterministic():
    first = sentences(5)
    assert len(first) == 5 and first == sentences(5)
    assert all(len(s) >= 10 for s in first)


@pytest.mark.parametrize("vocab_size", [2, 500, 1000, 1001, 2000, np.int64(30522)])
def test_small_and_numpy_vocabularies_give_real_ids_inside_the_vocabulary(vocab_size):
    ids, mask = padded_batch(vocab_size, batch=4, length=16, padding=0.25)
    assert ids.max() < vocab_size and (ids[mask.bool()] > 0).all()


@pytest.mark.parametrize("vocab_size", [1, 0, -5, None, 500.0, True, "30522"])
def test_a_vocabulary_that_cannot_give_ids_is_refused_with_what_to_pass(vocab_size):
    with pytest.raises(ValueError, match=r"at least 2 \(id 0 is padding\), e\.g\. tokenizer\.vocab_size"):
        padded_batch(vocab_size, batch=2, length=4, padding=0.0)


@pytest.mark.parametrize(("batch", "length", "named"), [(0, 8, "batch 0"), (2, 0, "length 0"), (2.5, 8, "batch 2.5")])
def test_an_empty_or_fractional_shape_is_refused(batch, length, named):
    with pytest.raises(ValueError, match=f"{named}: pass a whole number of at least 1"):
        padded_batch(100, batch, length, 0.5)


@pytest.mark.parametrize(("batch", "length", "padding", "shortest"), [(16, 64, 0.5, 16), (64, 512, 0.5, 128), (8, 32, 0.75, 4)])
def test_a_chosen_shortest_row_keeps_the_asked_padding(batch, length, padding, shortest):
    ids, mask = padded_batch(30000, batch, length, padding, shortest=shortest)
    assert padding_fraction(mask) == pytest.approx(padding, abs=0.03)
    assert mask.sum(1).min() == shortest and mask.sum(1).max() == length
    assert (ids[mask == 0] == 0).all()


def test_the_default_layout_holds_one_token_rows_at_half_padding_and_a_chosen_one_does_not():
    _, default = padded_batch(30000, 16, 64, 0.5)
    _, chosen = padded_batch(30000, 16, 64, 0.5, shortest=16)
    assert default.sum(1).min() == 1 and chosen.sum(1).min() == 16
    assert padding_fraction(default) == pytest.approx(padding_fraction(chosen), abs=0.03)


@pytest.mark.parametrize(("padding", "shortest"), [(0.5, 40), (0.25, 2), (0.0, 63)])
def test_a_shortest_row_that_cannot_give_the_padding_is_refused_with_what_can(padding, shortest):
    with pytest.raises(ValueError, match=r"cannot be reached .* choose shortest between \d+ and \d+"):
        padded_batch(30000, 16, 64, padding, shortest=shortest)


@pytest.mark.parametrize(("batch", "shortest", "named"), [(16, 0, "from 1 to 64"), (16, 65, "from 1 to 64"),
                                                          (16, 8.0, "from 1 to 64"), (1, 8, "at least 2 rows")])
def test_a_shortest_row_outside_the_batch_is_refused(batch, shortest, named):
    with pytest.raises(ValueError, match=named):
        padded_batch(30000, batch, 64, 0.5, shortest=shortest)
