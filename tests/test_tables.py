import pytest

from helpers.tables import table


def test_table_aligns_text_left_and_numbers_right():
    text = table(["name", "ms"], [["eager", 12.345], ["sdpa", 1.5]])
    lines = text.splitlines()
    assert lines[0].startswith("name ") and lines[2].startswith("eager")
    assert lines[2].endswith("12.3") and lines[3].endswith(" 1.5")
    with pytest.raises(ValueError, match="one per header"):
        table(["a", "b"], [[1]])
