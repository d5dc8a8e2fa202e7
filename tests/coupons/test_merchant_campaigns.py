"""Merchants' campaigns (coupons.merchant_campaigns, /api/v1/campaigns/): a merchant asks,
staff approve, the campaign runs, and the merchant sees rounded counts and never a member;
small audiences and groups are refused or hidden; caps and limits hold, concurrently too."""

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
import yaml
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import Permission
from django.test import Client, override_settings
from django.urls import reverse

from coupons import campaigns, merchant_campaigns, tasks
from coupons.admin import campaigns as campaign_admin
from coupons.merchant_campaigns import figure_rounded, figure_shown
from coupons.models import Campaign, CampaignTarget, Coupon, CouponTemplate
from members.models import Member, MemberSegment, Segment, SegmentRun, Visit
from tests.concurrency import race
from tests.coupons.conftest import make_template
from tests.payments.conftest import Api, assert_error, build_shop

pytestmark = pytest.mark.django_db

LOCAL = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 6, 15, 10, 0, tzinfo=LOCAL)
URL = "/api/v1/campaigns/"
T, H = CampaignTarget.Group.TREATED, CampaignTarget.Group.HOLDOUT

# Every key any campaign answer may carry: nothing about a member can hide in another.
CAMPAIGN_KEYS = {
    "id", "name", "status", "template_id", "segments", "merchant_scope", "lapsed_min_days", "message_title", "message_body",
    "starts_at", "ends_at", "max_targets", "cooldown_days", "holdout_pct", "review_note", "reviewed_at", "created_at",
    "minimum", "audience_requested", "results",
}
RESULT_KEYS = {"window_days", "targeted", "treated", "holdout", "incremental_comeback", "incremental_spend_per_member_fen"}
GROUP_KEYS = {"targeted", "pushed", "opened", "redeemed", "came_back", "comeback_rate", "spend_fen", "spend_per_member_fen"}
ESTIMATE_KEYS = {"value", "low", "high"}
ALLOWED_KEYS = CAMPAIGN_KEYS | RESULT_KEYS | GROUP_KEYS | ESTIMATE_KEYS | {"next_cursor", "code", "message", "minimum"}


@pytest.fixture(autouse=True)
def clock():
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture(autouse=True)
def _admin_in_english(settings):
    """The admin's messages are asserted in English; the mall's staff read them in Chinese."""
    settings.LANGUAGE_CODE = "en"


@pytest.fixture
def template(shop):
    """The shop's own ¥20 off ¥100, funded by the shop."""
    return make_template(merchant=shop.merchant)


_made = [0]


def many_members(n: int) -> list[Member]:
    """Members with a number, a phone and a nickname (what must never leak), fast."""
    first = _made[0] = _made[0] + n
    Member.objects.bulk_create(
        Member(member_no=f"7{first - n + i:011d}", phone=f"139{first - n + i:08d}", nickname=f"顾客{first - n + i}",
               join_channel=Member.Channel.WECHAT)
        for i in range(n)
    )
    return list(Member.objects.order_by("-pk")[:n])[::-1]


def bought_at(members, shop, *, kind=Visit.Kind.PURCHASE, days_ago: int = 30) -> None:
    Visit.objects.bulk_create(
        Visit(member=m, plaza=shop.plaza, store=shop.store, kind=kind, amount_fen=5_000, occurred_at=NOW - timedelta(days=days_ago))
        for m in members
    )


def segment_rows(members, segment=Segment.LAPSED, high_value=False) -> None:
    run = SegmentRun.objects.get_or_create(day=NOW.date(), defaults={"as_of": NOW, "started_at": NOW})[0]
    MemberSegment.objects.bulk_create(
        MemberSegment(member=m, segment=segment, high_value=high_value, run=run, computed_at=NOW) for m in members
    )


def body(template, **fields) -> dict:
    values = {
        "name": "Come back", "template_id": template.pk, "segments": [], "merchant_scope": "customers",
        "message_title": "好久不见", "message_body": "满 100 减 20，本月有效",
        "starts_at": NOW.isoformat(), "ends_at": (NOW + timedelta(days=30)).isoformat(),
    }
    values.update(fields)
    return values


