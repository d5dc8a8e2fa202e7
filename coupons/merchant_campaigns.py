"""Merchants' campaigns: a merchant asks for one through the merchant API, staff approve
it, it runs as any campaign (coupons.campaigns), and the merchant sees counts, never a member.

What keeps a merchant from learning about one member, however many requests it sends:

1. **A minimum.** An audience below ``MERCHANT_CAMPAIGN_MIN_AUDIENCE`` (50) is refused,
   saying only "fewer than 50"; approval counts again and refuses the same way.
2. **Rounded figures.** Every count a merchant sees is rounded down (``figure_rounded``):
   to tens, above 1,000 to two significant figures; money to ¥100, above ¥10,000 to two
   significant figures. Two audiences a few members apart mostly show the
   same figure; where they straddle a step, the merchant learns that the difference
   crossed it, not who made it. Exact counts are for staff (the admin).
3. **Only groups of the minimum.** A campaign's results per group (treated, holdout) are
   shown only for a group of at least the minimum, else null; the incremental estimates
   only when both groups are.
4. **No overlapping campaigns.** A member is targeted by at most one campaign (the
   mall's included) per cooldown, never shorter than the mall's default here, so two
   campaigns' results cannot be set side by side member by member.
5. **Few requests, all read by people.** Each request counts an audience: at most
   ``MERCHANT_CAMPAIGN_REQUESTS_PER_DAY`` a merchant a day, refused ones included, and
   ``MERCHANT_CAMPAIGN_OPEN_MAX`` pending or active at once; staff read each one.

A merchant's campaign issues only its own, merchant-funded, active template; it cannot
name a template of another merchant or the mall (not found: whether it exists is not
told).
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils.translation import gettext

from core.errors import ApplicationError, Conflict, NotFound
from core.ratelimit import counter_hit
from coupons import campaigns, services
from coupons.models import Campaign, CouponTemplate
from members import ledger
from members.models import Merchant

OPEN = (Campaign.Status.PENDING, Campaign.Status.ACTIVE, Campaign.Status.PAUSED)
MONEY_STEP_FEN = 10_000  # ¥100
COUNT_STEP = 10
MAX_LAPSED_DAYS = 3650
DAY_SECONDS = 24 * 3600
# An audience is counted up to here (a campaign reaches at most MERCHANT_CAMPAIGN_MAX_TARGETS):
# counting every member of a 100-million mall inside a web request would take too long.
AUDIENCE_COUNT_MAX = 100_000


class MerchantTemplateNotFound(NotFound):
    """No such coupon template of this merchant."""

    code = "coupon_template_not_found"


class TemplateNotMerchantFunded(Conflict):
    """A campaign's coupon must be funded by the merchant (funded_by = merchant)."""

    code = "coupon_template_not_merchant_funded"


class CampaignNotFound(NotFound):
    """No such campaign of this merchant."""

    code = "campaign_not_found"


class InvalidSegments(ApplicationError):
    """segments must be a list of known segment names."""

    code = "invalid_segments"


class InvalidCampaignRequest(ApplicationError):
    """The campaign's window, cap, cooldown or lapsed rule is out of range."""

    code = "invalid_campaign"


class AudienceTooSmall(Conflict):
    """The audience is too small: a campaign must reach at least the minimum number of members."""

    code = "audience_too_small"


class TooManyCampaigns(ApplicationError):
    """Too many campaigns pending or running: cancel one or wait for one to end."""

    code = "too_many_campaigns"
    status = 429


class TooManyCampaignRequests(ApplicationError):
    """Too many campaign requests today; try again tomorrow."""

    code = "too_many_campaign_requests"
    status = 429


class CampaignNotPending(Conflict):
    """This campaign is not awaiting approval."""

    code = "campaign_not_pending"


class CampaignEnded(Conflict):
    """This campaign's end has passed."""

    code = "campaign_ended"


class CampaignNotCancellable(Conflict):
    """This campaign was rejected: there is nothing to cancel."""

    code = "campaign_not_cancellable"


# --- what a merchant may see ---------------------------------------------------------


def minimum_audience() -> int:
    return settings.MERCHANT_CAMPAIGN_MIN_AUDIENCE


