"""What the two command lines share: the --cpus and --progress options, errors on stderr."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import click

from face_engine.compat.batch import ImageFileError

F = TypeVar("F", bound=Callable[..., Any])


def _cpus(_ctx: click.Context, _param: click.Parameter, value: int) -> int:
    if value == -1:
        return os.cpu_count() or 1
    if value < 1:
        raise click.BadParameter("must be -1 (every core) or a positive number of cores")
    return value


def cpus_option(func: F) -> F:
    return click.option(
        "--cpus", default=1, show_default=True, callback=_cpus,
        help="Cores that read and detect images in parallel (threads); -1: every core. The networks "
             "use every core (or FACE_ENGINE_THREADS) whatever this is.",
    )(func)


def progress_option(func: F) -> F:
    return click.option(
        "--progress", is_flag=True, default=False,
        help="Show progress (images done, rate, time left) on stderr; the results on stdout are unchanged.",
    )(func)


class Progress:
    """A tqdm bar on stderr when asked for, else nothing."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self._bar: Any = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=label, unit="image", file=sys.stderr, dynamic_ncols=True)

    def step(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class Readable:
    """Iterates over the readable images' ``(path, result)`` of a batch, stepping the progress bar
    and naming each unreadable image on stderr as it comes (``failed`` then turns True)."""

    def __init__(self, results: Iterable[tuple[str, Any]], progress: bool, total: int, label: str) -> None:
        self._results, self._bar = results, Progress(progress, total, label)
        self.failed = False

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        try:
            for path, found in self._results:
                self._bar.step()
                if isinstance(found, ImageFileError):
                    unreadable(found)
                    self.failed = True
                    continue
                yield path, found
        finally:
            self._bar.close()


def unreadable(error: ImageFileError) -> None:
    click.echo(f"WARNING: cannot read {error.path} ({error.reason}). Ignoring file.", err=True)


def fail(message: str) -> None:
    """Stop with a one-line error and status 1 (click's own usage errors exit with 2)."""
    click.echo(f"Error: {message}", err=True)
    sys.exit(1)
