"""Publish a course run: store its results and run times, then regenerate the README's and the guide's tables from them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from helpers.results import load_results
from helpers.syllabus import SYLLABUS, lesson_record
from helpers.tables import cell

ROOT = Path(__file__).resolve().parent.parent
# Stored runs, in the order the run-time columns show them: results/<name>/ and the column's heading.
RUNS = {"cpu": "CPU (2 cores, CI)", "t4": "T4 emulation", "gpu": "one GPU (H100 or H200, see stamp)", "gpu-x2": "2 GPUs (H100 or H200, see stamp)"}
# A second run of some lessons, same code and machine, kept as results/<run>-rerun/ to show how well intervals hold.
RERUN_SUFFIX = "-rerun"


def load_runtimes(name: str, root: Path = ROOT) -> dict:
    """Return a stored run's stamp and seconds per notebook ({} when that run was never published)."""
    path = root / "results" / name / "runtimes.json"
    return json.loads(path.read_text()) if path.exists() else {}


def duration(seconds: float | None) -> str:
    """Return a run time as a table shows it: seconds below two minutes, else minutes."""
    if seconds is None:
        return "not run"
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def lesson_table(root: Path = ROOT) -> str:
    """Return the Markdown lesson table: Colab badge, topic, what you measure, and each stored run's time."""
    from coursetools.badges import colab_url

    stored = {name: load_runtimes(name, root) for name in RUNS}
    runs = {name: run.get("seconds", {}) for name, run in stored.items()}
    rows = [
        "| notebook | topic | what you measure | " + " | ".join(RUNS.values()) + " |",
        "|---|---|---|" + "---|" * len(RUNS),
    ]
    for record in SYLLABUS:
        stem, topic, measured = record.stem, record.title, record.measures_text
        path = root / "notebooks" / f"{stem}.ipynb"
        badge = f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(path)})"
        times = " | ".join(duration(runs[name].get(f"{stem}.ipynb")) for name in RUNS)
        rows.append(f"| [{stem}](notebooks/{stem}.ipynb) {badge} | {topic} | {measured} | {times} |")
    stamps = [f"{heading}: {stored[name].get('stamp', 'not run yet')}" for name, heading in RUNS.items()]
    return "\n".join(rows) + "\n\nRun times measured on: " + "; ".join(stamps) + "."


def runtime_table(root: Path = ROOT) -> str:
    """Return each notebook's run time per stored run, with the run's stamp, for the instructor guide."""
    rows = ["| notebook | " + " | ".join(RUNS.values()) + " |", "|---|" + "---|" * len(RUNS)]
    runs = {name: load_runtimes(name, root).get("seconds", {}) for name in RUNS}
    for stem in (record.stem for record in SYLLABUS):
        rows.append(f"| {stem} | " + " | ".join(duration(runs[name].get(f"{stem}.ipynb")) for name in RUNS) + " |")
    totals = [duration(sum(runs[name].values())) if runs[name] else "not run" for name in RUNS]
    rows.append("| **all** | " + " | ".join(totals) + " |")
    return "\n".join(rows)


def measure_name(lesson: str, key: str) -> tuple[str, str]:
    """Return a recorded value's display name and unit from the syllabus (the key itself, no unit, if it has none)."""
    record = lesson_record(lesson) if lesson in {r.id for r in SYLLABUS} else None
    measure = record.measure(key) if record else None
    return (measure.label(key), measure.unit) if measure else (key, "")


def results_markdown(results: list[dict]) -> str:
    """Return stored results as Markdown: the stamp once above each table, display names, units, intervals.

    A measure `x` recorded with `x_low` and `x_high` shows as "x [low, high]".
    """
    blocks: dict[str, list[str]] = {}
    for lesson in results:
        values = lesson["values"]
        rows = blocks.setdefault(lesson["stamp"], ["| lesson | measure | value | unit |", "|---|---|---|---|"])
        for key, value in values.items():
            if key.endswith(("_low", "_high")) and key.rsplit("_", 1)[0] in values:
                continue
            shown = cell(value)
            if f"{key}_low" in values and f"{key}_high" in values:
                shown += f" [{cell(values[key + '_low'])}, {cell(values[key + '_high'])}]"
            name, unit = measure_name(lesson["lesson"], key)
            rows.append(f"| {lesson['lesson']} | {name} | {shown} | {unit} |")
    return "\n\n".join(f"Measured on: {stamp}\n\n" + "\n".join(rows) for stamp, rows in blocks.items())


