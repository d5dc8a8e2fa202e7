import sys

from django.apps import AppConfig
from django.utils.translation import gettext_lazy


class CoreConfig(AppConfig):
    verbose_name = gettext_lazy("Audit and operations")
    name = "core"

    def ready(self):
        from django.core.signals import request_finished
        from django_q.signals import post_execute, post_execute_in_worker, post_spawn, pre_enqueue, pre_execute

        from core import health, logs, metrics

        request_finished.connect(logs.request_id_clear, dispatch_uid="core.logs.request_id_clear")
        # A task carries the request id of the request that enqueued it (core.logs).
        pre_enqueue.connect(logs.task_request_id_attach, dispatch_uid="core.logs.task_request_id_attach")
        pre_execute.connect(logs.task_request_id_enter, dispatch_uid="core.logs.task_request_id_enter")
        post_execute_in_worker.connect(logs.task_request_id_leave, dispatch_uid="core.logs.task_request_id_leave")
        post_execute.connect(metrics.task_finished, dispatch_uid="core.metrics.task_finished")
        if running_qcluster():
            # Before the cluster forks: its processes inherit both (core.logs, core.health).
            logs.cluster_logs_in_english()
            post_spawn.connect(health.cluster_heartbeat_start, dispatch_uid="core.health.cluster_heartbeat_start")


def running_qcluster() -> bool:
    """This process is django-q2's ``qcluster`` (manage.py, django-admin or python -m django)."""
    return sys.argv[1:2] == ["qcluster"]