def ask(shop, template, *, key=None, **fields):
    return shop.api.post(URL, body(template, **fields), key=key)


def approve(campaign_id: int, user) -> Campaign:
    return merchant_campaigns.merchant_campaign_approve(campaign=Campaign.objects.get(pk=campaign_id), user=user, at=NOW)


def keys_of(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_of(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_of(v)}
    return set()


def assert_no_member_data(responses) -> None:
    """No member's number, phone, nickname or coupon code in any answer, and no key but the known ones."""
    secrets = [
        *Member.objects.values_list("member_no", flat=True), *Member.objects.exclude(phone=None).values_list("phone", flat=True),
        *Member.objects.exclude(nickname="").values_list("nickname", flat=True), *Coupon.objects.values_list("code", flat=True),
    ]
    for response in responses:
        text = response.content.decode()
        assert not [s for s in secrets if s in text]
        assert keys_of(json.loads(text)) <= ALLOWED_KEYS, keys_of(json.loads(text)) - ALLOWED_KEYS


# --- the loop: ask, approve, run, read -------------------------------------------------


def test_request_approve_run_and_results_show_rounded_counts_and_never_a_member(shop, template, admin_user):
    customers = many_members(137)
    bought_at(customers, shop)
    many_members(60)  # not customers: outside the audience

    asked = ask(shop, template, max_targets=5_000)
    campaign_id = asked.json()["id"]
    pending = shop.api.get(f"{URL}{campaign_id}/")
    approve(campaign_id, admin_user)
    summary = campaigns.campaign_run(campaign=Campaign.objects.get(pk=campaign_id), at=NOW)
    detail = shop.api.get(f"{URL}{campaign_id}/")
    listed = shop.api.get(URL)

    assert asked.status_code == 201, asked.content
    campaign = Campaign.objects.get(pk=campaign_id)
    assert (campaign.merchant, campaign.template, campaign.merchant_scope, campaign.requested_audience) == (
        shop.merchant, template, Campaign.MerchantScope.CUSTOMERS, 137)
    assert (campaign.holdout_pct, campaign.cooldown_days, campaign.max_targets) == (10, 90, 5_000)
    assert asked.json()["status"] == "pending" and asked.json()["audience_requested"] == 130
    assert asked.json()["results"] is None and pending.json()["results"] is None
    assert summary.targeted == 137 and CampaignTarget.objects.filter(campaign=campaign).count() == 137
    treated = CampaignTarget.objects.filter(campaign=campaign, group=T).count()
    results = detail.json()["results"]
    assert detail.json()["status"] == "active"
    assert results["targeted"] == 130
    assert results["treated"]["targeted"] == figure_rounded(treated) and results["treated"]["redeemed"] == 0
    # The holdout is ~14 members: below the minimum, so it and the comparison are hidden.
    assert results["holdout"] is None and results["incremental_comeback"] is None
    assert [row["id"] for row in listed.json()["results"]] == [campaign_id]
    assert "results" not in listed.json()["results"][0]
    assert Coupon.objects.filter(template=template).count() == summary.issued == treated
    assert_no_member_data([asked, pending, detail, listed])


def test_audience_below_the_minimum_is_refused_without_telling_the_count(shop, template):
    customers = many_members(50)
    bought_at(customers[:49], shop)

    refused = ask(shop, template)
    bought_at(customers[49:], shop)
    accepted = ask(shop, template)

    body_ = assert_error(refused, 409, "audience_too_small")
    assert body_["minimum"] == 50 and "50" in body_["message"]
    assert "49" not in refused.content.decode()
    assert accepted.status_code == 201 and accepted.json()["audience_requested"] == 50
    assert Campaign.objects.count() == 1


def test_audiences_a_member_apart_show_the_same_rounded_figure(shop, template):
    customers = many_members(138)
    bought_at(customers[:137], shop)
    first = ask(shop, template)
    bought_at(customers[137:], shop)
    second = ask(shop, template)

    assert first.json()["audience_requested"] == second.json()["audience_requested"] == 130
    assert sorted(Campaign.objects.values_list("requested_audience", flat=True)) == [137, 138]  # exact, for staff


def test_an_audience_is_counted_only_up_to_a_bound(shop, template, monkeypatch):
    bought_at(many_members(137), shop)
    monkeypatch.setattr(merchant_campaigns, "AUDIENCE_COUNT_MAX", 100)

    assert ask(shop, template).json()["audience_requested"] == 100
    assert Campaign.objects.get().requested_audience == 100


def test_figures_are_rounded_down_and_hidden_below_the_minimum():
    assert [figure_rounded(n) for n in (0, 9, 57, 123, 999, 1_234, 56_789)] == [0, 0, 50, 120, 990, 1_200, 56_000]
    assert figure_rounded(123_456, step=10_000) == 120_000 and figure_rounded(5_000, step=10_000) == 0
    assert [figure_shown(n) for n in (None, 0, 1, 49, 50, 51)] == [None, 0, None, None, 50, 50]


# --- whose template, whose campaign -----------------------------------------------------


def test_a_template_not_the_merchants_own_is_not_found_like_a_missing_one(shop, other_shop):
    many_members(60)
    others = make_template(merchant=other_shop.merchant)
    malls = make_template()

    answers = [ask(shop, t, merchant_scope="any") for t in (others, malls)]
    missing = shop.api.post(URL, {**body(others, merchant_scope="any"), "template_id": 10**9})

    # The same answer as for a template that does not exist: whether it does is not told.
    expected = assert_error(missing, 404, "coupon_template_not_found")
    assert [assert_error(answer, 404, "coupon_template_not_found") for answer in answers] == [expected, expected]
    assert not Campaign.objects.exists()


def test_a_mall_funded_or_paused_template_of_the_merchant_is_refused(shop):
    many_members(60)
    mall_funded = make_template(merchant=shop.merchant, funded_by=CouponTemplate.FundedBy.MALL)
    paused = make_template(merchant=shop.merchant, status=CouponTemplate.Status.PAUSED)

    assert_error(ask(shop, mall_funded, merchant_scope="any"), 409, "coupon_template_not_merchant_funded")
    assert_error(ask(shop, paused, merchant_scope="any"), 409, "coupon_template_paused")
    assert not Campaign.objects.exists()


def test_another_merchants_campaign_is_not_found_nor_cancelled_nor_listed(shop, other_shop, template):
    bought_at(many_members(60), shop)
    campaign_id = ask(shop, template).json()["id"]

    assert_error(other_shop.api.get(f"{URL}{campaign_id}/"), 404, "campaign_not_found")
    assert_error(other_shop.api.post(f"{URL}{campaign_id}/cancel/"), 404, "campaign_not_found")
    assert other_shop.api.get(URL).json()["results"] == []
    assert_error(shop.api.get(f"{URL}{2**63}/"), 404, "campaign_not_found")
    assert Campaign.objects.get(pk=campaign_id).status == Campaign.Status.PENDING


def test_a_merchant_campaign_runs_only_its_own_merchant_funded_template(shop, other_shop, admin_user):
    many_members(5)
    campaign = Campaign.objects.create(
        name="Forged", template=make_template(merchant=other_shop.merchant), merchant=shop.merchant, message_title="Hi",
        message_body="Hi", starts_at=NOW - timedelta(days=1), status=Campaign.Status.ACTIVE,
    )

    with pytest.raises(campaigns.CampaignTemplateNotMerchants):
        campaigns.campaign_run(campaign=campaign, at=NOW)
    assert campaigns.campaigns_run_due(at=NOW) == {}  # the nightly run carries on without it
    assert not CampaignTarget.objects.exists() and not Coupon.objects.exists()


# --- the audience -------------------------------------------------------------------------


def test_customers_are_members_who_bought_or_paid_at_any_of_its_stores_and_non_customers_the_rest(shop, other_shop):
    bought, paid, elsewhere, checked_in, never = many_members(5)
    bought_at([bought], shop)
    bought_at([paid], shop, kind=Visit.Kind.PAYMENT, days_ago=400)
    bought_at([elsewhere], other_shop)
    bought_at([checked_in], shop, kind=Visit.Kind.CHECKIN)

    def audience(scope):
        campaign = Campaign(merchant=shop.merchant, merchant_scope=scope, cooldown_days=90)
        return set(campaigns.campaign_audience(campaign=campaign, at=NOW).values_list("pk", flat=True))

    assert audience(Campaign.MerchantScope.CUSTOMERS) == {bought.pk, paid.pk}
    assert audience(Campaign.MerchantScope.NON_CUSTOMERS) == {elsewhere.pk, checked_in.pk, never.pk}
    assert audience(Campaign.MerchantScope.ANY) == {bought.pk, paid.pk, elsewhere.pk, checked_in.pk, never.pk}


def test_segments_and_scope_combine(shop, template):
    lapsed = many_members(70)
    segment_rows(lapsed[:60], Segment.LAPSED)
    segment_rows(lapsed[60:], Segment.LOYAL)
    bought_at(lapsed, shop, days_ago=200)

    answer = ask(shop, template, segments=["lapsed"])

    assert answer.status_code == 201 and Campaign.objects.get().requested_audience == 60
    assert_error(ask(shop, template, segments=["loyal"]), 409, "audience_too_small")
    assert_error(ask(shop, template, segments=["vip"]), 400, "invalid_segments")


# --- caps and limits ----------------------------------------------------------------------


def test_max_targets_caps_the_targets_across_reruns_holdout_included(shop, template, admin_user):
    bought_at(many_members(100), shop)
    campaign = approve(ask(shop, template, max_targets=60).json()["id"], admin_user)

    first = campaigns.campaign_run(campaign=campaign, at=NOW, batch_size=7)
    bought_at(many_members(50), shop)
    again = campaigns.campaign_run(campaign=campaign, at=NOW + timedelta(days=1), batch_size=7)
    Campaign.objects.filter(pk=campaign.pk).update(max_targets=80)  # staff may only lower it; raised here to see it count
    more = campaigns.campaign_run(campaign=campaign, at=NOW + timedelta(days=2), batch_size=7)

    assert (first.targeted, again.targeted, more.targeted) == (60, 0, 20)
    assert CampaignTarget.objects.filter(campaign=campaign).count() == 80


def test_a_mall_campaign_with_a_cap_stops_at_it():
    many_members(40)
    campaign = Campaign.objects.create(
        name="Capped", template=make_template(), message_title="Hi", message_body="Hi", starts_at=NOW - timedelta(days=1),
        status=Campaign.Status.ACTIVE, max_targets=25,
    )

    assert campaigns.campaign_run(campaign=campaign, at=NOW, batch_size=10).targeted == 25
    assert campaigns.campaign_run(campaign=campaign, at=NOW, batch_size=10).targeted == 0


def test_max_targets_and_the_window_and_cooldown_are_checked(shop, template):
    bought_at(many_members(60), shop)

    for fields in ({"max_targets": 49}, {"max_targets": 10_001}, {"cooldown_days": 30},
                   {"ends_at": (NOW - timedelta(hours=1)).isoformat()}, {"lapsed_min_days": 5000}):
        answer = ask(shop, template, **fields)
        assert answer.status_code == 400 and answer.json()["code"] in ("invalid_campaign", "validation_error"), (fields, answer.content)
    assert_error(ask(shop, template, template_id=str(template.pk)), 400, "validation_error")
    assert_error(shop.api.post(URL, body(template), key=""), 400, "idempotency_key_required")
    assert ask(shop, template, cooldown_days=120).status_code == 201
    assert not Campaign.objects.exclude(cooldown_days=120).exists()


def test_at_most_three_campaigns_pending_or_running_at_once(shop, template):
    bought_at(many_members(60), shop)

    made = [ask(shop, template) for _ in range(3)]
    refused = ask(shop, template)
    shop.api.post(f"{URL}{made[0].json()['id']}/cancel/")
    after_cancel = ask(shop, template)

    assert [a.status_code for a in made] == [201] * 3
    assert assert_error(refused, 429, "too_many_campaigns")["max_open"] == 3
    assert after_cancel.status_code == 201


@override_settings(MERCHANT_CAMPAIGN_REQUESTS_PER_DAY=2)
def test_audience_counts_a_day_are_limited_refused_ones_included(shop, template, clock):
    customers = many_members(60)
    bought_at(customers[:10], shop)
    assert_error(ask(shop, template), 409, "audience_too_small")
    bought_at(customers[10:], shop)
    assert ask(shop, template).status_code == 201

    assert_error(ask(shop, template), 429, "too_many_campaign_requests")
    clock.move_to(NOW + timedelta(days=1))
    assert ask(shop, template, starts_at=(NOW + timedelta(days=1)).isoformat()).status_code == 201


def test_a_replay_returns_the_same_campaign_and_another_body_under_the_key_conflicts(shop, template):
    bought_at(many_members(60), shop)

    first = ask(shop, template, key="req-1", max_targets=100)
    replay = ask(shop, template, key="req-1", max_targets=100)
    Campaign.objects.filter(pk=first.json()["id"]).update(max_targets=70)  # staff lowered it since
    replay_after_review = ask(shop, template, key="req-1", max_targets=100)
    other = ask(shop, template, key="req-1", max_targets=100, message_body="另一条")
    other_shop_same_key = build_shop().api.post(URL, {**body(template), "template_id": template.pk}, key="req-1")

    assert first.status_code == replay.status_code == replay_after_review.status_code == 201
    assert first.json()["id"] == replay.json()["id"] == replay_after_review.json()["id"]
    assert_error(other, 409, "idempotency_conflict")
    assert_error(other_shop_same_key, 404, "coupon_template_not_found")
    assert Campaign.objects.count() == 1


# --- review -------------------------------------------------------------------------------


def test_approval_counts_again_and_refuses_an_audience_now_below_the_minimum(shop, template, admin_user):
    customers = many_members(50)
    bought_at(customers, shop)
    campaign_id = ask(shop, template).json()["id"]
    Member.objects.filter(pk=customers[0].pk).update(status=Member.Status.BANNED)

    with pytest.raises(merchant_campaigns.AudienceTooSmall):
        approve(campaign_id, admin_user)
    assert Campaign.objects.get(pk=campaign_id).status == Campaign.Status.PENDING


def test_reject_needs_a_note_the_merchant_reads_and_happens_once(shop, template, admin_user):
    bought_at(many_members(60), shop)
    campaign = Campaign.objects.get(pk=ask(shop, template).json()["id"])

    with pytest.raises(merchant_campaigns.ApplicationError) as no_note:
        merchant_campaigns.merchant_campaign_reject(campaign=campaign, user=admin_user, note=" ", at=NOW)
    assert no_note.value.code == "review_note_required"
    merchant_campaigns.merchant_campaign_reject(campaign=campaign, user=admin_user, note="文案需修改", at=NOW)
    with pytest.raises(merchant_campaigns.CampaignNotPending):
        merchant_campaigns.merchant_campaign_approve(campaign=campaign, user=admin_user, at=NOW)
    seen = shop.api.get(f"{URL}{campaign.pk}/").json()

    assert (seen["status"], seen["review_note"], seen["results"]) == ("rejected", "文案需修改", None)
    assert_error(shop.api.post(f"{URL}{campaign.pk}/cancel/"), 409, "campaign_not_cancellable")


def test_cancel_stops_a_pending_or_running_campaign_and_answers_the_same_again(shop, template, admin_user):
    bought_at(many_members(60), shop)
    pending_id = ask(shop, template).json()["id"]
    running = approve(ask(shop, template).json()["id"], admin_user)

    cancelled = [shop.api.post(f"{URL}{cid}/cancel/") for cid in (pending_id, running.pk, pending_id)]

    assert [(c.status_code, c.json()["status"]) for c in cancelled] == [(200, "ended")] * 3
    assert campaigns.campaigns_run_due(at=NOW) == {}
    assert not CampaignTarget.objects.exists()
    with pytest.raises(merchant_campaigns.CampaignNotPending):
        approve(pending_id, admin_user)


# --- small groups -------------------------------------------------------------------------


def test_results_hide_a_group_below_the_minimum_and_the_comparison_with_it(shop, template, admin_user):
    members = many_members(170)
    bought_at(members, shop)
    campaign = approve(ask(shop, template).json()["id"], admin_user)

    def targets(group, chosen):
        CampaignTarget.objects.bulk_create(CampaignTarget(campaign=campaign, member=m, group=group, targeted_at=NOW) for m in chosen)

    targets(T, members[:120])
    targets(H, members[120:169])
    hidden = shop.api.get(f"{URL}{campaign.pk}/").json()["results"]
    targets(H, members[169:])
    shown = shop.api.get(f"{URL}{campaign.pk}/").json()["results"]

    assert hidden["treated"]["targeted"] == 120 and hidden["holdout"] is None
    assert hidden["incremental_comeback"] is None and hidden["incremental_spend_per_member_fen"] is None
    assert hidden["targeted"] == 160  # 169, rounded down
    assert shown["holdout"]["targeted"] == 50 and shown["incremental_comeback"] is not None


# --- the admin ----------------------------------------------------------------------------


def changelist_action(client, action: str, ids: list[int], **extra):
    return client.post(reverse("admin:coupons_campaign_changelist"), {"action": action, ACTION_CHECKBOX_NAME: ids, **extra}, follow=True)


def test_admin_finds_pending_requests_and_approves_or_rejects_them(admin_client, admin_user, shop, template):
    bought_at(many_members(60), shop)
    first, second = (ask(shop, template).json()["id"] for _ in range(2))

    listed = admin_client.get(reverse("admin:coupons_campaign_changelist") + "?origin=awaiting").content.decode()
    approved = changelist_action(admin_client, "approve", [first])
    form = changelist_action(admin_client, "reject", [second])
    no_note = changelist_action(admin_client, "reject", [second], apply="1", note="")
    rejected = changelist_action(admin_client, "reject", [second], apply="1", note="目标人群过宽")

    assert "Come back" in listed
    assert approved.status_code == 200
    assert Campaign.objects.get(pk=first).status == Campaign.Status.ACTIVE
    assert Campaign.objects.get(pk=first).reviewed_by == admin_user
    assert 'name="note"' in form.content.decode() and 'name="note"' in no_note.content.decode()
    assert rejected.status_code == 200
    assert (Campaign.objects.get(pk=second).status, Campaign.objects.get(pk=second).review_note) == ("rejected", "目标人群过宽")


def test_staff_who_may_only_view_campaigns_cannot_approve(shop, template, django_user_model):
    bought_at(many_members(60), shop)
    campaign_id = ask(shop, template).json()["id"]
    viewer = django_user_model.objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_campaign"))
    client = Client()
    client.force_login(viewer)

    listed = client.get(reverse("admin:coupons_campaign_changelist")).content.decode()
    changelist_action(client, "approve", [campaign_id])

    assert "Come back" in listed and 'value="approve"' not in listed
    assert Campaign.objects.get(pk=campaign_id).status == Campaign.Status.PENDING


def test_admin_keeps_a_merchants_request_as_asked_but_may_lower_its_cap(admin_client, shop, template):
    bought_at(many_members(60), shop)
    campaign = Campaign.objects.get(pk=ask(shop, template, max_targets=500).json()["id"])
    url = reverse("admin:coupons_campaign_change", args=[campaign.pk])

    page = admin_client.get(url).content.decode()
    why = {"audit_reason": "the merchant asked for fewer"}  # every change of a campaign says why (core.audit_admin)
    raised = admin_client.post(url, {"status": "pending", "max_targets": 900, **why})
    bypassed = admin_client.post(url, {"status": "active", "max_targets": 500, **why})
    lowered = admin_client.post(url, {"status": "pending", "max_targets": 200, **why})

    assert 'name="segments"' not in page and 'name="message_body"' not in page and 'name="max_targets"' in page
    assert raised.status_code == 200 and bypassed.status_code == 200  # the form again, with its error
    assert lowered.status_code == 302
    campaign.refresh_from_db()
    assert (campaign.status, campaign.max_targets) == (Campaign.Status.PENDING, 200)


def test_admin_run_now_queues_the_run_on_the_task_cluster(admin_client, monkeypatch, shop, template, admin_user):
    bought_at(many_members(60), shop)
    campaign = approve(ask(shop, template).json()["id"], admin_user)
    queued = []
    monkeypatch.setattr(campaign_admin, "async_task", lambda func, *args, **kwargs: queued.append((func, *args)))

    response = changelist_action(admin_client, "run_now", [campaign.pk])

    assert queued == [("coupons.tasks.campaign_run_task", campaign.pk)]
    assert "queued to run on the task cluster" in response.content.decode()
    assert not CampaignTarget.objects.exists()  # nothing ran inside the request
    assert tasks.campaign_run_task(campaign.pk)["targeted"] == 60  # what the cluster runs


def test_run_task_skips_a_campaign_not_running_or_gone(shop, template):
    bought_at(many_members(60), shop)
    pending_id = ask(shop, template).json()["id"]

    assert tasks.campaign_run_task(pending_id) is None
    assert tasks.campaign_run_task(10**9) is None
    assert not CampaignTarget.objects.exists()


# --- the schema ---------------------------------------------------------------------------


def test_the_operations_are_documented_with_their_error_codes():
    paths = yaml.safe_load(Client().get("/api/schema/").content)["paths"]
    create = paths[URL]["post"]
    documented = {
        example["value"]["code"] for response in create["responses"].values()
        for example in response.get("content", {}).get("application/json", {}).get("examples", {}).values()
    }

    assert create["tags"] == ["campaigns"] and create["security"] == [{"merchantApiKey": []}]
    assert "Idempotency-Key" in [p["name"] for p in create["parameters"] if p["in"] == "header"]
    assert {
        "audience_too_small", "coupon_template_not_found", "coupon_template_not_merchant_funded", "coupon_template_paused",
        "invalid_segments", "invalid_campaign", "too_many_campaigns", "too_many_campaign_requests", "idempotency_conflict",
        "idempotency_key_required",
    } <= documented
    assert "campaign_not_found" in json.dumps(paths[URL + "{campaign_id}/"]["get"]["responses"])
    assert "campaign_not_cancellable" in json.dumps(paths[URL + "{campaign_id}/cancel/"]["post"]["responses"])


# --- under real concurrency (PostgreSQL) ----------------------------------------------------


def postgres_only(test):
    from django.db import connection

    needs_row_locks = pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks")
    return pytest.mark.postgres_only(pytest.mark.django_db(transaction=True)(needs_row_locks(test)))


@postgres_only
def test_concurrent_runs_of_a_capped_campaign_never_pass_the_cap():
    many_members(200)
    campaign = Campaign.objects.create(
        name="Capped", template=make_template(), message_title="Hi", message_body="Hi", starts_at=NOW - timedelta(days=1),
        status=Campaign.Status.ACTIVE, max_targets=60,
    )

    results = race([lambda: campaigns.campaign_run(campaign=Campaign.objects.get(pk=campaign.pk), at=NOW, batch_size=7)
                    for _ in range(6)], name="campaign-cap")

    assert not [r for r in results if isinstance(r, BaseException)], results
    assert sum(r.targeted for r in results) == 60
    assert CampaignTarget.objects.filter(campaign=campaign).count() == 60


@postgres_only
def test_concurrent_requests_hold_the_open_limit_and_one_key_makes_one_campaign(shop, template):
    bought_at(many_members(60), shop)

    def request(key):
        return Api(shop.raw_key, client=Client(raise_request_exception=False)).post(URL, body(template), key=key)

    same_key = race([lambda: request("one-key") for _ in range(5)], name="campaign-key")
    distinct = race([lambda n=n: request(f"key-{n}") for n in range(5)], name="campaign-open")

    assert [r.status_code for r in same_key] == [201] * 5 and len({r.json()["id"] for r in same_key}) == 1
    assert sorted(r.status_code for r in distinct) == [201, 201, 429, 429, 429]
    assert Campaign.objects.filter(merchant=shop.merchant).count() == 3
