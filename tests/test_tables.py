import pytest

from helpers.tables import one_of, table


def test_table_aligns_text_left_and_numbers_right():
    text = table(["name", "ms"], [["eager", 12.345], ["sdpa", 1.5]])
    lines = text.splitlines()
    assert lines[0].startswith("name ") and lines[2].startswith("eager")
    assert lines[2].endswith("12.3") and lines[3].endswith(" 1.5")
    with pytest.raises(ValueError, match="one per header"):
        table(["a", "b"], [[1]])


def test_table_shows_as_html_with_the_same_cells_and_prints_as_text():
    shown = table(["name", "ms"], [["a<b", 12.345]])
    assert repr(shown) == str(shown) and "12.3" in str(shown)
    html = shown._repr_html_()
    assert "<th style=\"text-align:left\">name</th>" in html and "a&lt;b" in html
    assert "<td style=\"text-align:right\">12.3</td>" in html and "12.345" not in html


def test_one_of_returns_a_known_name_and_rejects_another_listing_the_names_sorted():
    assert one_of("precision", "int8", {"int8": 1, "bf16": 2}) == "int8"
    with pytest.raises(ValueError, match=r"unknown precision 'fp8'; choose one of \['bf16', 'int8'\]"):
        one_of("precision", "fp8", {"int8": 1, "bf16": 2})


def test_cells_keep_three_significant_digits_without_scientific_notation_below_a_million():
    from helpers.tables import cell

    assert [cell(x) for x in (1070.4, 17812.0, 0.04671, 2.0)] == ["1070", "17800", "0.0467", "2"]
    assert cell("1.07e+03") == "1.07e+03"  # text stays as given
