"""Who may use the tenants' admin (/merchant/): a login bound to one merchant; and the
summary tables behind the staff dashboards on the admin index."""

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy


class MerchantStaff(models.Model):
    """A tenant's login for the merchant back office, made by mall staff.

    Its user is never mall staff (is_staff and is_superuser stay False, the service and
    the site both check): the two admins have disjoint populations, so no permission
    granted in one can ever open the other.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="merchant_staff", verbose_name=gettext_lazy("login"),
    )
    merchant = models.ForeignKey(
        "members.Merchant", on_delete=models.PROTECT, related_name="staff", verbose_name=gettext_lazy("merchant"),
    )
    created_at = models.DateTimeField(gettext_lazy("created at"), auto_now_add=True)

    class Meta:
        verbose_name = gettext_lazy("merchant back-office login")
        verbose_name_plural = gettext_lazy("merchant back-office logins")
        ordering = ["merchant_id", "user_id"]

    def __str__(self):
        return f"{self.user} → {self.merchant}"


# --- the staff dashboards' summary tables (backoffice.dashboards) ---------------------
#
# Written only by backoffice.dashboards.refresh, on a schedule: never by a sale, so no
# sale ever waits on a row here. The admin index reads these tables alone.


class DashboardDay(models.Model):
    """One local day's figures at one level: the whole mall, a plaza, a merchant, or a
    merchant at one plaza. A refresh deletes and writes its days in one transaction.

    Counts of distinct members (``members_active``, ``customers``) hold for this row
    alone: the sum of several rows counts a member once per row. Points are the
    members' side of the ledger (the net change of their wallets and pending points):
    issued − redeemed − expired − taken back, summed over every day of the mall level,
    is what members hold.
    """

    class Level(models.TextChoices):
        MALL = "mall", gettext_lazy("whole mall")
        PLAZA = "plaza", gettext_lazy("plaza")
        MERCHANT = "merchant", gettext_lazy("merchant")
        PLAZA_MERCHANT = "plaza_merchant", gettext_lazy("merchant at a plaza")

    day = models.DateField(gettext_lazy("day"))
    level = models.CharField(gettext_lazy("level"), max_length=16, choices=Level.choices)
    plaza = models.ForeignKey(
        "members.Plaza", on_delete=models.CASCADE, null=True, blank=True, related_name="+", verbose_name=gettext_lazy("plaza"),
    )
    merchant = models.ForeignKey(
        "members.Merchant", on_delete=models.CASCADE, null=True, blank=True, related_name="+",
        verbose_name=gettext_lazy("merchant"),
    )
    # Members who joined that day (at the plaza: their join plaza; merchants: none).
    members_new = models.PositiveIntegerField(gettext_lazy("new members"), default=0)
    # Distinct members with a check-in, purchase or payment (members.segments' visits).
    members_active = models.PositiveIntegerField(gettext_lazy("active members"), default=0)
    checkins = models.PositiveIntegerField(gettext_lazy("check-ins"), default=0)
    # Every visit: check-ins, purchases, payments and redemptions.
    visits = models.PositiveIntegerField(gettext_lazy("visits"), default=0)
    # Distinct members who bought (a POS purchase or a paid order).
    customers = models.PositiveIntegerField(gettext_lazy("customers"), default=0)
    # Sales through the programme: POS purchases booked and orders paid, gross, in fen;
    # refunds booked that day apart.
    sales_count = models.PositiveIntegerField(gettext_lazy("sales"), default=0)
    sales_fen = models.BigIntegerField(gettext_lazy("sales (fen)"), default=0)
    refunds_fen = models.BigIntegerField(gettext_lazy("refunds (fen)"), default=0)
    # Earned and granted points, and staff credits.
    points_issued = models.BigIntegerField(gettext_lazy("points issued"), default=0)
    # Paid at tills, for orders and in the points mall, less what refunds gave back.
    points_redeemed = models.BigIntegerField(gettext_lazy("points redeemed"), default=0)
    points_expired = models.BigIntegerField(gettext_lazy("points expired"), default=0)
    # Taken back by refunds of sales, cancelled pending points, staff debits.
    points_taken_back = models.BigIntegerField(gettext_lazy("points taken back"), default=0)
    computed_at = models.DateTimeField(gettext_lazy("computed at"))

    class Meta:
        verbose_name = gettext_lazy("dashboard day")
        verbose_name_plural = gettext_lazy("dashboard days")
        ordering = ["day"]
        permissions = [("export_dashboard", "Can export the dashboards' figures")]
        constraints = [
            models.CheckConstraint(
                condition=(Q(level="mall") & Q(plaza__isnull=True) & Q(merchant__isnull=True))
                | (Q(level="plaza") & Q(plaza__isnull=False) & Q(merchant__isnull=True))
                | (Q(level="merchant") & Q(plaza__isnull=True) & Q(merchant__isnull=False))
                | (Q(level="plaza_merchant") & Q(plaza__isnull=False) & Q(merchant__isnull=False)),
                name="dashboard_day_level_matches_keys",
            ),
            # One row per day and level; each also serves the page's range reads.
            models.UniqueConstraint(fields=["day"], condition=Q(level="mall"), name="dashboard_day_mall_once"),
            models.UniqueConstraint(fields=["plaza", "day"], condition=Q(level="plaza"), name="dashboard_day_plaza_once"),
            models.UniqueConstraint(fields=["merchant", "day"], condition=Q(level="merchant"), name="dashboard_day_merchant_once"),
            models.UniqueConstraint(
                fields=["plaza", "merchant", "day"], condition=Q(level="plaza_merchant"), name="dashboard_day_plaza_merchant_once",
            ),
        ]

    def __str__(self):
        return f"{self.day} {self.level} {self.plaza_id or ''} {self.merchant_id or ''}".strip()


class DashboardRefresh(models.Model):
    """One run of the dashboards' refresh: the days it rewrote and the points members
    held when it ran (mall-wide: points are spendable at every plaza)."""

    started_at = models.DateTimeField(gettext_lazy("started at"))
    finished_at = models.DateTimeField(gettext_lazy("finished at"), null=True, blank=True, db_index=True)
    first_day = models.DateField(gettext_lazy("first day"))
    last_day = models.DateField(gettext_lazy("last day"))
    # Points in members' wallets, and mall-funded points still pending (not spendable
    # yet, owed all the same); points held by unpaid orders count as spent.
    points_spendable = models.BigIntegerField(gettext_lazy("points in wallets"), default=0)
    points_pending = models.BigIntegerField(gettext_lazy("points pending"), default=0)
    # (spendable + pending) × POINT_VALUE_FEN: what the outstanding points are worth.
    liability_fen = models.BigIntegerField(gettext_lazy("liability (fen)"), default=0)
    # The nightly segments run the sizes come from (members.SegmentRun.day); none yet: null.
    segments_day = models.DateField(gettext_lazy("segments of"), null=True, blank=True)

    class Meta:
        verbose_name = gettext_lazy("dashboard refresh")
        verbose_name_plural = gettext_lazy("dashboard refreshes")
        ordering = ["-started_at"]
        constraints = [models.CheckConstraint(condition=Q(last_day__gte=F("first_day")), name="dashboard_refresh_days_in_order")]

    def __str__(self):
        return f"refresh {self.started_at:%Y-%m-%d %H:%M} ({self.first_day}–{self.last_day})"


class DashboardMembers(models.Model):
    """Members by the plaza they joined at and lifecycle segment, as of the last refresh
    (all its rows are replaced by each refresh). Active members only: merged and banned
    ones are not counted."""

    # Null: members who joined elsewhere than at a plaza (a POS, a mini-program link).
    plaza = models.ForeignKey(
        "members.Plaza", on_delete=models.CASCADE, null=True, blank=True, related_name="+", verbose_name=gettext_lazy("plaza"),
    )
    # A members.Segment value; blank: joined since the last nightly segments run.
    segment = models.CharField(gettext_lazy("segment"), max_length=16, blank=True)
    members = models.PositiveIntegerField(gettext_lazy("members"), default=0)
    high_value_members = models.PositiveIntegerField(gettext_lazy("high-value members"), default=0)
    # With a visit of any kind in the 30 days before the refresh (Member.last_visit_at).
    active_30d = models.PositiveIntegerField(gettext_lazy("active in 30 days"), default=0)
    computed_at = models.DateTimeField(gettext_lazy("computed at"))

    class Meta:
        verbose_name = gettext_lazy("dashboard member count")
        verbose_name_plural = gettext_lazy("dashboard member counts")
        constraints = [
            models.UniqueConstraint(fields=["plaza", "segment"], condition=Q(plaza__isnull=False), name="dashboard_members_once"),
            models.UniqueConstraint(fields=["segment"], condition=Q(plaza__isnull=True), name="dashboard_members_no_plaza_once"),
            models.CheckConstraint(condition=Q(high_value_members__lte=F("members")), name="dashboard_members_high_value_within"),
        ]

    def __str__(self):
        return f"{self.plaza_id or '-'} {self.segment or '-'}: {self.members}"


class DashboardCampaign(models.Model):
    """A campaign's results (coupons.campaigns.campaign_results) as of the last refresh
    that measured it: counts and rates, never a member."""

    campaign = models.OneToOneField(
        "coupons.Campaign", on_delete=models.CASCADE, related_name="+", verbose_name=gettext_lazy("campaign"),
    )
    window_days = models.PositiveSmallIntegerField(gettext_lazy("window (days)"))
    treated = models.PositiveIntegerField(gettext_lazy("treated"), default=0)
    holdout = models.PositiveIntegerField(gettext_lazy("holdout"), default=0)
    redeemed = models.PositiveIntegerField(gettext_lazy("coupons redeemed"), default=0)
    treated_came_back = models.PositiveIntegerField(gettext_lazy("treated who came back"), default=0)
    holdout_came_back = models.PositiveIntegerField(gettext_lazy("holdout who came back"), default=0)
    # Treated minus holdout comeback rate, in basis points of a share (100 = 1 point of
    # percentage), with its 95 % interval; null until both groups have members.
    incremental_comeback_bp = models.IntegerField(gettext_lazy("incremental comeback (bp)"), null=True, blank=True)
    incremental_low_bp = models.IntegerField(null=True, blank=True)
    incremental_high_bp = models.IntegerField(null=True, blank=True)
    computed_at = models.DateTimeField(gettext_lazy("computed at"))

    class Meta:
        verbose_name = gettext_lazy("dashboard campaign result")
        verbose_name_plural = gettext_lazy("dashboard campaign results")

    def __str__(self):
        return f"campaign {self.campaign_id}: {self.treated} treated, {self.holdout} holdout"
