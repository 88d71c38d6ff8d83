"""
The errors a user can fix (bad input files, bad settings) and the command-line hook that shows them last.

Every problem with a user's data or settings is raised as one :py:class:`InputError` (``ValueError``) that carries
the file (or setting), the problem and what to do (``file``, ``problem``, ``hint``), and whose message reads
``<file>: <problem>``.
:py:class:`DatasetError` (data) and :py:class:`SettingsError` (bundle settings) are its two kinds.

At the command line, MONAI's config parser wraps any error raised while a component is built in
``RuntimeError("Failed to instantiate component ...")`` (or ``"Failed to evaluate ..."``), so the user's problem sits
in the middle of a long chained traceback. :py:func:`install_cli_excepthook` (run when a bundle's first ``imports``
entry, ``"$import monai_wsss.cli"``, is evaluated) installs a ``sys.excepthook`` that prints the usual traceback
unchanged and then, when an :py:class:`InputError` is found anywhere in the exception's ``__cause__`` /
``__context__`` chain, repeats that one message as the last lines::

    ...traceback as before...

    monai_wsss: the run stopped on a problem with its input or settings:
      /data/imagesTr/a.nii.gz: gzip data is corrupt (CRC check failed) ...
      What to do: re-export or re-copy the file ...

An exception without an :py:class:`InputError` in its chain is printed exactly as before.
"""

from __future__ import annotations

import sys
from types import TracebackType

__all__ = ["DatasetError", "InputError", "SettingsError", "find_input_error", "install_cli_excepthook"]


class InputError(ValueError):
    """
    A problem the user can fix in a file or a setting.

    Args:
        problem: what is wrong; when ``file`` is ``None`` it may already start with ``"<file>: "`` (the older
            one-string form).
        file: the file, folder or setting at fault.
        hint: what to do about it.

    Attributes:
        file, problem, hint: the three parts, so callers can show them separately. ``str(error)`` is
            ``"<file>: <problem>"``; the command-line hook adds the ``hint`` as a last ``What to do:`` line.
    """

    def __init__(self, problem: str, file: str | None = None, hint: str | None = None) -> None:
        self.file, self.problem, self.hint = file, problem, hint
        super().__init__(f"{file}: {problem}" if file is not None else problem)


class DatasetError(InputError):
    """A dataset problem (datalist, image or label file); the message names each file and what is wrong with it."""


class SettingsError(InputError):
    """A bundle setting (a config key or command-line override) of the wrong type, range or name."""


def find_input_error(exc: BaseException | None) -> InputError | None:
    """The first :py:class:`InputError` in ``exc`` or its ``__cause__`` / ``__context__`` chain, else ``None``."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, InputError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _format(err: InputError) -> str:
    lines = ["", "monai_wsss: the run stopped on a problem with its input or settings:"]
    text = f"{err.file}: {err.problem}" if err.file is not None else err.problem
    lines += ["  " + line for line in text.splitlines()]
    if err.hint:
        lines.append(f"  What to do: {err.hint}")
    return "\n".join(lines) + "\n"


def install_cli_excepthook() -> None:
    """
    Install (once) a ``sys.excepthook`` that prints the traceback as the previous hook does, then, if an
    :py:class:`InputError` is in the exception chain, its message (file, problem, what to do) as the last lines
    on stderr. Idempotent; exceptions without an :py:class:`InputError` are printed unchanged.
    """
    previous = sys.excepthook
    if getattr(previous, "_monai_wsss_hook", False):
        return

    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        previous(exc_type, exc, tb)
        err = find_input_error(exc)
        if err is not None:
            sys.stderr.write(_format(err))
            sys.stderr.flush()

    hook._monai_wsss_hook = True  # type: ignore[attr-defined]
    sys.excepthook = hook
