"""Schemathesis hooks: the rules of the merchant API that no OpenAPI schema can state.

The schema states every rule a request's shape must follow (required parameters, blank
strings, patterns, maxima, which of member_code / member_no, ...). A few rules need the
server's data or relate two values, and each is documented on its operation with a stable
error code: a member or coupon code of the right shape may be wrong or expired, ``to`` may
be before ``from`` or more than 92 days after it, a sale may be above the merchant's own
limit. A schema-valid request rejected for exactly such a documented reason is what the
API promises, not a failure; everything else ``positive_data_acceptance`` reports stays.

Loaded by ``schemathesis.toml`` (``schemathesis run`` from the project's root) and by
tests/payments/test_schemathesis.py. Plain Python: no Django here, the CLI runs without it.
"""

from datetime import date, datetime, timedelta, timezone

import schemathesis
from schemathesis.openapi.checks import RejectedPositiveData

MAX_REPORT_DAYS = 92  # payments.reports.MAX_REPORT_DAYS

CODES = ("member_code_invalid", "member_code_expired")
# operationId → the 400 codes a schema-valid request may get, each documented on the operation.
DATA_RULES = {
    "members_lookup": {*CODES},
    "purchases_create": {*CODES, "sale_amount_over_limit"},
    "redemptions_create": {*CODES, "redemption_token_invalid", "redemption_token_expired"},
    "coupon_redemptions_create": {*CODES, "coupon_code_invalid", "coupon_code_expired", "min_spend_not_met",
                                  "sale_amount_over_limit"},
    "orders_create": {"channel_unavailable", "sale_amount_over_limit"},
    "orders_refunds_create": {"refund_too_small"},
}
# operationId → the 400 codes for two values out of order, with the test of that.
ORDER_RULES = {
    **dict.fromkeys(
        ("reports_daily", "purchases_list", "redemptions_list", "purchase_refunds_list", "redemption_refunds_list",
         "order_refunds_list"),
        ("invalid_period", lambda case: _days_out_of_order(case.query or {})),
    ),
    "campaigns_create": ("invalid_campaign", lambda case: _window_out_of_order(case.body)),
}


def _days_out_of_order(query: dict) -> bool:
    try:
        first, last = date.fromisoformat(query["from"]), date.fromisoformat(query["to"])
    except (KeyError, TypeError, ValueError):
        return False
    return last < first or (last - first).days + 1 > MAX_REPORT_DAYS


def _window_out_of_order(body) -> bool:
    """ends_at must be after starts_at and in the future (the server's clock: a minute's leeway)."""
    if not isinstance(body, dict) or body.get("ends_at") is None:
        return False
    try:
        starts_at, ends_at = datetime.fromisoformat(body["starts_at"]), datetime.fromisoformat(body["ends_at"])
        if ends_at.tzinfo is None:  # the server reads a naive time in the mall's zone; compare loosely
            ends_at = ends_at.replace(tzinfo=timezone(timedelta(hours=8)))
            starts_at = starts_at.replace(tzinfo=ends_at.tzinfo) if starts_at.tzinfo is None else starts_at
        elif starts_at.tzinfo is None:
            starts_at = starts_at.replace(tzinfo=timezone(timedelta(hours=8)))
        return ends_at <= starts_at or ends_at <= datetime.now(timezone.utc) + timedelta(minutes=1)
    except (KeyError, TypeError, ValueError, OverflowError):
        return False


def documented_rejection(case, response) -> bool:
    """Whether ``response`` refuses ``case`` for a documented rule beyond the schema."""
    if response.status_code != 400:
        return False
    try:
        code = response.json().get("code")
    except Exception:  # not JSON: not one of ours
        return False
    operation_id = case.operation.definition.raw.get("operationId")
    if code in DATA_RULES.get(operation_id, ()):
        return True
    rule = ORDER_RULES.get(operation_id)
    return rule is not None and code == rule[0] and rule[1](case)


@schemathesis.hook
def filter_failure(context, failure, case, response) -> bool:
    """Keep every failure but a schema-valid request refused for a documented rule beyond the schema."""
    return not (isinstance(failure, RejectedPositiveData) and documented_rejection(case, response))
