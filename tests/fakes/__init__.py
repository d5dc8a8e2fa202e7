"""Local fakes of the outside world for tests (never a real platform host)."""
