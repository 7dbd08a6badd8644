"""Publish a course run: store its results and run times, then regenerate the README's and the guide's tables from them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from coursetools.placements import PLACEMENT_NAMES, decode_bound, placement_rows
from coursetools.results import interval, is_bound, load_results
from coursetools.syllabus import SYLLABUS, lesson_record
from coursetools.workshop import AGENDA_RUNS, AGENDAS, Agenda, day_minutes, disk_table
from helpers.decoding import OVERHEAD_BOUND_SHARE
from helpers.tables import cell, one_of

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
    from colab.badges import colab_url

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
    stamps = [f"{heading}: {stamp_text(stored[name])}" for name, heading in RUNS.items()]
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


def agenda_seconds(root: Path = ROOT) -> dict[str, dict[str, float]]:
    """Return each agenda run's stored seconds per lesson id."""
    runs = {name: load_runtimes(name, root).get("seconds", {}) for name in AGENDA_RUNS}
    return {name: {r.id: seconds[f"{r.stem}.ipynb"] for r in SYLLABUS if f"{r.stem}.ipynb" in seconds}
            for name, seconds in runs.items()}


def clock(minutes: float) -> str:
    """Return minutes as a day's length reads: "3 h 05 min"."""
    whole = round(minutes)
    return f"{whole // 60} h {whole % 60:02d} min"


def day_length(agenda: Agenda, seconds: dict[str, float]) -> str:
    """Return an agenda's length with one run's stored run times, its cells' share, and its lessons that run lacks."""
    lessons = [slot.lesson for slot in agenda.slots if slot.lesson]
    missing = [lesson for lesson in lessons if lesson not in seconds]
    ran = duration(sum(seconds.get(lesson, 0.0) for lesson in lessons))
    return f"{clock(day_minutes(agenda, seconds))} ({ran} of cells" + (f"; {', '.join(missing)} not run" if missing else "") + ")"


def agenda_table(agenda: Agenda, root: Path = ROOT) -> str:
    """Return an agenda as a Markdown table: each slot's lesson, title, stored run times and planned minutes."""
    runs = agenda_seconds(root)
    rows = [
        "| lesson | what it teaches | " + " | ".join(f"run time: {RUNS[name]}" for name in AGENDA_RUNS)
        + " | reading, exercises, discussion (plan) |",
        "|---|---|" + "---|" * len(AGENDA_RUNS) + "---|",
    ]
    for slot in agenda.slots:
        record = lesson_record(slot.lesson) if slot.lesson else None
        lesson, title = (record.stem, record.title) if record else ("", slot.activity)
        times = (duration(runs[name].get(slot.lesson)) if record else "" for name in AGENDA_RUNS)
        rows.append(f"| {lesson} | {title} | " + " | ".join(times) + f" | {slot.minutes} min |")
    lengths = "; ".join(f"{RUNS[name]}: {day_length(agenda, runs[name])}" for name in AGENDA_RUNS)
    return "\n".join(rows) + f"\n\nPlanned {agenda.hours:g} h. Plan plus the stored run times: {lengths}."


def measure_name(lesson: str, key: str) -> tuple[str, str]:
    """Return a recorded value's display name and unit from the syllabus (the key itself, no unit, if it has none)."""
    record = lesson_record(lesson) if lesson in {r.id for r in SYLLABUS} else None
    measure = record.measure(key) if record else None
    return (measure.label(key), measure.unit) if measure else (key, "")


def results_markdown(results: list[dict]) -> str:
    """Return stored results as Markdown: the stamp once above each table, display names, units, intervals.

    A measure recorded with an interval shows as "x [low, high]".
    """
    blocks: dict[str, list[str]] = {}
    for lesson in results:
        values = lesson["values"]
        rows = blocks.setdefault(lesson["stamp"], ["| lesson | measure | value | unit |", "|---|---|---|---|"])
        for key, value in values.items():
            if is_bound(values, key):
                continue
            shown = cell(value)
            if bounds := interval(values, key):
                shown += f" [{cell(bounds[0])}, {cell(bounds[1])}]"
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
            if key not in values or (bounds := interval(values, key)) is None:
                continue
            low, high = bounds
            name = measure_name(lesson["lesson"], key)[0]
            inside = "yes" if low <= value <= high else "**no**"
            rows.append(f"| {lesson['lesson']} | {name} | {cell(values[key])} [{cell(low)}, {cell(high)}] | {cell(value)} | "
                        f"{inside} |")
    stamps = "; ".join(sorted({lesson["stamp"] for lesson in second}))
    return f"Second run measured on: {stamps}\n\n" + "\n".join(rows)


def placements_markdown(two_gpu: dict[str, Any]) -> str:
    """Return the stored placement comparison as a Markdown table with its stamp and GPU link, for the README."""
    headers, rows = placement_rows(two_gpu["placements"])
    lines = ["| " + " | ".join(r) + " |" for r in [headers, *rows]]
    lines.insert(1, "|" + "---|" * len(headers))
    shares = {placement: next(iter(result["decode"].values()))["median"] / decode_bound(result, two_gpu["bandwidth"])
              for placement, result in two_gpu["placements"].items()}
    reading = ("each is below a fifth of its bound, where a step is overhead-bound: the decode columns compare eager "
               "`generate`'s overhead, not the placements" if max(shares.values()) < OVERHEAD_BOUND_SHARE else
               "a share below a fifth of its bound is overhead-bound, and names no placement as the cause")
    verdict = ("Decode ran as eager `generate` (no static cache, no compiled step); batch-1 decode as a share of each "
               "placement's bandwidth bound: "
               + ", ".join(f"{PLACEMENT_NAMES[p]} {100 * share:.0f}%" for p, share in shares.items()) + f"; {reading}.")
    loops = {p: r.get("loop") or {} for p, r in two_gpu["placements"].items()}
    if all(loop.get("tok_s") for loop in loops.values()):
        verdict += (" In the static-cache loop (one compiled step, lesson 07's): " + ", ".join(
            f"{PLACEMENT_NAMES[p]} {100 * loop['tok_s']['median'] / decode_bound(two_gpu['placements'][p], two_gpu['bandwidth']):.0f}%"
            for p, loop in loops.items()) + " of the bound.")
    return "\n".join([f"Measured on: {two_gpu['stamp']}; GPU link {two_gpu['link']}. Medians, [quartiles].", "", *lines,
                      "", verdict])


