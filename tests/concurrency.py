"""Racing threads for the concurrency tests: each on its own database connection,
all released at one barrier so that they really race."""

import threading

from django.db import connection


def race(calls, *, session_sql=(), timeout: float = 120, name: str = "race") -> list:
    """Run each of ``calls`` in its own thread and connection, all released at once.

    Returns, in order, what each call returned or the exception it raised. Each thread
    opens its connection (and runs ``session_sql`` on it) before the start line, so that
    connecting does not stagger the start, and closes it at the end.
    """
    start_line = threading.Barrier(len(calls))
    outcomes = [None] * len(calls)

    def run(i, call):
        started = False
        try:
            connection.ensure_connection()
            with connection.cursor() as cursor:
                for sql in session_sql:
                    cursor.execute(sql)
            start_line.wait(timeout=30)
            started = True
            outcomes[i] = call()
        except BaseException as exc:  # noqa: BLE001 — the outcome is what the test inspects
            if not started:
                start_line.abort()
            outcomes[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call), name=f"{name}-{i}") for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a racing thread never finished"
    return outcomes


def race_all_succeed(calls, **kwargs) -> list:
    """``race``, and every call returned (none raised)."""
    outcomes = race(calls, **kwargs)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    assert not failures, failures
    return outcomes
