"""The workshop kit: agendas read the stored run times, the disk table sums what each profile's lessons write."""

import json

from coursetools.publish import agenda_seconds, agenda_table, fill
from coursetools.syllabus import lesson_record
from coursetools.workshop import (
    AGENDA_RUNS,
    AGENDAS,
    Agenda,
    Slot,
    day_minutes,
    disk_markdown,
    entry_bytes,
    lesson_writes,
    warm_cache,
)

TINY = ("synthetic", "tiny")
BIG = ("synthetic", "big")


def test_agenda_table_shows_stored_run_times_and_a_typed_wrong_time_is_stale(tmp_path):
    runs = tmp_path / "results" / "cpu"
    runs.mkdir(parents=True)
    (runs / "runtimes.json").write_text(json.dumps({"stamp": "CPU", "seconds": {"00_tour.ipynb": 150.0}}))
    agenda = Agenda(hours=1.0, slots=(Slot(30, lesson="00"), Slot(15, activity="break")))
    table = agenda_table(agenda, tmp_path)
    assert "| 00_tour | the course tools | 2.5 min | not run | not run | 30 min |" in table
    assert "|  | break |  |  |  | 15 min |" in table
    assert "CPU (2 cores, CI): 0 h 48 min (2.5 min of cells)" in table
    assert "T4 emulation: 0 h 45 min (0 s of cells; 00 not run)" in table
    typed = "<!-- agenda:x -->\n" + table.replace("2.5 min", "2.0 min", 1) + "\n<!-- /agenda:x -->"
    assert fill(typed, {"agenda:x": table}) != typed, "a typed run time that the stored run contradicts is rewritten"


def test_agendas_with_the_stored_runs_last_about_their_planned_hours():
    for name, agenda in AGENDAS.items():
        for run, seconds in agenda_seconds().items():
            minutes = day_minutes(agenda, seconds)
            assert abs(minutes - 60 * agenda.hours) <= 30, f"{name} on {run}: {minutes:.0f} min; revise AGENDAS"
    assert AGENDA_RUNS == ("cpu", "t4", "gpu")


def test_disk_table_sums_each_profile_and_a_typed_wrong_total_is_stale():
    entries = {"cpu": {TINY}, "t4": {TINY, BIG}, "gpu": {BIG}}
    table = disk_markdown(entries, {TINY: 15_000_000, BIG: 16_060_000_000})
    assert "| tiny (synthetic, bf16) | 15 MB | 15 MB | – |" in table
    assert table.endswith("| **the profile's cache** | **15 MB** | **16.1 GB** | **16.1 GB** |")
    typed = "<!-- disk -->\n" + table.replace("**16.1 GB** |", "**16.0 GB** |", 1) + "\n<!-- /disk -->"
    assert fill(typed, {"disk": table}) != typed


def test_lessons_write_what_their_sizes_and_sources_name():
    assert lesson_writes(lesson_record("07"), "gpu") == {("synthetic", "llama-1b-shape"), ("synthetic", "llama3-8b-shape"),
                                                        ("converted", "smollm2-135m")}  # its tokens checked on the GPU
    assert lesson_writes(lesson_record("07"), "cpu") == {("converted", "smollm2-135m")}
    assert lesson_writes(lesson_record("01"), "t4") == {("onnx", "minilm-l6"), ("synthetic", "bert-base-shape")}
    assert ("synthetic", "llama3-8b-shape") not in lesson_writes(lesson_record("06"), "t4"), "two GPUs only"


def test_the_8b_checkpoint_is_its_parameters_at_two_bytes():
    assert entry_bytes("synthetic", "llama3-8b-shape") == 2 * 8_030_261_248  # Llama 3 8B's parameter count
    assert entry_bytes("onnx", "bert-tiny-shape") == 2 * entry_bytes("synthetic", "bert-tiny-shape")


def test_warm_cache_writes_each_entry_of_a_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    entries = {("onnx", "bert-tiny-shape"), ("synthetic", "llama-tiny-shape")}
    monkeypatch.setattr("coursetools.workshop.profile_entries", lambda profile: entries)
    warm_cache("cpu")
    assert (tmp_path / "synthetic" / "llama-tiny-shape-seed0" / "config.json").exists()
    assert len(list((tmp_path / "onnx").glob("bert-tiny-shape-*-opset*/model.onnx"))) == 1  # by the exporter this has
