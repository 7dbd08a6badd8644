"""The syllabus is the one list of lessons: profiles, exercises, publishing, the runner and the tests follow it."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from colab.badges import KERNELSPEC
from coursetools.profiles import PROFILES
from coursetools.syllabus import SYLLABUS, lesson_record

ROOT = Path(__file__).parent.parent


def test_profiles_take_their_sizes_from_the_syllabus():
    for record in SYLLABUS:
        assert PROFILES["cpu"].sizes[record.id] == record.cpu
        assert PROFILES["t4"].sizes[record.id] == {**record.gpu, **record.t4}
    assert set(PROFILES["gpu"].sizes) == {r.id for r in SYLLABUS}


def test_every_stored_result_has_a_display_name():
    for path in sorted((ROOT / "results").glob("*/[0-9]*.json")):
        stored = json.loads(path.read_text())
        record = lesson_record(stored["lesson"])
        for key in stored["values"]:
            base = key.removesuffix("_low").removesuffix("_high")
            assert any(m.matches(base) for m in record.recorded), f"{path}: no Measure names {key!r} in {record.id}"


def test_unknown_lesson_names_the_lessons():
    assert lesson_record("06_device_map") is lesson_record("06")
    with pytest.raises(ValueError, match=r"no lesson '42' in the syllabus; use a lesson's number \(or its stem\): \['00', '01', "):
        lesson_record("42")


def test_start_lesson_rejects_an_unknown_lesson_listing_the_lessons(monkeypatch):
    from coursetools.lesson import start_lesson

    monkeypatch.setenv("COURSE_PROFILE", "cpu")
    with pytest.raises(ValueError, match=r"no lesson '6' in the syllabus; .*\['00', '01', "):
        start_lesson("6")


def test_rounds_and_warmup_reject_a_measurement_the_lesson_table_lacks_listing_its_measurements():
    from coursetools.lesson import Lesson

    lesson = Lesson("06", PROFILES["cpu"], report=None)
    assert lesson.warmup("offload") == PROFILES["cpu"].warmup  # no offload_warmup: the profile's
    with pytest.raises(ValueError, match=r"no measurement 'decode' .* use one of \['bloom', 'offload', 'recipe'\]"):
        lesson.rounds("decode")
    with pytest.raises(ValueError, match=r"use one of \['bloom', 'offload', 'recipe'\]"):
        lesson.warmup("recipes")


def test_lesson_size_and_dtype_reject_a_size_the_lesson_lacks_listing_its_sizes():
    from coursetools.lesson import Lesson

    lesson = Lesson("08", PROFILES["cpu"], report=None)
    assert lesson.size("group_size") == 64 and lesson.dtype("dtype") == torch.float32
    with pytest.raises(ValueError, match=r"no size 'precision' for lesson '08'; use one of \['compile_mode', 'dtype', "):
        lesson.dtype("precision")
    with pytest.raises(ValueError, match=r"no size 'group' for lesson '08'; use one of \['compile_mode', 'dtype', "):
        lesson.size("group")


RECORD = '''
SYLLABUS = SYLLABUS + (
    LessonRecord(
        stem="99_scratch",
        title="a throw-away lesson",
        measures_text="nothing real",
        cpu={"n": 3},
        gpu={"n": 30},
        recorded=(Measure("n_squared", "n squared", "items"),),
    ),
)
'''

CHECKS = '''
from coursetools.checks import Call, Prediction

EXERCISES = {
    "99": Call(lambda answer, n: None if answer == n else "answer with n"),
    "99-call": Call(lambda answer: None if answer == "call()" else "write call()"),
    "99-predict": Prediction("is n above 2?", lambda answer, big: (answer == big, f"n > 2 is {big}")),
}
'''

LESSON = [
    ("markdown", "[badge]", ["colab-badge"]),
    ("code", "# Set-up for Colab", ["colab-setup"]),
    ("code", "from coursetools.lesson import start_lesson\n\nlesson = start_lesson('99')", []),
    ("markdown", "Exercise: in the notebook, `%load ../workshop/solutions/99.py` loads a solution.", []),
    ("code", "answer = ...  # your answer", ["exercise"]),
    ("code", "from coursetools.exercises import check\n\ncheck(\"99\", answer, n=lesson.size('n'))", []),
    ("markdown", "Write the call: `%load ../workshop/solutions/99-call.py` loads a solution.", []),
    ("code", "answer_call = ...  # the call", ["exercise"]),
    ("code", "check(\"99-call\", answer_call)", []),
    ("markdown", "Predict: `%load ../workshop/solutions/99-predict.py` loads a solution.", []),
    ("code", "prediction = ...  # True or False", ["exercise"]),
    ("code", "measured = lesson.size('n') > 2", []),
    ("code", "check(\"99-predict\", prediction, big=measured)", []),
    ("code", "lesson.record(n_squared=float(lesson.size('n') ** 2))", []),
    ("code", "import matplotlib.pyplot as plt\nfrom helpers.widgets import progress\n\nplt.plot(list(progress(range(3), 'steps')))\nplt.show()", []),
]


def test_a_new_lesson_is_a_notebook_a_record_and_a_solution(tmp_path):
    copy = tmp_path / "course"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".git", "build", "results", "*.ipynb", ".stage"))
    with (copy / "coursetools" / "syllabus.py").open("a") as syllabus:
        syllabus.write(RECORD)
    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": KERNELSPEC})
    for kind, source, tags in LESSON:
        cell = nbformat.v4.new_markdown_cell(source) if kind == "markdown" else nbformat.v4.new_code_cell(source)
        cell.metadata["tags"] = tags
        notebook.cells.append(cell)
    nbformat.write(notebook, copy / "notebooks" / "99_scratch.ipynb")
    subprocess.run([sys.executable, "-m", "jupytext", "--quiet", "--to", "py:percent", "notebooks/99_scratch.ipynb"],
                   cwd=copy, check=True)
    (copy / "workshop" / "solutions" / "99.py").write_text("answer = lesson.size('n')\n")
    (copy / "workshop" / "solutions" / "99-call.py").write_text("answer_call = 'call()'\n")
    (copy / "workshop" / "solutions" / "99-predict.py").write_text("prediction = True\n")
    (copy / "coursetools" / "checks" / "lesson99.py").write_text(CHECKS)
    script = (
        "from pathlib import Path\n"
        "from coursetools.runner import run_course\n"
        "from coursetools.publish import lesson_table\n"
        "report = run_course(Path('notebooks'), Path('build'), '99_*.ipynb')\n"
        "assert '| 99 | n squared | 9 | items |' in report, report\n"
        "assert '99_scratch' in lesson_table() and 'a throw-away lesson' in lesson_table()\n"
        "import nbformat\n"
        "outputs = nbformat.read('build/notebooks/99_scratch.ipynb', as_version=4).cells[-1].outputs\n"
        "assert [o for o in outputs if 'image/png' in o.get('data', {})], outputs  # the figure is stored\n"
        "assert not [o for o in outputs if '0%' in o.get('data', {}).get('text/plain', '')], outputs  # no frozen bar\n"
        "print('ok')\n"
    )
    env = {"PYTHONPATH": str(copy), "COURSE_PROFILE": "cpu", "COURSE_RESULTS_DIR": str(tmp_path / "results"),
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=copy, env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "ok" in done.stdout, (done.stdout + done.stderr)[-3000:]
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_notebooks.py", "-k", "99_scratch",
         "notebooks/99_scratch.ipynb", "--nbval-lax", "--nbval-current-env"],
        cwd=copy, env={**env, "COURSE_EXERCISES_STRICT": "1"}, capture_output=True, text=True,
    )
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert " passed" in tests.stdout and "99_scratch" in subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests/test_notebooks.py"],
        cwd=copy, env=env, capture_output=True, text=True).stdout


def test_rounds_and_warmups_equal_the_literals_the_notebooks_had():
    from coursetools.lesson import Lesson

    before = {  # (lesson, measurement): {profile: (warm-up, rounds)}, as the notebooks wrote them before the table held them
        ("00", ""): {"cpu": (1, 5), "gpu": (3, 10), "t4": (3, 10)},  # lesson.profile.warmup, lesson.profile.repeats
        ("02", ""): {"cpu": (1, 5), "gpu": (3, 10), "t4": (3, 10)},
        ("03", ""): {"cpu": (1, 5), "gpu": (1, 5), "t4": (1, 5)},  # warmup=1, lesson.size("rounds")
        ("04", "report"): {"cpu": (1, 3), "gpu": (1, 3), "t4": (1, 3)},
        ("04", "decode"): {"cpu": (1, 5), "gpu": (1, 5), "t4": (1, 5)},
        ("05", "matrix"): {"cpu": (1, 3), "gpu": (1, 5), "t4": (1, 5)},  # 5 if cuda else 3
        ("06", "bloom"): {"cpu": (1, 3), "gpu": (1, 3), "t4": (1, 3)},  # the guide's BLOOM loads (before: "mixed")
    }
    for (lesson_id, measurement), by_profile in before.items():
        for name, (warmup, rounds) in by_profile.items():
            lesson = Lesson(lesson_id, PROFILES[name], report=None)
            assert (lesson.warmup(measurement), lesson.rounds(measurement)) == (warmup, rounds), (lesson_id, name)
    for name, profile in PROFILES.items():
        lesson = Lesson("06", profile, report=None)
        assert lesson.rounds("offload") == max(3, profile.repeats // 2) and lesson.rounds("recipe") == 5, name
        assert Lesson("05", profile, report=None).warmup("static") == 3