def figure_rounded(n: int, *, step: int = COUNT_STEP) -> int:
    """``n`` rounded down to a multiple of ``step``, or to two significant figures where that is coarser."""
    if n <= 0:
        return 0
    step = max(step, 10 ** max(len(str(n)) - 2, 0))
    return n - n % step


def figure_shown(n: int | None) -> int | None:
    """A count a merchant may see: None below the minimum (0 stays 0: no one), else rounded down."""
    if n is None or 0 < n < minimum_audience():
        return None
    return figure_rounded(n)


# --- the request -----------------------------------------------------------------------


def merchant_campaign_request(
    *, merchant: Merchant, template_id: int, name: str, segments, merchant_scope: str, lapsed_min_days: int | None,
    message_title: str, message_body: str, starts_at: datetime, ends_at: datetime | None, max_targets: int | None,
    cooldown_days: int | None, idempotency_key: str, at: datetime,
) -> Campaign:
    """A campaign awaiting approval, for an audience of at least the minimum (counted now).

    Idempotent by key: the same key with the same request returns the campaign it made
    (as it is now); with another request it is ``idempotency_conflict``. Staff may have
    lowered the cap since: a replay's max_targets may be above the stored one.
    """
    request = {
        "template_id": template_id, "name": name, "segments": segments, "merchant_scope": merchant_scope,
        "lapsed_min_days": lapsed_min_days, "message_title": message_title, "message_body": message_body,
        "starts_at": starts_at, "ends_at": ends_at,
        "max_targets": settings.MERCHANT_CAMPAIGN_MAX_TARGETS if max_targets is None else max_targets,
        "cooldown_days": _default_cooldown() if cooldown_days is None else cooldown_days,
    }
    replay = _requested_under(merchant, idempotency_key, request)
    if replay is not None:
        return replay
    template = _merchant_template(merchant=merchant, template_id=template_id, at=at)
    _request_check(request, at)
    campaign = Campaign(
        merchant=merchant, template=template, status=Campaign.Status.PENDING, request_key=idempotency_key,
        **{field: value for field, value in request.items() if field != "template_id"},
    )
    _open_check(merchant)
    # Every count of an audience is a look at the members: counted per day, refusals too.
    if counter_hit(f"merchant-campaign-requests:{merchant.pk}", window_seconds=DAY_SECONDS, now=at) > (
        settings.MERCHANT_CAMPAIGN_REQUESTS_PER_DAY
    ):
        raise TooManyCampaignRequests(extra={"per_day": settings.MERCHANT_CAMPAIGN_REQUESTS_PER_DAY})
    campaign.requested_audience = _audience_enough(campaign, at, count_up_to=AUDIENCE_COUNT_MAX)
    try:
        with transaction.atomic():
            # One merchant's requests take turns, so the open limit holds however many race.
            # NO KEY: the merchant's sales (rows referencing it) are not held up.
            Merchant.objects.select_for_update(no_key=True).filter(pk=merchant.pk).values_list("pk").get()
            replay = _requested_under(merchant, idempotency_key, request)
            if replay is not None:
                return replay
            _open_check(merchant)
            campaign.save()
    except IntegrityError:
        replay = _requested_under(merchant, idempotency_key, request)
        if replay is None:
            raise
        return replay
    return campaign


def _default_cooldown() -> int:
    return Campaign._meta.get_field("cooldown_days").default


def _requested_under(merchant: Merchant, key: str, request: dict) -> Campaign | None:
    campaign = Campaign.objects.filter(merchant=merchant, request_key=key).first()
    if campaign is None:
        return None
    same = all(
        getattr(campaign, field) == value for field, value in request.items() if field != "max_targets"
    ) and (campaign.max_targets or 0) <= request["max_targets"]
    if not same:
        raise ledger.IdempotencyConflict(extra={"idempotency_key": key})
    return campaign


def _merchant_template(*, merchant: Merchant, template_id: int, at: datetime) -> CouponTemplate:
    """The merchant's own template, funded by it, being issued now."""
    template = CouponTemplate.objects.filter(pk=template_id, merchant=merchant).first() if 0 < template_id < 2**63 else None
    if template is None:
        raise MerchantTemplateNotFound()
    if template.funded_by != CouponTemplate.FundedBy.MERCHANT:
        raise TemplateNotMerchantFunded()
    if template.status != CouponTemplate.Status.ACTIVE:
        raise services.TemplatePaused()
    if template.valid_until is not None and template.valid_until <= at:
        raise services.TemplateEnded()
    return template


