import copy

import nbformat
import pytest

from coursetools.publish import plot_results, results_markdown
from coursetools.results import load_results, record
from coursetools.runner import run_course


def test_record_merges_values_and_table_escapes_stamp(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RESULTS_DIR", str(tmp_path))
    record("01", "GPU | torch", minilm_fast_vs_sdpa=2.5, minilm_fast_vs_sdpa_low=2.0, minilm_fast_vs_sdpa_high=3.0)
    record("01", "GPU | torch", note="fp16")
    record("00", "CPU", decode_tok_s=12.25)
    results = load_results(tmp_path)
    assert [r["lesson"] for r in results] == ["00", "01"]
    assert results[1]["values"]["note"] == "fp16" and results[1]["interval"] == "quartiles"  # what the brackets span
    table = results_markdown(results)
    assert "Measured on: GPU | torch\n" in table and "Measured on: CPU\n" in table
    assert "| 01 | MiniLM, float32: fast path vs HF sdpa | 2.5 [2, 3] | x |" in table
    assert "| 00 | decode, batch 1 | 12.2 | tok/s |" in table
    assert "| 01 | note | fp16 |  |" in table
    assert plot_results(results, tmp_path / "plot.png").stat().st_size > 1000


def test_record_refuses_a_value_that_is_not_finite_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RESULTS_DIR", str(tmp_path))
    with pytest.raises(ValueError, match=r"not finite, so not recorded: \['ppl_int8'\]"):
        record("08", "GPU", ppl_bf16=10.3, ppl_int8=float("nan"))
    with pytest.raises(ValueError, match="speedup"):
        record("08", "GPU", speedup=(1.2, 1.1, float("inf")))
    assert not (tmp_path / "08.json").exists()


def test_run_course_executes_notebooks_and_collects_results(tmp_path):
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from coursetools.results import record\nrecord('99', 'here', answer=42.0)")]
    nbformat.write(nb, notebooks / "99_probe.ipynb")
    report = run_course(notebooks, tmp_path / "build")
    assert "| 99 | answer | 42 |  |" in report
    assert "99_probe.ipynb" in report
    executed = nbformat.read(tmp_path / "build" / "notebooks" / "99_probe.ipynb", as_version=4)
    assert executed.cells[0].execution_count == 1


def test_readme_one_gpu_table_is_what_the_stored_results_give():
    from pathlib import Path

    root = Path(__file__).parent.parent
    readme = (root / "README.md").read_text()
    stored = readme.split("<!-- results:gpu -->\n")[1].split("\n<!-- /results:gpu -->")[0]
    assert stored == results_markdown(load_results(root / "results" / "gpu"))


def test_readme_and_guide_tables_are_what_the_stored_runs_give():
    from coursetools.publish import stale_documents

    assert stale_documents() == [], "run: ./course publish"


def test_run_course_adds_up_run_times_of_partial_runs(tmp_path):
    import json

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    for name in ("98_a", "99_b"):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell("import os; assert os.environ['COURSE_STATIC'] == '1'")]
        nbformat.write(nb, notebooks / f"{name}.ipynb")
    run_course(notebooks, tmp_path / "build", pattern="98_*.ipynb")
    run_course(notebooks, tmp_path / "build", pattern="99_*.ipynb")
    stored = json.loads((tmp_path / "build" / "runtimes.json").read_text())
    assert sorted(stored["seconds"]) == ["98_a.ipynb", "99_b.ipynb"]
    assert "| torch " in stored["stamp"]


def test_publish_stores_a_run_and_fills_marked_sections(tmp_path):
    import json

    from coursetools.publish import fill, lesson_table, publish

    build = tmp_path / "build"
    (build / "results").mkdir(parents=True)
    (build / "results" / "00.json").write_text(json.dumps({"lesson": "00", "stamp": "GPU", "values": {"x": 1.5}}))
    (build / "runtimes.json").write_text(json.dumps({"stamp": "GPU | torch", "seconds": {"00_tour.ipynb": 150.0}}))
    root = tmp_path / "repo"
    (root / "workshop").mkdir(parents=True)
    (root / "README.md").write_text("a\n<!-- results:t4 -->\nold\n<!-- /results:t4 -->\nb\n")
    (root / "workshop" / "instructor_guide.md").write_text("<!-- runtimes -->\nold\n<!-- /runtimes -->\n")
    (root / "workshop" / "agenda.md").write_text("<!-- agenda:half-day -->\nold\n<!-- /agenda:half-day -->\n")
    (root / "helpers").mkdir()
    (root / "helpers" / "README.md").write_text("API\n")
    publish(build, "t4", notebooks=False, root=root)
    assert "Measured on: GPU\n\n| lesson | measure | value | unit |" in (root / "README.md").read_text()
    assert "| 00 | x | 1.5 |  |" in (root / "README.md").read_text()
    assert "| 00_tour | not run | 2.5 min | not run | not run |" in (root / "workshop" / "instructor_guide.md").read_text()
    assert "T4 emulation: GPU | torch" in lesson_table(root)
    assert "| 00_tour | the course tools | not run | 2.5 min | not run | 20 min |" in (root / "workshop" / "agenda.md").read_text()
    assert fill("<!-- x -->\nold\n<!-- /x -->", {"x": "new"}) == "<!-- x -->\nnew\n<!-- /x -->"


