"""seed_demo's history, booked through the real services at the past instants the plans
say: POS sales with the member code scanned (so tiers move) or by number, orders paid
through the sandbox cashier, check-ins, refunds, redemptions with a scanned code, staff
adjustments and promotion gifts. Nothing is written around the services, so the ledger,
the merchants' daily reports and settlements, the visits (segments, campaign results)
and the tiers tell one story.

Idempotent: every operation has a fixed key in the ``demo:`` namespace (the POS ones
behind the merchant API's ``api:<merchant>:`` prefix), and keys booked already are read
once up front and skipped, so a second run books nothing and costs little.
"""

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError
from members import checkin, codes, ledger
from members.models import Checkin, Lot, Member, PointsTransaction
from payments import services as sales
from payments.models import Order, Purchase

from members.management.commands._seed_shoppers import WELCOME_POINTS, Event, Plan

SANDBOX = "sandbox"


class Booker:
    """Books plans' events in time order, member by member, ``batch`` members a transaction."""

    def __init__(self, *, staff, site_url: str, orders: bool):
        self.staff, self.site_url, self.orders = staff, site_url, orders
        self.done = set(
            PointsTransaction.objects.filter(idempotency_key__contains="demo:").values_list("idempotency_key", flat=True)
        )
        self.checked_in = set(
            Checkin.objects.filter(member__identities__external_id__startswith="demo-openid-")
            .values_list("member_id", "plaza_id", "day")
        )
        self.ordered = set(Order.objects.filter(order_ref__startswith="DO").values_list("order_ref", flat=True))
        self.counts: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        # The purchases booked in this run or before, by (member, n): refunds find their sale here.
        self.purchases: dict[tuple[int, int], Purchase] = {}

    def book(self, members: list[Member], plans: list[Plan], *, before: datetime | None = None,
             after: datetime | None = None, batch: int = 50, progress=None) -> None:
        """The events in [after, before) of every plan."""
        for start in range(0, len(members), batch):
            with transaction.atomic():
                for member, plan in zip(members[start:start + batch], plans[start:start + batch]):
                    if after is None:
                        self._welcome(member)
                    for event in plan.events:
                        if (before is None or event.at < before) and (after is None or event.at >= after):
                            self._event(member, event)
            if progress is not None:
                progress(min(start + batch, len(members)), len(members))

    def _count(self, kind: str, refused: str | None = None) -> None:
        if refused:
            self.refused[refused] = self.refused.get(refused, 0) + 1
        else:
            self.counts[kind] = self.counts.get(kind, 0) + 1

    def _welcome(self, member: Member) -> None:
        key = f"demo:welcome:{member.pk}"
        if key not in self.done:
            ledger.points_grant(member=member, points=WELCOME_POINTS, reason="welcome gift", idempotency_key=key,
                                at=member.created_at)

    def _event(self, member: Member, event: Event) -> None:
        try:
            with transaction.atomic():
                getattr(self, f"_{event.kind}")(member, event)
        except ApplicationError as exc:
            # A plan may ask for more than the books allow (a redemption beyond the balance
            # then): the service refuses it, as a till would, and the demo goes on.
            self._count(event.kind, refused=f"{event.kind}: {exc.code}")

    def _sale(self, member: Member, event: Event) -> None:
        store = event.store
        key = f"demo:sale:{member.pk}:{event.n}"
        if sales.ledger_key(store.merchant, key) in self.done:
            return
        self.purchases[(member.pk, event.n)] = sales.purchase_record(
            merchant=store.merchant, store=store, member=member, amount_fen=event.amount_fen, idempotency_key=key,
            order_ref=f"D{member.pk}-{event.n}", member_present=event.present, at=event.at, push=False,
        )
        self._count("sale")

    def _refund(self, member: Member, event: Event) -> None:
        store = event.store
        key = f"demo:refund:{member.pk}:{event.n}"
        if sales.ledger_key(store.merchant, key) in self.done:
            return
        purchase = self.purchases.get((member.pk, event.of)) or Purchase.objects.select_related("earn", "merchant", "member").filter(
            merchant=store.merchant, order_ref=f"D{member.pk}-{event.of}"
        ).first()
        if purchase is None:
            return
        sales.purchase_refund(purchase=purchase, amount_fen=min(event.amount_fen, purchase.amount_fen - purchase.refunded_fen),
                              idempotency_key=key, at=event.at)
        self._count("refund")

    def _redeem(self, member: Member, event: Event) -> None:
        store = event.store
        key = f"demo:redeem:{member.pk}:{event.n}"
        if sales.ledger_key(store.merchant, key) in self.done:
            return
        # The shopper shows their member code at the till; the cashier scans it.
        code = codes.member_code_issue(member=member, now=event.at).code
        sales.redemption_record(
            merchant=store.merchant, store=store, member=member, points=event.points, idempotency_key=key,
            order_ref=f"DR{member.pk}-{event.n}", member_code=code, at=event.at, push=False,
        )
        self._count("redeem")

    def _checkin(self, member: Member, event: Event) -> None:
        at = event.at
        if (member.pk, event.plaza.pk, timezone.localdate(at)) in self.checked_in:
            return
        checkin.checkin(member=member, plaza=event.plaza, push=False, at=at)
        self._count("checkin")

    def _order(self, member: Member, event: Event) -> None:
        """A payment at the shop's QR through the sandbox cashier: the order, the trade
        paid, and the platform's word of it, each at the plan's instant."""
        if not self.orders:
            event.kind = "sale"
            return self._sale(member, event)
        from payments import orders
        from payments.gateways import sandbox

        ref = f"DO{member.pk}-{event.n}"
        if ref in self.ordered:
            return
        order = orders.order_create(
            store=event.store, amount_fen=event.amount_fen, channel=SANDBOX, client="h5", site_url=self.site_url,
            member=member, order_ref=ref, at=event.at,
        )
        paid_at = event.at + timedelta(seconds=40)
        if sandbox.trade_pay(out_trade_no=order.out_trade_no, at=paid_at) is not None:
            payment = sandbox.SandboxGateway().query(out_trade_no=order.out_trade_no)
            orders.order_payment_confirm(gateway=SANDBOX, payment=payment, at=paid_at)
        self._count("order")

    def _adjust(self, member: Member, event: Event) -> None:
        key = f"demo:adjust:{member.pk}:{event.n}"
        if key in self.done:
            return
        ledger.points_adjust(member=member, points=event.points, operator=self.staff, reason=event.reason,
                             idempotency_key=key, at=event.at)
        self._count("adjust")

    def _grant(self, member: Member, event: Event) -> None:
        key = f"demo:grant:{member.pk}:{event.n}"
        if key in self.done:
            return
        ledger.points_grant(member=member, points=event.points, reason=event.reason, idempotency_key=key,
                            expires_at=event.expires_at, at=event.at)
        self._count("grant")


def releases_book(*, until: datetime) -> int:
    """Release the tier extras whose refund window ended before ``until``, each at the
    end of its window (what the every-few-minutes job would have done then)."""
    released = 0
    lots = list(
        Lot.objects.filter(status=Lot.Status.PENDING, remaining__gt=0, releases_at__lte=until)
        .order_by("releases_at", "pk")
    )
    for start in range(0, len(lots), 200):
        with transaction.atomic():
            for lot in lots[start:start + 200]:
                try:
                    with transaction.atomic():
                        if ledger.points_release_lot(lot=lot, at=lot.releases_at) is not None:
                            released += 1
                except ApplicationError:
                    continue
    return released


def expiries_book(*, since: datetime, until: datetime) -> int:
    """Expire the lots that ran out between ``since`` and ``until``, day by day at the
    night's job (so the charts show expiry when it happened)."""
    expired = 0
    day = since
    while day <= until:
        expired += ledger.points_expire_due(at=day)
        day += timedelta(days=1)
    return expired
