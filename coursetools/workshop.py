"""The workshop kit: the agendas' plans, and the course cache each profile's lessons fill (publish writes both tables).

`python -m coursetools.workshop PROFILE` fills the course cache (COURSE_CACHE) with every checkpoint that profile's
lessons write, so a room that shares one cache never builds one live.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from coursetools.profiles import PROFILES
from coursetools.syllabus import SYLLABUS, LessonRecord

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"  # the lessons' sources, read for what they write into the cache
AGENDA_RUNS = ("cpu", "t4", "gpu")  # the stored runs (results/<name>/) whose run times an agenda shows
DISK_PROFILES = ("cpu", "t4", "gpu")
TWO_GPU_SIZES = {"parallel_model"}  # lesson 06 loads it only on two GPUs; the disk table is for one-GPU machines
# What a lesson writes into the cache, found in its source: `pretrained_path("name")` and `export_encoder("name"`.
CALLS = {"checkpoint": re.compile(r'pretrained_path\("([\w.-]+)"'), "onnx": re.compile(r'export_encoder\("([\w.-]+)"')}


@dataclass(frozen=True)
class Slot:
    """One slot of an agenda: a lesson (its id) or an activity, and the minutes planned for it besides running cells."""

    minutes: int
    lesson: str = ""
    activity: str = ""


@dataclass(frozen=True)
class Agenda:
    """A workshop day: the hours it aims at and its slots in order."""

    hours: float
    slots: tuple[Slot, ...]


# Plans, not measurements: minutes of reading, exercises and discussion per slot; the cells' run times come on top.
AGENDAS = {
    "half-day": Agenda(
        hours=3.5,
        slots=(
            Slot(15, activity="welcome; `./course doctor` on each machine; the stamp and the profile"),
            Slot(20, lesson="00"),
            Slot(40, lesson="02"),
            Slot(15, activity="break"),
            Slot(45, lesson="03"),
            Slot(40, lesson="05"),
            Slot(15, activity="wrap-up: the room's predictions against its measurements; questions"),
        ),
    ),
    "full-day": Agenda(
        hours=7.0,
        slots=(
            Slot(15, activity="welcome; `./course doctor` on each machine; the stamp and the profile"),
            Slot(20, lesson="00"),
            Slot(25, lesson="01"),
            Slot(40, lesson="02"),
            Slot(15, activity="break"),
            Slot(40, lesson="03"),
            Slot(30, lesson="04"),
            Slot(45, activity="lunch"),
            Slot(35, lesson="05"),
            Slot(30, lesson="06"),
            Slot(15, activity="break"),
            Slot(40, lesson="07"),
            Slot(30, lesson="08"),
            Slot(10, activity="wrap-up: the room's predictions against its measurements; questions"),
        ),
    ),
}


def day_minutes(agenda: Agenda, seconds: dict[str, float]) -> float:
    """Return an agenda's planned minutes plus one run's stored run times of its lessons (those it has)."""
    return sum(slot.minutes for slot in agenda.slots) + sum(seconds.get(slot.lesson, 0.0) for slot in agenda.slots) / 60


def model_class_name(name: str) -> str:
    """Return the transformers auto class a lesson loads a course model as: BERT shapes are encoders (lesson 01)."""
    from helpers.models import model_config

    return "AutoModel" if model_config(name).model_type == "bert" else "AutoModelForCausalLM"


def source_calls(record: LessonRecord, kind: str, notebooks: Path = NOTEBOOKS) -> set[str]:
    """Return the model names a lesson's source passes literally to the call of this kind."""
    return set(CALLS[kind].findall((notebooks / f"{record.stem}.py").read_text()))


