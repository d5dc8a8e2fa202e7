"""Ask the platforms about what their notifications never told us.

Orders still awaiting payment after ``--older-than-minutes`` are queried: a payment
whose notification was lost is booked, an order past its time is closed (its held
points given back). Then refunds still pending are sent again (the same refund
numbers: the platforms make each once). Safe to run twice, and beside the schedule:
every step is a service that moves an order or refund only from the state it leaves.
"""

import argparse
import logging
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

from django.core.management.base import BaseCommand
from django.utils import timezone

from core.errors import ApplicationError
from core.progress import Progress
from payments import orders, refunds
from payments.models import Order, OrderRefund

logger = logging.getLogger(__name__)

GATEWAYS = [name for name in Order.Gateway.values if name != Order.Gateway.POINTS]


def _count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value

    return parse


class Command(BaseCommand):
    help = (
        "Query the platforms about unpaid orders older than --older-than-minutes (book lost payments, close expired "
        "orders), then send pending refunds again. Prints a summary; exits 0 unless the arguments are bad."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than-minutes", type=_count(0), default=5,
                            help="only orders and refunds at least this old (default 5: leave the ones in flight alone)")
        parser.add_argument("--gateway", choices=GATEWAYS, default=None, help="only this gateway's orders and refunds")
        parser.add_argument("--limit", type=_count(1), default=None,
                            help="at most this many orders and this many refunds, oldest first (default: all)")

    def handle(self, *args, older_than_minutes, gateway, limit, **options):
        cutoff = timezone.now() - timedelta(minutes=older_than_minutes)
        waiting = Order.objects.filter(status=Order.Status.CREATED, created_at__lte=cutoff).exclude(gateway=Order.Gateway.POINTS)
        pending = OrderRefund.objects.filter(status=OrderRefund.Status.PENDING, created_at__lte=cutoff)
        if gateway:
            waiting = waiting.filter(gateway=gateway)
            pending = pending.filter(order__gateway=gateway)
        order_ids = list(waiting.order_by("created_at", "pk").values_list("pk", flat=True)[:limit])
        refund_ids = list(pending.order_by("created_at", "pk").values_list("pk", flat=True)[:limit])

        order_tally = self._run("orders", order_ids, self._order_reconcile)
        refund_tally = self._run("refunds", refund_ids, self._refund_submit)

        self.stdout.write(
            f"orders: {len(order_ids)} checked, {order_tally['paid']} paid, {order_tally['closed']} closed, "
            f"{order_tally['pending']} still pending, {order_tally['error']} errors"
            + (f", {order_tally['skipped']} settled meanwhile" if order_tally["skipped"] else "")
        )
        self.stdout.write(
            f"refunds: {len(refund_ids)} checked, {refund_tally['succeeded']} succeeded, {refund_tally['failed']} failed, "
            f"{refund_tally['pending']} still pending, {refund_tally['error']} errors"
        )

    def _run(self, label: str, ids: list[int], step: Callable[[int], str]) -> Counter:
        """``step`` for each id; one that fails is counted as an error and the run goes on."""
        tally = Counter()
        progress = Progress(self.stdout, label, len(ids))
        for pk in ids:
            try:
                tally[step(pk)] += 1
            except (ApplicationError, orders.PaymentMismatch) as exc:
                tally["error"] += 1
                reason = f"{exc.code}: {exc.message}" if isinstance(exc, ApplicationError) else f"payment_mismatch: {exc.reason}"
                progress.end_line()
                self.stderr.write(f"{label} #{pk}: {reason}")
            except Exception:
                # One bad record must not stop the sweep; the traceback goes to the log.
                logger.exception("payments_reconcile: %s #%s failed", label, pk)
                tally["error"] += 1
                progress.end_line()
                self.stderr.write(f"{label} #{pk}: unexpected error (see the log)")
            progress.advance()
        progress.end_line()
        return tally

    def _order_reconcile(self, pk: int) -> str:
        """paid, closed, pending, or skipped (paid or closed by someone else meanwhile)."""
        order = Order.objects.select_related("merchant").get(pk=pk)
        if orders.order_reconcile(order=order) == "skipped":
            return "skipped"
        # order_close books a payment it finds instead of closing: the status says which.
        status = Order.objects.values_list("status", flat=True).get(pk=pk)
        return {Order.Status.CREATED: "pending", Order.Status.CLOSED: "closed"}.get(status, "paid")

    def _refund_submit(self, pk: int) -> str:
        return refunds.refund_submit(refund=OrderRefund.objects.get(pk=pk)).status
