"""Shared fixtures for the merchant API tests: shops with raw API keys, members with
points, and an ``Api`` helper that speaks to /api/v1/ the way a POS does."""

import json
import uuid
from datetime import timedelta
from dataclasses import dataclass, field

import pytest
from django.conf import settings
from django.utils import timezone
from django.test import Client

from members import codes, ledger, services, spend
from members.models import Member, Merchant, MerchantApiKey, Plaza, SpendAuthorization, Store
from tests.factories import make_member, make_plaza

# Sentinel: send no Idempotency-Key header at all.
NO_KEY = object()


def new_key() -> str:
    return f"test-{uuid.uuid4()}"


class Api:
    """A POS talking to the merchant API with one raw key (its own Client, so its own thread may use it)."""

    def __init__(self, raw_key: str | None, *, client: Client | None = None):
        self.raw_key = raw_key
        self.client = client or Client()
        self._tokens: dict = {}

    def _auth(self, headers: dict | None) -> dict:
        merged = {}
        if self.raw_key is not None:
            merged["Authorization"] = f"Bearer {self.raw_key}"
        merged.update(headers or {})
        return merged

    def post(self, path: str, body=None, *, key=None, headers: dict | None = None, raw: bytes | str | None = None,
             content_type: str = "application/json"):
        """POST ``body`` as JSON (or ``raw`` as is) with a fresh Idempotency-Key unless ``key`` is given."""
        all_headers = self._auth(headers)
        if key is not NO_KEY:
            all_headers.setdefault("Idempotency-Key", new_key() if key is None else key)
        data = raw if raw is not None else json.dumps(body)
        return self.client.post(path, data=data, content_type=content_type, headers=all_headers)

    def get(self, path: str, params: dict | None = None, *, headers: dict | None = None):
        return self.client.get(path, data=params or {}, headers=self._auth(headers))

    def request(self, method: str, path: str, *, headers: dict | None = None):
        return getattr(self.client, method.lower())(path, headers=self._auth(headers))

    # The operations, with the body a POS sends.

    def purchase(self, *, store_code: str, amount_fen: int, member: Member | None = None, member_code: str | None = None,
                 member_no: str | None = None, order_ref: str | None = None, key=None):
        body = {"store_code": store_code, "amount_fen": amount_fen}
        if member_code is not None:
            body["member_code"] = member_code
        elif member_no is not None:
            body["member_no"] = member_no
        elif member is not None:
            body["member_no"] = member.member_no
        if order_ref is not None:
            body["order_ref"] = order_ref
        return self.post("/api/v1/purchases/", body, key=key)

    def refund_purchase(self, purchase_id: int, amount_fen: int, *, key=None):
        return self.post(f"/api/v1/purchases/{purchase_id}/refunds/", {"amount_fen": amount_fen}, key=key)

    def redeem(self, *, store_code: str, points: int, member: Member | None = None, member_code: str | None = None,
               redemption_token: str | None = None, member_no: str | None = None, key=None, order_ref: str | None = None):
        """Pay with points. ``member=`` stands for a shopper who confirmed the spend in the app: a
        redemption token for this store (one per member, store, points and key, so a retry sends
        the same body; a request without a key gets a fresh token); ``member_code=`` is a scanned
        code; ``member_no=`` is the attack."""
        body = {"store_code": store_code, "points": points}
        if member_code is not None:
            body["member_code"] = member_code
        elif redemption_token is not None:
            body["redemption_token"] = redemption_token
        elif member_no is not None:
            body["member_no"] = member_no
        elif member is not None:
            body["redemption_token"] = self.confirmed_token(member, store_code, points, key)
        if order_ref is not None:
            body["order_ref"] = order_ref
        return self.post("/api/v1/redemptions/", body, key=key)

    def confirmed_token(self, member: Member, store_code: str, points, key=None) -> str:
        cache_key = (member.pk, store_code, repr(points), repr(key))
        if key is None or cache_key not in self._tokens:
            store = Store.objects.filter(code=store_code).first()
            if store is None:
                return "rt_no-such-store"
            self._tokens[cache_key] = confirmed_earlier(member, store)
        return self._tokens[cache_key]

    def refund_redemption(self, redemption_id: int, points: int, *, key=None):
        return self.post(f"/api/v1/redemptions/{redemption_id}/refunds/", {"points": points}, key=key)

    def lookup(self, code: str | None):
        return self.get("/api/v1/members/lookup/", {} if code is None else {"code": code})


def confirmed_earlier(member: Member, store: Store) -> str:
    """A redemption token the shopper confirmed a moment ago, for any amount they held then.

    spend_token_issue refuses more than the balance at the time of confirming; a test of
    the till side (a balance that changed since, a bad amount) needs the token as it was.
    """
    token = spend.TOKEN_PREFIX + uuid.uuid4().hex
    now = timezone.now()
    SpendAuthorization.objects.create(
        kind=SpendAuthorization.Kind.TOKEN, key_hash=spend._hash(token), member=member, store=store, max_points=10**12,
        expires_at=now + timedelta(seconds=settings.REDEMPTION_TOKEN_TTL_SECONDS), created_at=now,
    )
    return token


@dataclass
class Shop:
    """A merchant with one store and one live API key (raw, as the merchant saw it once)."""

    merchant: Merchant
    store: Store
    api_key: MerchantApiKey
    raw_key: str
    api: Api = field(repr=False)

    @property
    def plaza(self) -> Plaza:
        return self.store.plaza

    def new_api(self) -> Api:
        """Another POS with the same key (its own Client, e.g. for a thread of its own)."""
        return Api(self.raw_key)


def build_shop(*, plaza: Plaza | None = None, earn_rate_bp: int = 100, name: str | None = None) -> Shop:
    suffix = uuid.uuid4().hex[:8]
    merchant, store, api_key, raw_key = services.merchant_create(
        name=name or f"Shop {suffix}", plaza=plaza or make_plaza(), earn_rate_bp=earn_rate_bp, store_code=f"store-{suffix}",
    )
    return Shop(merchant=merchant, store=store, api_key=api_key, raw_key=raw_key, api=Api(raw_key))


def grant(member: Member, points: int) -> None:
    """Mall-funded points for the member, through the ledger."""
    ledger.points_grant(member=member, points=points, reason="test", idempotency_key=f"grant:{uuid.uuid4()}")


def balance(member: Member) -> int:
    return ledger.member_points_balance(member=member)


def code_for(member: Member, **kwargs) -> str:
    return codes.member_code_issue(member=member, **kwargs).code


@pytest.fixture
def make_shop():
    return build_shop


@pytest.fixture
def shop() -> Shop:
    return build_shop(name="Shop A")


@pytest.fixture
def other_shop() -> Shop:
    return build_shop(name="Shop B")


@pytest.fixture
def api(shop) -> Api:
    return shop.api


@pytest.fixture
def member() -> Member:
    return make_member(nickname="张三丰", phone="13800138000")


@pytest.fixture
def rich_member() -> Member:
    """A member holding 1000 points."""
    m = make_member(nickname="Alice")
    grant(m, 1000)
    return m


def assert_error(response, status: int, code: str) -> dict:
    """The response is an error in the API's shape: JSON ``{"code", "message", …}``."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"], body
    return body