def lesson_writes(record: LessonRecord, profile: str, notebooks: Path = NOTEBOOKS) -> set[tuple[str, str]]:
    """Return the (kind, model) entries a lesson writes into the cache under a profile: synthetic, converted or onnx."""
    from helpers.models import PACKAGED, SYNTHETIC

    sizes = PROFILES[profile].sizes[record.id]
    named = {v for key, value in sizes.items() if key not in TWO_GPU_SIZES
             for v in (value if isinstance(value, list) else [value]) if isinstance(v, str)}
    checkpoints = (named | source_calls(record, "checkpoint", notebooks)) & (PACKAGED.keys() | SYNTHETIC.keys())
    entries = {("synthetic", name) for name in checkpoints if name in SYNTHETIC}
    entries |= {("converted", name) for name in checkpoints if name in PACKAGED and PACKAGED[name].gguf}
    return entries | {("onnx", name) for name in source_calls(record, "onnx", notebooks)}


def profile_entries(profile: str, notebooks: Path = NOTEBOOKS) -> set[tuple[str, str]]:
    """Return the (kind, model) entries a profile's lessons write into the cache."""
    return set().union(*(lesson_writes(record, profile, notebooks) for record in SYLLABUS))


def entry_bytes(kind: str, name: str) -> int:
    """Return a cache entry's weight bytes, counted on the meta device: checkpoints at bf16, ONNX exports at float32."""
    import transformers

    from helpers.memory import parameter_count
    from helpers.models import empty_model

    model = empty_model(name, getattr(transformers, model_class_name(name)))
    return (4 if kind == "onnx" else 2) * parameter_count(model)


def disk_size(size: int) -> str:
    """Return a size in bytes as disks are sold: MB below one GB, else GB with one decimal."""
    return f"{size / 1e6:.0f} MB" if size < 1e9 else f"{size / 1e9:.1f} GB"


def disk_markdown(entries: dict[str, set[tuple[str, str]]], sizes: dict[tuple[str, str], int]) -> str:
    """Return a Markdown table of each cache entry's size under the profiles that write it, and each profile's sum."""
    kinds = {"converted": "converted GGUF, bf16", "onnx": "ONNX export, float32", "synthetic": "synthetic, bf16"}
    rows = ["| cache entry | " + " | ".join(f"`{profile}`" for profile in entries) + " |", "|---|" + "---|" * len(entries)]
    for kind, name in sorted(set().union(*entries.values()), key=lambda entry: (sizes[entry], entry)):
        cells = (disk_size(sizes[kind, name]) if (kind, name) in used else "–" for used in entries.values())
        rows.append(f"| {name} ({kinds[kind]}) | " + " | ".join(cells) + " |")
    totals = (disk_size(sum(sizes[entry] for entry in used)) for used in entries.values())
    rows.append("| **the profile's cache** | " + " | ".join(f"**{total}**" for total in totals) + " |")
    return "\n".join(rows)


def disk_table(notebooks: Path = NOTEBOOKS) -> str:
    """Return the cache each profile fills, from the syllabus sizes and the lessons' sources, sized on the meta device."""
    entries = {profile: profile_entries(profile, notebooks) for profile in DISK_PROFILES}
    return disk_markdown(entries, {entry: entry_bytes(*entry) for entry in set().union(*entries.values())})


def warm_cache(profile: str) -> None:
    """Write every cache entry a profile's lessons use, printing where each model's weights come from."""
    import transformers

    from helpers.models import pretrained_path, weights_in_use
    from helpers.onnx_runtime import export_encoder

    for kind, name in sorted(profile_entries(profile)):
        model_class = getattr(transformers, model_class_name(name))
        if kind == "onnx":
            encoder = model_class.from_pretrained(pretrained_path(name, model_class), attn_implementation="eager")
            path, how = export_encoder(name, encoder)
            print(f"{name}: ONNX export <- {path} ({how})")
        else:
            print(weights_in_use(name, model_class))


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in DISK_PROFILES:
        raise SystemExit(f"usage: python -m coursetools.workshop {'|'.join(DISK_PROFILES)}")
    warm_cache(sys.argv[1])
