"""Keeping the library in step with folders as they change: ``rag ingest --watch PATH...``.

File events come from watchfiles (inotify, FSEvents, ReadDirectoryChangesW),
gathered over ``debounce_ms`` so a burst (a copied folder, an editor saving
through a temporary file) becomes one batch. Each batch is applied through the
same incremental pipeline as ``rag ingest``: files that appeared or changed are
read (a file touched but not changed costs one hash), files that vanished are
forgotten, a move is both. One line is logged per file that changed in the index.

A watched folder that disappears (an unmounted drive, a folder renamed away) is
waited for, its documents kept; when it comes back it is ingested again, which
applies whatever changed meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from rag.ingest.loaders import is_supported
from rag.ingest.pipeline import Ingestor, discover, forget
from rag.ingest.summary import Summary

Log = Callable[[str], None]
_TICK_MS = 500  # how often the watcher wakes to notice a vanished folder or a stop


def _print(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)


class Watcher:
    def __init__(
        self,
        ingestor: Ingestor,
        paths: Sequence[Path],
        exclude: Iterable[Path] = (),
        *,
        log: Log = _print,
        debounce_ms: int = 800,
    ) -> None:
        self.ingestor = ingestor
        self.roots = [p.expanduser().resolve() for p in paths]
        self.exclude = [p.expanduser().resolve() for p in exclude]
        self.log = log
        self.debounce_ms = debounce_ms

    def run(self, stop: threading.Event | None = None) -> None:
        """Watch until ``stop`` is set (or Ctrl-C, which is raised as KeyboardInterrupt)."""
        import watchfiles

        stop = stop or threading.Event()
        present = self._present()  # synced once each watcher is live, below
        for root in set(self.roots) - present:
            self.log(f"waiting for {root} to appear")
        announced = False
        while not stop.is_set():
            if not present:
                stop.wait(_TICK_MS / 1000)
                present = self._changed_roots(present)
                continue
            started = False
            for changes in watchfiles.watch(
                *self._watched(present),
                watch_filter=self._wanted,
                debounce=self.debounce_ms,
                stop_event=stop,
                rust_timeout=_TICK_MS,
                yield_on_timeout=True,
                ignore_permission_denied=True,
            ):
                if not started:
                    # The watcher is live only now: bring the index up to date with every
                    # present root (new, back, or changed while it started), once.
                    started = True
                    self._sync(present)
                    if not announced:
                        announced = True
                        self.log(f"watching {len(self.roots)} path(s); Ctrl-C stops")
                if changes:
                    self._apply({Path(p) for _, p in changes})
                now = self._changed_roots(present)
                if now != present:
                    present = now
                    break  # watch the new set of folders

    def _present(self) -> set[Path]:
        return {r for r in self.roots if r.exists()}

    def _changed_roots(self, before: set[Path]) -> set[Path]:
        now = self._present()
        for root in before - now:
            self.log(f"gone: {root} (its documents are kept; waiting for it to come back)")
        for root in now - before:
            self.log(f"back: {root}")  # synced when the watcher restarts with it
        return now

    def _watched(self, roots: set[Path]) -> list[Path]:
        # A file is watched through its folder: editors replace files rather than write them.
        return sorted({r if r.is_dir() else r.parent for r in roots})

    def _inside(self, path: Path) -> bool:
        for root in self.roots:
            if path == root:
                return True
            if path.is_relative_to(root):  # hidden files and folders are never documents
                return not any(part.startswith(".") for part in path.relative_to(root).parts)
        return False

    def _wanted(self, change: object, name: str) -> bool:
        path = Path(name)
        if any(path.is_relative_to(x) for x in self.exclude) or not self._inside(path):
            return False
        # A vanished path may have been a folder: keep it, forgetting is cheap.
        return is_supported(path) or path.is_dir() or not path.exists()

    def _sync(self, roots: set[Path]) -> None:
        if roots:
            summary = self.ingestor.run(discover(sorted(roots), self.exclude), progress=False)
            self._report(summary)

    def _apply(self, paths: set[Path]) -> None:
        present = sorted(p for p in paths if p.exists() and (p.is_dir() or is_supported(p)))
        vanished = sorted(p for p in paths if not p.exists())
        summary = Summary()
        if present:
            summary = self.ingestor.run(discover(present, self.exclude), progress=False)
        forgotten = forget(self.ingestor.library, vanished)
        summary.removed = sorted(set(summary.removed) | set(forgotten))
        self._report(summary)

    def _report(self, summary: Summary) -> None:
        # Removals first: a file moved reads as "removed old", then "added new".
        for path in summary.removed:
            self.log(f"removed {path}")
        for path in summary.added:
            self.log(f"added {path}")
        for path in summary.updated:
            self.log(f"updated {path}")
        for path, reason in summary.failed.items():
            self.log(f"failed {path}: {reason}")


def watch(
    ingestor: Ingestor, paths: Sequence[Path], exclude: Iterable[Path] = (), log: Log = _print
) -> int:
    """The command: watch until Ctrl-C, then say so and succeed."""
    try:
        Watcher(ingestor, paths, exclude, log=log).run()
    except KeyboardInterrupt:
        log("stopped watching")
    return 0
