"""Which of the course's libraries work with a runtime's torch: the floors, lesson 08's torchao question, and whether
torch's varlen attention runs here (lesson 01)."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import re

# The oldest torch each pinned library works with: transformers 5.17 turns its torch support off below 2.5
# (is_torch_available, transformers/utils/import_utils.py), bitsandbytes 0.50 requires torch>=2.4 (its METADATA), and
# torchao 0.17 and later load their kernels only on torch >= 2.11 (torchao/__init__.py).
NEEDS_TORCH = {"transformers": (2, 5), "bitsandbytes": (2, 4), "torchao": (2, 11)}
TORCHAO_OLDEST = (0, 17)  # pyproject.toml's floor: the torchao whose configs lesson 08 was written and run with
# The libraries whose versions the stored outputs and requirements/pins.txt must share (one set of versions, issue 30).
STAMPED = ("torch", "transformers", "accelerate", "bitsandbytes", "torchao")


def version_tuple(version: str) -> tuple[int, ...]:
    """Return a version's release numbers, e.g. (2, 11, 0) for '2.11.0+cu128', ignoring pre- and local parts."""
    match = re.match(r"\d+(\.\d+)*", version)
    if match is None:
        raise ValueError(f"not a version: {version!r}")
    return tuple(int(part) for part in match.group().split("."))


def dotted(release: tuple[int, ...]) -> str:
    """Return a release tuple as text, e.g. '2.11' for (2, 11)."""
    return ".".join(map(str, release))


def fits_torch(library: str, torch_version: str) -> bool:
    """Return whether a library's current releases work with this torch version (True for libraries without a floor)."""
    return version_tuple(torch_version) >= NEEDS_TORCH.get(library, (0,))


def torchao_problem(torch_version: str | None, torchao_version: str | None) -> str | None:
    """Return None when these installed versions can run lesson 08's torchao parts, else what they need and what is here."""
    floor = dotted(NEEDS_TORCH["torchao"])
    if torch_version is None:
        return "torch is not installed"
    if not fits_torch("torchao", torch_version):
        return (
            f"lesson 08's torchao parts need torch >= {floor} (torchao {dotted(TORCHAO_OLDEST)} and later load on "
            f"nothing older); this runtime has torch {torch_version}. In Colab pick a newer runtime version "
            f"(Runtime > Change runtime type); elsewhere: pip install 'torch>={floor}' torchao"
        )
    if torchao_version is None:
        return f"torchao is not installed (lesson 08 needs torchao >= {dotted(TORCHAO_OLDEST)}: pip install torchao)"
    if version_tuple(torchao_version) < TORCHAO_OLDEST:
        return f"torchao {torchao_version} is too old: lesson 08 needs torchao >= {dotted(TORCHAO_OLDEST)}"
    return None


def installed_version(name: str) -> str | None:
    """Return the installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def torchao_unusable() -> str | None:
    """Return None when lesson 08's torchao parts can run in this runtime, else one sentence on what they need and why not."""
    torchao = installed_version("torchao")
    problem = torchao_problem(installed_version("torch"), torchao)
    if problem is not None:
        return problem
    try:
        importlib.import_module("torchao.quantization")
    except Exception as error:  # noqa: BLE001 - a broken build fails in many ways; the lesson only needs the reason
        return f"torchao {torchao} does not import here: {type(error).__name__}: {error}"
    return None


def varlen_unusable(device: str, dtype: object) -> str | None:
    """Return what stops torch's varlen attention here in `dtype` (tried on two short sequences), None if nothing."""
    import torch

    from helpers.attention import MISSING_SDPA_BACKENDS
    from helpers.tables import reason

    if importlib.util.find_spec("torch.nn.attention.varlen") is None:
        return f"torch {torch.__version__} has no torch.nn.attention.varlen"
    if device == "cuda" and not torch.backends.cuda.flash_sdp_enabled():  # varlen_attn runs the flash kernel
        return MISSING_SDPA_BACKENDS.get("flash", "flash attention is switched off (torch.backends.cuda.flash_sdp_enabled())")
    from torch.nn.attention.varlen import varlen_attn

    tokens = torch.randn(5, 2, 32, device=device, dtype=dtype)  # 5 tokens, 2 heads of 32: sequences of 2 and 3 tokens
    starts = torch.tensor([0, 2, 5], dtype=torch.int32, device=device)
    try:
        varlen_attn(tokens, tokens, tokens, starts, starts, 3, 3)
    except Exception as err:  # noqa: BLE001  (whatever stops it is the reason given)
        return reason(err)
    return None


def stamped_versions(text: str) -> list[tuple[str, str]]:
    """Return each (library, version) of STAMPED that a stamp ('| torch 2.11.0+cu130 |') or a report line names."""
    found = []
    for name in STAMPED:
        # a stamp's part "| name version", or a line of the machine report: "name", two or more spaces, "version"
        pattern = rf"(?:(?<=\| ){name} |^{name}  +)(\d[\w.+-]*)(?= \||$)"
        found += [(name, version) for version in re.findall(pattern, text, re.MULTILINE)]
    return found


def unpinned(found: list[tuple[str, str]], pinned: dict[str, str]) -> list[str]:
    """Return each found version whose release numbers differ from the pin's, as 'torch 2.13.0 (pinned 2.11.0)'."""
    return [
        f"{name} {version} (pinned {pinned.get(name)})"
        for name, version in found
        if name not in pinned or version_tuple(version) != version_tuple(pinned[name])
    ]