def test_publishing_a_few_lessons_keeps_the_other_lessons_run_times_each_with_its_stamp(tmp_path):
    import json

    from coursetools.publish import merged_runtimes, stamp_text

    stored = tmp_path / "runtimes.json"  # a file from before per-notebook stamps: one stamp for all
    stored.write_text(json.dumps({"stamp": "H200 | torch 2.11 | profile gpu | 2026-11-26",
                                  "seconds": {"00_tour.ipynb": 50.0, "07_decode.ipynb": 285.0}}))
    later = {"stamp": "H100 | torch 2.11 | profile gpu | 2026-12-05", "seconds": {"07_decode.ipynb": 900.0}}
    merged = merged_runtimes(later, stored)
    assert merged["seconds"] == {"00_tour.ipynb": 50.0, "07_decode.ipynb": 900.0}
    assert merged["stamps"] == {"00_tour.ipynb": "H200 | torch 2.11 | profile gpu | 2026-11-26",
                                "07_decode.ipynb": "H100 | torch 2.11 | profile gpu | 2026-12-05"}
    assert stamp_text(merged) == ("lesson 00 on H200 | torch 2.11 | profile gpu | 2026-11-26; "
                                  "lesson 07 on H100 | torch 2.11 | profile gpu | 2026-12-05")
    alone = merged_runtimes(later, tmp_path / "none.json")
    assert alone["seconds"] == later["seconds"] and stamp_text(alone) == later["stamp"] and stamp_text({}) == "not run yet"


def test_publish_stores_results_only_of_the_notebooks_that_finished(tmp_path):
    import json

    from coursetools.publish import publish

    build, root = tmp_path / "build", tmp_path / "repo"
    (build / "results").mkdir(parents=True)
    for lesson in ("00", "01"):  # 01 stopped midway: it recorded results but has no run time
        (build / "results" / f"{lesson}.json").write_text(json.dumps({"lesson": lesson, "stamp": "GPU", "values": {}}))
    (build / "runtimes.json").write_text(json.dumps({"stamp": "GPU | torch", "seconds": {"00_tour.ipynb": 150.0}}))
    for path in ("README.md", "workshop/instructor_guide.md", "workshop/agenda.md", "helpers/README.md"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("")
    publish(build, "t4", notebooks=False, root=root)
    assert sorted(path.name for path in (root / "results" / "t4").glob("*.json")) == ["00.json", "runtimes.json"]


def test_a_second_run_is_set_against_the_first_runs_recorded_interval():
    from coursetools.publish import rerun_markdown

    first = [{"lesson": "01", "stamp": "A", "values": {"minilm_fast_vs_sdpa": 1.3, "minilm_fast_vs_sdpa_low": 1.2,
                                                      "minilm_fast_vs_sdpa_high": 1.5, "no_interval": 2.0}}]
    inside = [{"lesson": "01", "stamp": "B", "values": {"minilm_fast_vs_sdpa": 1.4, "no_interval": 9.0}}]
    outside = [{"lesson": "01", "stamp": "B", "values": {"minilm_fast_vs_sdpa": 1.6}}]
    table = rerun_markdown(first, inside)
    assert table.startswith("Second run measured on: B")
    assert "| 01 | MiniLM, float32: fast path vs HF sdpa | 1.3 [1.2, 1.5] | 1.4 | yes |" in table
    assert "no_interval" not in table  # only ratios the first run recorded with an interval are compared
    assert table.endswith("| 1.4 | yes |") and "| 1.6 | **no** |" in rerun_markdown(first, outside)


def test_publish_rejects_an_unknown_run_listing_the_runs(tmp_path):
    from coursetools.publish import RUNS, publish

    assert "gpu-x2" in RUNS
    with pytest.raises(ValueError, match=r"unknown run 'h100'; choose one of \['cpu', 'gpu', 'gpu-x2', 't4'\]"):
        publish(tmp_path / "build", "h100", notebooks=False, root=tmp_path)
    assert list(tmp_path.iterdir()) == []  # rejected before reading or writing anything


def test_placements_markdown_calls_the_decode_columns_host_bound_only_when_every_share_is_below_a_fifth():
    from coursetools.placements import stored_results
    from coursetools.publish import placements_markdown

    stored = stored_results()  # every share of the stored run is below a fifth of its bound
    assert "each is below a fifth of its bound" in placements_markdown(stored)
    fast = copy.deepcopy(stored)
    fast["placements"]["one-gpu"]["decode"] = {b: {**d, "median": d["median"] * 10} for b, d in
                                               fast["placements"]["one-gpu"]["decode"].items()}
    text = placements_markdown(fast)  # one GPU at ten times its stored speed: above a fifth of its bound
    assert "each is below a fifth" not in text and "names no placement as the cause" in text
