"""Sliders where exploring beats reading: live ipywidgets in Jupyter and Colab, one static view everywhere else."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from coursetools.settings import STATIC


def widgets_render() -> bool:
    """Return whether this kernel should show live widgets: ipywidgets present, a kernel running, COURSE_STATIC unset."""
    if os.environ.get(STATIC):
        return False
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def control(options: Sequence[Any], value: Any) -> Any:
    """Return the widget for one control: a slider over numbers, a menu over anything else."""
    import ipywidgets

    if all(isinstance(option, int | float) for option in options):
        return ipywidgets.SelectionSlider(options=list(options), value=value, continuous_update=False)
    return ipywidgets.Dropdown(options=list(options), value=value)


def explore(view: Callable[..., None], **controls: tuple[Sequence[Any], Any]) -> None:
    """Show view with one control per keyword, given as (options, start value); without widgets, show it once at the start values."""
    start = {name: value for name, (options, value) in controls.items()}
    for name, (options, value) in controls.items():
        if value not in options:
            raise ValueError(f"start value {value!r} of {name!r} is not among its options {list(options)}")
    if widgets_render():
        import ipywidgets

        def show(**values: Any) -> None:  # a plain function: interact cannot inspect functools.partial views
            view(**values)

        ipywidgets.interact(show, **{name: control(*spec) for name, spec in controls.items()})
        return
    shown = ", ".join(f"{name}={value}" for name, value in start.items())
    print(f"static view at {shown}: run the notebook in Jupyter or Colab to move the controls "
          f"({', '.join(f'{name} over {list(options)}' for name, (options, _) in controls.items())})")
    view(**start)
