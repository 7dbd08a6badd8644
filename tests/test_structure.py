"""The shape of the code: no import cycle, helpers never imports the machinery, shallow imports, lessons use all of __all__."""

from pathlib import Path

from coursetools.structure import (
    MAX_DEPTH,
    MAX_LINES,
    cycles,
    depth,
    exported,
    forbidden_imports,
    import_graph,
    lesson_uses,
    line_count,
    unexported_uses,
    unused_exports,
)

GRAPH = import_graph()


def test_no_module_of_helpers_or_coursetools_imports_in_a_cycle():
    assert cycles(GRAPH) == []


def test_the_cycle_check_finds_a_cycle():
    bad = {"helpers.a": {"helpers.b"}, "helpers.b": {"helpers.c"}, "helpers.c": {"helpers.a"}, "helpers.d": set()}
    assert sorted(cycles(bad)) == ["helpers.a", "helpers.b", "helpers.c"]


def test_helpers_never_imports_the_machinery_or_the_notebooks():
    assert forbidden_imports(GRAPH) == {}


def test_the_direction_check_finds_an_import_into_the_machinery_or_notebooks():
    bad = {"helpers.a": {"coursetools.lesson", "helpers.b"}, "helpers.b": {"notebooks.x"}, "coursetools.c": {"helpers.a"}}
    assert forbidden_imports(bad) == {"helpers.a": ["coursetools.lesson"], "helpers.b": ["notebooks.x"]}


def test_helpers_holds_no_path_into_the_notebooks():
    root = Path(__file__).parent.parent
    assert not [p.name for p in (root / "helpers").glob("*.py") if '"notebooks"' in p.read_text()]


def test_helpers_imports_at_most_five_levels_deep():
    assert depth(GRAPH) <= MAX_DEPTH


def test_the_depth_check_counts_the_longest_chain():
    chain = {f"helpers.m{i}": {f"helpers.m{i + 1}"} for i in range(6)} | {"helpers.m6": set()}
    assert depth(chain) == 7 > MAX_DEPTH
    assert depth({"helpers.a": {"coursetools.b"}, "coursetools.b": {"coursetools.c"}, "coursetools.c": set()}) == 1


def test_every_exported_name_is_used_by_a_lesson_and_every_used_name_is_exported():
    exports, uses = exported(), lesson_uses()
    assert unused_exports(exports, uses) == []
    assert unexported_uses(exports, uses) == []


def test_the_usage_checks_find_an_unused_and_an_unexported_name():
    exports = {"helpers.timing": ["benchmark", "spread"]}
    uses = {("helpers.timing", "benchmark"): ["00"], ("helpers.timing", "time_once"): ["02"]}
    assert unused_exports(exports, uses) == ["helpers.timing.spread"]
    assert unexported_uses(exports, uses) == ["helpers.timing.time_once"]


def test_lesson_uses_reads_imports_from_lesson_sources(tmp_path):
    (tmp_path / "03_x.py").write_text("from helpers.timing import benchmark\nif True:\n    from helpers.plots import bar_chart\n")
    (tmp_path / "parallel.py").write_text("from helpers.timing import spread\n")  # not a lesson
    assert lesson_uses(tmp_path) == {("helpers.timing", "benchmark"): ["03"], ("helpers.plots", "bar_chart"): ["03"]}


def test_helpers_stays_small():
    assert line_count() <= MAX_LINES


def test_the_size_check_counts_lines(tmp_path):
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "a.py").write_text("x = 1\n" * (MAX_LINES + 1))
    assert line_count(tmp_path) > MAX_LINES
