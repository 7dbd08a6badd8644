import pytest

from helpers.batches import padded_batch, padding_fraction, sentences


@pytest.mark.parametrize("padding", [0.0, 0.25, 0.5, 0.75])
def test_padded_batch_has_the_asked_padding(padding):
    ids, mask = padded_batch(30000, batch=64, length=128, padding=padding)
    assert ids.shape == mask.shape == (64, 128)
    assert padding_fraction(mask) == pytest.approx(padding, abs=0.03)
    assert mask.sum(1).max() == 128 and mask.sum(1).min() >= 1
    assert (ids[mask == 0] == 0).all()


def test_padding_out_of_range():
    with pytest.raises(ValueError):
        padded_batch(100, 2, 8, 1.0)


def test_sentences_are_real_and_deterministic():
    first = sentences(5)
    assert len(first) == 5 and first == sentences(5)
    assert all(len(s) >= 10 for s in first)


def test_small_vocabularies_work_and_a_useless_one_is_refused():
    import pytest

    from helpers.batches import padded_batch

    ids, mask = padded_batch(500, batch=4, length=16, padding=0.25)
    assert ids.max() < 500 and (ids[mask.bool()] > 0).all()
    with pytest.raises(ValueError, match="at least one token id"):
        padded_batch(1, batch=2, length=4, padding=0.0)
