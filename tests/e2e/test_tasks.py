"""What the two task clusters did during the run, looked at last (pytest runs this module
after the others): the schedules the migrations made ran, once each; every push went
once; no task and no push failed; /metrics counts the clusters' work beside the web
workers'."""

import re

import pytest

from tests.e2e.test_closed_loop import poll

pytestmark = pytest.mark.e2e

SCHEDULER_TIMEOUT = 90  # django-q2's scheduler looks every 30 s; the machine may be busy


def test_the_cluster_runs_every_schedule_the_migrations_made(deployment):
    db = deployment.db
    schedules = db.rows("SELECT name, func FROM django_q_schedule ORDER BY name")
    assert schedules, "migrate made no schedules"

    def runs():
        return db.rows(
            "SELECT s.name, t.success FROM django_q_schedule s LEFT JOIN django_q_task t ON t.id = s.task ORDER BY s.name"
        )

    done = poll(runs, lambda rows: all(success is not None for _name, success in rows), timeout=SCHEDULER_TIMEOUT, every=1)

    assert [name for name, success in done if success is None] == [], "never ran (or never finished)"
    assert [name for name, success in done if not success] == [], "failed"


def test_two_clusters_ran_each_slow_schedule_once_and_sent_each_push_once(deployment):
    """Both task hosts run django-q2's scheduler on the same ticks; a schedule fires once
    (its row is locked) and a push is delivered once (its row is claimed)."""
    db = deployment.db
    poll(lambda: db.rows("SELECT task FROM django_q_schedule WHERE task IS NULL"), lambda rows: not rows,
         timeout=SCHEDULER_TIMEOUT, every=1)
    runs = db.rows(
        "SELECT s.name, s.schedule_type, s.minutes, COUNT(t.id) FROM django_q_schedule s "
        "LEFT JOIN django_q_task t ON t.func = s.func GROUP BY s.name, s.schedule_type, s.minutes ORDER BY s.name"
    )
    # Whatever comes round less often than every 10 minutes has had one turn in this run.
    slow = [(name, count) for name, kind, minutes, count in runs if kind != "I" or (minutes or 0) >= 10]
    assert slow and all(count == 1 for _name, count in slow), runs

    sent = [(request.json()["touser"], request.json()["text"]["content"])
            for request in deployment.platforms.requests_to("/cgi-bin/message/custom/send")]
    assert sent, "no push was delivered in this run"
    assert len(sent) == len(set(sent)), [message for message in sent if sent.count(message) > 1]


def test_no_task_and_no_push_failed(deployment):
    db = deployment.db
    failed_tasks = db.rows("SELECT func, result FROM django_q_task WHERE success = %s", False)
    failed_pushes = db.rows(
        "SELECT event, status, attempts, last_error FROM members_push WHERE status IN ('failed', 'sending') "
        "OR (status = 'pending' AND attempts > 0)"
    )

    assert failed_tasks == []
    assert failed_pushes == []


def test_metrics_add_up_the_cluster_with_the_web_workers(deployment):
    """PROMETHEUS_MULTIPROC_DIR, as docs/deploy/example.env sets it: one directory per host."""
    if "METRICS_TOKEN" not in deployment.env:
        pytest.skip("docs/deploy/example.env sets no METRICS_TOKEN")
    response = deployment.site.get("/metrics", headers={"Authorization": f"Bearer {deployment.keys.metrics_token}"})
    if response.status_code == 404:
        pytest.skip("/metrics is not built yet")
    assert response.status_code == 200, response.status_code

    delivered = re.search(r'^o2o_tasks_finished_total\{[^}]*func="members\.tasks\.push_deliver"[^}]*result="success"[^}]*\} (\S+)$',
                          response.text, flags=re.MULTILINE)
    requests_served = re.search(r"^o2o_http_request_duration_seconds_count\{[^}]*\} (\S+)$", response.text, flags=re.MULTILINE)
    assert delivered and float(delivered.group(1)) >= 1, "the cluster's tasks are not in /metrics"
    assert requests_served and float(requests_served.group(1)) >= 1, "the web workers' requests are not in /metrics"
