import pytest

from helpers.tables import one_of, table


def test_table_aligns_text_left_and_numbers_right():
    text = table(["name", "ms"], [["eager", 12.345], ["sdpa", 1.5]])
    lines = text.splitlines()
    assert lines[0].startswith("name ") and lines[2].startswith("eager")
    assert lines[2].endswith("12.3") and lines[3].endswith(" 1.5")
    with pytest.raises(ValueError, match="one per header"):
        table(["a", "b"], [[1]])


def test_one_of_returns_a_known_name_and_rejects_another_listing_the_names_sorted():
    assert one_of("precision", "int8", {"int8": 1, "bf16": 2}) == "int8"
    with pytest.raises(ValueError, match=r"unknown precision 'fp8'; choose one of \['bf16', 'int8'\]"):
        one_of("precision", "fp8", {"int8": 1, "bf16": 2})