def plot_results(results: list[dict], path: Path) -> Path:
    """Draw each lesson's positive numeric results as log-scale bars (one panel a lesson) into path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    numeric = [
        (
            r["lesson"],
            {k: v for k, v in r["values"].items() if isinstance(v, int | float) and not isinstance(v, bool) and v > 0},
        )
        for r in results
    ]
    numeric = [(lesson, values) for lesson, values in numeric if values]
    fig, axes = plt.subplots(len(numeric), 1, figsize=(8, 1.2 + 0.4 * sum(len(v) for _, v in numeric)), squeeze=False)
    for ax, (lesson, values) in zip(axes[:, 0], numeric, strict=True):
        ax.barh(list(values), list(values.values()))
        ax.set_title(f"lesson {lesson}", loc="left")
        ax.set_xscale("log")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def sections(root: Path = ROOT) -> dict[str, str]:
    """Return every generated section by its marker name."""
    from coursetools.api import api_reference
    from coursetools.placements import STORED_RUN, stored_results
    from coursetools.settings import SETTINGS

    generated = {
        "api": api_reference(root),
        "settings": "\n".join(
            ["| variable | what it sets |", "|---|---|", *(f"| `{name}` | {text} |" for name, text in SETTINGS.items())]
        ),
        "lessons": lesson_table(root),
        "runtimes": runtime_table(root),
        **{f"agenda:{name}": agenda_table(agenda, root) for name, agenda in AGENDAS.items()},
        "disk": disk_table(),
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


DOCUMENTS = ("README.md", "workshop/instructor_guide.md", "workshop/agenda.md", "helpers/README.md")


def stale_documents(root: Path = ROOT) -> list[str]:
    """Return the documents whose generated sections differ from what the stored runs give."""
    generated = sections(root)
    return [doc for doc in DOCUMENTS if fill((root / doc).read_text(), generated) != (root / doc).read_text()]


def write_documents(root: Path = ROOT) -> None:
    """Regenerate the marked sections of the README, the instructor guide, the workshop agenda and the API reference."""
    generated = sections(root)
    for doc in DOCUMENTS:
        path = root / doc
        path.write_text(fill(path.read_text(), generated))


def notebook_stamps(run: dict) -> dict[str, str]:
    """Return the stamp each notebook of a stored run ran under (files from before 2026-12-05 hold one for all)."""
    return {notebook: run.get("stamps", {}).get(notebook, run["stamp"]) for notebook in run.get("seconds", {})}


def merged_runtimes(run: dict, stored: Path) -> dict:
    """Return run's times plus the stored times of other notebooks, each notebook with the stamp it ran under."""
    old = json.loads(stored.read_text()) if stored.exists() else {}
    seconds = {**old.get("seconds", {}), **run["seconds"]}
    stamps = {**notebook_stamps(old), **dict.fromkeys(run["seconds"], run["stamp"])}  # {} when nothing was stored
    return {"stamp": run["stamp"], "seconds": seconds, "stamps": stamps}


def stamp_text(run: dict) -> str:
    """Return where a stored run's times were measured: its stamp, or each stamp with the lessons run under it."""
    if not run:
        return "not run yet"
    lessons: dict[str, list[str]] = {}
    for notebook, stamp in sorted(notebook_stamps(run).items()):
        lessons.setdefault(stamp, []).append(notebook[:2])
    if len(lessons) <= 1:
        return run["stamp"]
    return "; ".join(f"lesson{'s' if len(ids) > 1 else ''} {', '.join(ids)} on {stamp}" for stamp, ids in lessons.items())


def publish(build: Path, name: str, notebooks: bool, root: Path = ROOT) -> None:
    """Store a course run from build as results/<name> (and its executed notebooks over notebooks/), then regenerate."""
    one_of("run", name, RUNS)
    runtimes = build / "runtimes.json"
    if not runtimes.exists():
        raise FileNotFoundError(f"{runtimes} is missing: run `./course run --build {build}` first")
    target = root / "results" / name
    target.mkdir(parents=True, exist_ok=True)
    run = json.loads(runtimes.read_text())
    finished = {notebook[:2] for notebook in run["seconds"]}  # a notebook stopped midway may have recorded results
    for path in (build / "results").glob("*.json"):
        if path.stem in finished:
            shutil.copy2(path, target / path.name)
    merged = merged_runtimes(run, target / runtimes.name)
    (target / runtimes.name).write_text(json.dumps(merged, indent=2, sort_keys=True))
    if notebooks:
        for path in sorted((build / "notebooks").glob("[0-9]*.ipynb")):
            shutil.copy2(path, root / "notebooks" / path.name)
    write_documents(root)