def _request_check(request: dict, at: datetime) -> None:
    try:
        campaigns.campaign_segments_check(request["segments"])
    except ValueError as exc:
        raise InvalidSegments(str(exc)) from None
    if request["merchant_scope"] not in Campaign.MerchantScope.values:
        raise InvalidCampaignRequest(gettext("merchant_scope must be one of: customers, non_customers or empty."))
    ends_at = request["ends_at"]
    if ends_at is not None and (ends_at <= request["starts_at"] or ends_at <= at):
        raise InvalidCampaignRequest(gettext("ends_at must be after starts_at and in the future."))
    if not minimum_audience() <= request["max_targets"] <= settings.MERCHANT_CAMPAIGN_MAX_TARGETS:
        raise InvalidCampaignRequest(
            gettext("max_targets must be from %(min)d to %(max)d.")
            % {"min": minimum_audience(), "max": settings.MERCHANT_CAMPAIGN_MAX_TARGETS},
            extra={"min_targets": minimum_audience(), "max_targets": settings.MERCHANT_CAMPAIGN_MAX_TARGETS},
        )
    if not _default_cooldown() <= request["cooldown_days"] <= MAX_LAPSED_DAYS:
        raise InvalidCampaignRequest(
            gettext("cooldown_days must be from %(min)d to %(max)d.") % {"min": _default_cooldown(), "max": MAX_LAPSED_DAYS},
            extra={"min_cooldown_days": _default_cooldown()},
        )
    lapsed = request["lapsed_min_days"]
    if lapsed is not None and not 1 <= lapsed <= MAX_LAPSED_DAYS:
        raise InvalidCampaignRequest(gettext("lapsed_min_days must be from 1 to %(max)d.") % {"max": MAX_LAPSED_DAYS})


def _open_check(merchant: Merchant) -> None:
    if Campaign.objects.filter(merchant=merchant, status__in=OPEN).count() >= settings.MERCHANT_CAMPAIGN_OPEN_MAX:
        raise TooManyCampaigns(extra={"max_open": settings.MERCHANT_CAMPAIGN_OPEN_MAX})


def _audience_enough(campaign: Campaign, at: datetime, *, count_up_to: int) -> int:
    """The audience now, counted up to ``count_up_to``, or AudienceTooSmall, which tells
    the minimum and never the count."""
    audience = campaigns.campaign_audience(campaign=campaign, at=at)[:count_up_to].count()
    if audience < minimum_audience():
        raise AudienceTooSmall(
            gettext("Fewer than %(min)d members match: a campaign must reach at least %(min)d.") % {"min": minimum_audience()},
            extra={"minimum": minimum_audience()},
        )
    return audience


# --- review and cancel -----------------------------------------------------------------


def merchant_campaign_approve(*, campaign: Campaign, user, note: str = "", at: datetime) -> Campaign:
    """Pending → active, once; the audience is counted again and must still reach the minimum."""
    campaign.refresh_from_db()
    if campaign.merchant_id is None or campaign.status != Campaign.Status.PENDING:
        raise CampaignNotPending()
    if campaign.ends_at is not None and campaign.ends_at <= at:
        raise CampaignEnded()
    template = campaign.template
    if template.merchant_id != campaign.merchant_id or template.funded_by != CouponTemplate.FundedBy.MERCHANT:
        raise campaigns.CampaignTemplateNotMerchants()
    _audience_enough(campaign, at, count_up_to=minimum_audience())
    return _review(campaign, Campaign.Status.ACTIVE, user, note, at)


def merchant_campaign_reject(*, campaign: Campaign, user, note: str, at: datetime) -> Campaign:
    """Pending → rejected, once, with the reason the merchant will read."""
    note = (note or "").strip()
    if not note:
        raise ApplicationError(gettext("Say why: the merchant reads the note."), code="review_note_required")
    if campaign.merchant_id is None:
        raise CampaignNotPending()
    return _review(campaign, Campaign.Status.REJECTED, user, note, at)


def _review(campaign: Campaign, status: str, user, note: str, at: datetime) -> Campaign:
    reviewed = Campaign.objects.filter(pk=campaign.pk, status=Campaign.Status.PENDING).update(
        status=status, reviewed_by=user, reviewed_at=at, review_note=note[:300],
    )
    if not reviewed:
        raise CampaignNotPending()
    campaign.refresh_from_db()
    return campaign