def rerun_markdown(first: list[dict], second: list[dict]) -> str:
    """Return each interval-carrying ratio of a second run beside the first run's median and recorded interval."""
    before = {lesson["lesson"]: lesson["values"] for lesson in first}
    rows = ["| lesson | measure | first run [recorded interval] | second run | inside |", "|---|---|---|---|---|"]
    for lesson in second:
        values = before.get(lesson["lesson"], {})
        for key, value in lesson["values"].items():
            low, high = values.get(f"{key}_low"), values.get(f"{key}_high")
            if key not in values or low is None or high is None:
                continue
            name = measure_name(lesson["lesson"], key)[0]
            inside = "yes" if low <= value <= high else "**no**"
            rows.append(f"| {lesson['lesson']} | {name} | {cell(values[key])} [{cell(low)}, {cell(high)}] | {cell(value)} | "
                        f"{inside} |")
    stamps = "; ".join(sorted({lesson["stamp"] for lesson in second}))
    return f"Second run measured on: {stamps}\n\n" + "\n".join(rows)


def sections(root: Path = ROOT) -> dict[str, str]:
    """Return every generated section by its marker name."""
    from coursetools.api import api_reference
    from helpers.multi_gpu import STORED_RUN, placements_markdown, stored_results
    from helpers.settings import SETTINGS

    generated = {
        "api": api_reference(root),
        "settings": "\n".join(
            ["| variable | what it sets |", "|---|---|", *(f"| `{name}` | {text} |" for name, text in SETTINGS.items())]
        ),
        "lessons": lesson_table(root),
        "runtimes": runtime_table(root),
        **{f"results:{name}": results_markdown(load_results(root / "results" / name)) for name in ("gpu", "t4", "gpu-x2")},
    }
    for name in RUNS:
        if (root / "results" / f"{name}{RERUN_SUFFIX}").exists():
            second = load_results(root / "results" / f"{name}{RERUN_SUFFIX}")
            generated[f"rerun:{name}"] = rerun_markdown(load_results(root / "results" / name), second)
    if (root / "results" / STORED_RUN).exists():
        generated[f"placements:{STORED_RUN}"] = placements_markdown(stored_results(STORED_RUN, root))
    return generated


def fill(text: str, generated: dict[str, str]) -> str:
    """Return text with each `<!-- name -->` ... `<!-- /name -->` section it contains replaced by the generated one."""
    for name, body in generated.items():
        pattern = re.compile(rf"(<!-- {re.escape(name)} -->\n).*?(\n<!-- /{re.escape(name)} -->)", re.DOTALL)
        text = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(2), text)
    return text


DOCUMENTS = ("README.md", "workshop/instructor_guide.md", "helpers/README.md")


def stale_documents(root: Path = ROOT) -> list[str]:
    """Return the documents whose generated sections differ from what the stored runs give."""
    generated = sections(root)
    return [doc for doc in DOCUMENTS if fill((root / doc).read_text(), generated) != (root / doc).read_text()]


def write_documents(root: Path = ROOT) -> None:
    """Regenerate the marked sections of the README and the instructor guide."""
    generated = sections(root)
    for doc in DOCUMENTS:
        path = root / doc
        path.write_text(fill(path.read_text(), generated))


def publish(build: Path, name: str, notebooks: bool, root: Path = ROOT) -> None:
    """Store a course run from build as results/<name> (and its executed notebooks over notebooks/), then regenerate."""
    if name not in RUNS:
        raise ValueError(f"unknown run {name!r}; published runs are {sorted(RUNS)}")
    runtimes = build / "runtimes.json"
    if not runtimes.exists():
        raise FileNotFoundError(f"{runtimes} is missing: run `./course run --build {build}` first")
    target = root / "results" / name
    target.mkdir(parents=True, exist_ok=True)
    for path in [*(build / "results").glob("*.json"), runtimes]:
        shutil.copy2(path, target / path.name)
    if notebooks:
        for path in sorted((build / "notebooks").glob("[0-9]*.ipynb")):
            shutil.copy2(path, root / "notebooks" / path.name)
    write_documents(root)
