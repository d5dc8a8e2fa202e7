"""A progress bar for management commands, without a dependency."""

from django.core.management.base import OutputWrapper


class Progress:
    """One line redrawn with \\r on a terminal; elsewhere (cron mail, logs) a plain line
    every tenth of the way, so the output stays short and readable."""

    WIDTH = 30

    def __init__(self, out: OutputWrapper, label: str, total: int):
        self.out, self.label, self.total = out, label, total
        self.done = 0
        self.tty = out.isatty()
        self.every = max(1, total // 10)
        self._shown = 0

    def advance(self, steps: int = 1) -> None:
        self.update(self.done + steps)

    def update(self, done: int, total: int | None = None) -> None:
        """``done`` of ``total`` (a job that learns its total as it goes may pass it)."""
        if total is not None and total != self.total:
            self.total, self.every = total, max(1, total // 10)
        self.done = done
        if self.tty:
            filled = self.WIDTH * self.done // max(self.total, 1)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self.out.write(f"\r{self.label} [{bar}] {self.done}/{self.total}", ending="")
            self.out.flush()
        elif self.done // self.every > self._shown // self.every or self.done == self.total:
            self.out.write(f"{self.label}: {self.done}/{self.total}")
        self._shown = self.done

    def end_line(self) -> None:
        """End a terminal's bar line: at the end, and before another line is printed."""
        if self.tty and self.done:
            self.out.write("")


class Bars:
    """A job's ``progress`` callback for a command: a bar per phase, one after the other,
    each made when its phase first reports (so it knows its total). Call as
    ``bars(done, total)`` for a job of one phase, or ``bars(phase, done, total)``;
    ``close()`` at the end (in a ``finally``)."""

    def __init__(self, out: OutputWrapper, label: str = "", phases: dict[str, str] | None = None):
        self.out, self.label, self.phases = out, label, phases or {}
        self.bar: Progress | None = None
        self.phase = None

    def __call__(self, *args) -> None:
        phase, done, total = args if len(args) == 3 else (None, *args)
        if self.bar is None or phase != self.phase:
            self.close()
            name = self.phases.get(phase, phase) if phase is not None else ""
            self.bar = Progress(self.out, ": ".join(str(part) for part in (self.label, name) if part), total)  # lazy labels too
            self.phase = phase
        if total > 0:
            self.bar.update(done, total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.end_line()
