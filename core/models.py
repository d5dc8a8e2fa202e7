"""Shared tables that belong to no app: the counters behind the rate limits."""

from django.db import models


class RateCounter(models.Model):
    """One counter of one fixed window (core.ratelimit), when there is no Redis.

    Written only by core.ratelimit's upsert, one atomic statement per hit; a window's
    number is part of its key, so a row never outlives its meaning and the purge is
    only housekeeping.
    """

    # The counter's name and window (e.g. "throttle:merchant-key:ab12cd@60:29437012"),
    # or a digest of it when longer than 200 characters.
    key = models.CharField(max_length=200, primary_key=True)
    # Hits in the window; may dip below the number of admitted attempts while a
    # reservation is being given back, never below zero for long.
    count = models.BigIntegerField()
    # The end of the window: rows past it are dead and deleted by counters_purge().
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name = "rate-limit counter"

    def __str__(self):
        return f"{self.key} = {self.count}"