def merchant_campaign_cancel(*, merchant: Merchant, campaign_id: int) -> Campaign:
    """The merchant stops its campaign: a pending one never runs, a running one targets no
    one more (coupons already issued stay valid). Cancelling an ended one again changes nothing."""
    campaign = merchant_campaign(merchant=merchant, campaign_id=campaign_id)
    Campaign.objects.filter(pk=campaign.pk, status__in=OPEN).update(status=Campaign.Status.ENDED)
    campaign.refresh_from_db()
    if campaign.status == Campaign.Status.REJECTED:
        raise CampaignNotCancellable()
    return campaign


# --- reading ---------------------------------------------------------------------------


def merchant_campaigns(*, merchant: Merchant):
    """The merchant's campaigns, newest first."""
    return Campaign.objects.filter(merchant=merchant).order_by("-created_at", "-id")


def merchant_campaign(*, merchant: Merchant, campaign_id: int) -> Campaign:
    """One of the merchant's campaigns; another merchant's, or the mall's, is not found."""
    campaign = merchant_campaigns(merchant=merchant).filter(pk=campaign_id).first() if 0 < campaign_id < 2**63 else None
    if campaign is None:
        raise CampaignNotFound()
    return campaign


@dataclass(frozen=True)
class GroupFigures:
    targeted: int
    pushed: int
    opened: int
    redeemed: int
    came_back: int
    comeback_rate: float  # to 0.1 percentage point
    spend_fen: int
    spend_per_member_fen: int  # to the yuan


@dataclass(frozen=True)
class MerchantCampaignResults:
    window_days: int
    targeted: int | None  # both groups
    treated: GroupFigures | None
    holdout: GroupFigures | None
    incremental_comeback: campaigns.Estimate | None
    incremental_spend_per_member_fen: campaigns.Estimate | None


@dataclass(frozen=True)
class MerchantCampaignReport:
    campaign: Campaign
    minimum: int
    audience_requested: int | None
    results: MerchantCampaignResults | None  # None while pending or rejected, or when not asked for


def merchant_campaign_report(*, campaign: Campaign, with_results: bool = True) -> MerchantCampaignReport:
    """What the merchant may see of its campaign: see the module's docstring."""
    results = None
    if with_results and campaign.status not in (Campaign.Status.PENDING, Campaign.Status.REJECTED):
        results = _results_shown(campaigns.campaign_results(campaign=campaign))
    return MerchantCampaignReport(
        campaign=campaign, minimum=minimum_audience(), audience_requested=figure_shown(campaign.requested_audience),
        results=results,
    )


def _results_shown(results: campaigns.CampaignResults) -> MerchantCampaignResults:
    treated, holdout = (_group_figures(group) for group in (results.treated, results.holdout))
    both = treated is not None and holdout is not None
    return MerchantCampaignResults(
        window_days=results.window_days, targeted=figure_shown(results.treated.targeted + results.holdout.targeted),
        treated=treated, holdout=holdout,
        incremental_comeback=_estimate_rounded(results.incremental_comeback, lambda rate: round(rate, 3)) if both else None,
        incremental_spend_per_member_fen=_estimate_rounded(results.incremental_spend_per_member_fen, _to_yuan) if both else None,
    )


def _group_figures(group: campaigns.GroupResult) -> GroupFigures | None:
    if group.targeted < minimum_audience():
        return None
    return GroupFigures(
        targeted=figure_rounded(group.targeted), pushed=figure_rounded(group.pushed), opened=figure_rounded(group.opened),
        redeemed=figure_rounded(group.redeemed), came_back=figure_rounded(group.came_back),
        comeback_rate=round(group.comeback_rate, 3), spend_fen=figure_rounded(group.spend_fen, step=MONEY_STEP_FEN),
        spend_per_member_fen=_to_yuan(group.spend_per_member_fen),
    )


def _to_yuan(fen: float) -> int:
    """A statistic in fen, to the whole yuan (toward zero)."""
    return int(fen / 100) * 100


def _estimate_rounded(estimate: campaigns.Estimate | None, rounded) -> campaigns.Estimate | None:
    if estimate is None:
        return None
    return campaigns.Estimate(value=rounded(estimate.value), low=rounded(estimate.low), high=rounded(estimate.high))
