"""Shoppers driven through the real endpoints, in-process: what ``manage.py simulate`` does.

Each simulated day is a round of real traffic that happens *now* (there is no fake
clock in production code): for each shopper, maybe a check-in by scanning the plaza
screen's WeChat QR (a SCAN event to /wechat/, signed as WeChat signs), a chat ("积分"),
a POS purchase through the merchant API (POST /api/v1/purchases/ with the member code
the shopper's app shows), a redemption at the same till, and now and then a payment at
a shop's QR through the H5 pay page and the sandbox cashier. Between days the nightly
jobs run (expiry, releases, tier review, segments, expiry reminders, the roll-up); a
job whose run for today is done already does nothing the second time, as in production.

Requests go through django.test.Client against the real URLconf: every signature,
authentication, throttle and validation applies. The shoppers are seed_demo's.
"""

import json
import secrets
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from random import Random
from urllib.parse import urlencode

from django.conf import settings
from django.test import Client

from bots.simulator import simulated_xml
from bots.wechat import signature_of, wechat_crypto, wechat_token
from bots.inbound import xml_fields, xml_root
from members import auth, checkin, codes, ledger, ledger_checks, reminders, segments, tiers
from members.models import Identity, MerchantApiKey, Store
from members.tasks import points_release_due

DEMO_OPENID_PREFIX = "demo-openid-"
KEY_NAME = "simulate"


class SimulationError(Exception):
    pass


@dataclass
class Report:
    days: int = 0
    requests: Counter = field(default_factory=Counter)  # "purchase 201" → n
    violations: list[str] = field(default_factory=list)


def _host() -> str:
    hosts = [h for h in settings.ALLOWED_HOSTS if h not in ("*",) and not h.startswith(".")]
    return hosts[0] if hosts else "localhost"


class Simulation:
    def __init__(self, *, shoppers: int, seed: int = 1, payments: bool = True):
        self.rng = Random(seed)
        self.host = _host()
        identities = list(
            Identity.objects.filter(channel=Identity.Channel.WECHAT_OPENID, external_id__startswith=DEMO_OPENID_PREFIX,
                                    member__status="active")
            .select_related("member__join_plaza").order_by("external_id")[: shoppers]
        )
        if not identities:
            raise SimulationError("no demo shoppers: run `manage.py seed_demo` first")
        self.shoppers = identities
        self.stores = list(Store.objects.select_related("merchant", "plaza").filter(is_active=True, merchant__status="active"))
        if not self.stores:
            raise SimulationError("no stores: run `manage.py seed_demo` first")
        self.payments = payments and settings.O2O_SANDBOX
        self.keys = {}
        self.report = Report()

    # --- set-up ---------------------------------------------------------------------

    def _api_key(self, merchant) -> str:
        """A POS key of the merchant's own, made for this run (revoked at its end)."""
        if merchant.pk not in self.keys:
            _, raw = auth.merchant_api_key_create(merchant=merchant, name=KEY_NAME)
            self.keys[merchant.pk] = raw
        return self.keys[merchant.pk]

    def close(self) -> None:
        for key in MerchantApiKey.objects.filter(name=KEY_NAME, merchant_id__in=list(self.keys), revoked_at__isnull=True):
            auth.merchant_api_key_revoke(key=key)

    def _count(self, what: str, response) -> None:
        self.report.requests[f"{what} {response.status_code}"] += 1

    # --- a day --------------------------------------------------------------------

    def day(self, progress=None) -> None:
        for n, identity in enumerate(self.shoppers, 1):
            self.shopper(identity)
            if progress is not None:
                progress(n, len(self.shoppers))
        self.report.days += 1

    def shopper(self, identity: Identity) -> None:
        rng, member = self.rng, identity.member
        plaza = member.join_plaza or self.stores[0].plaza
        if rng.random() < 0.4:
            screen = checkin.checkin_screen_code(plaza=plaza)
            # The screen's scene is checkin:<plaza>:<token>: simulated_xml prefixes "checkin:".
            scene = screen.scene.split(":", 1)[1]
            self._count("wechat check-in", self._wechat(identity.external_id, simulated_xml(
                openid=identity.external_id, action="scan", plaza=scene)))
        if rng.random() < 0.25:
            self._count("wechat chat", self._wechat(identity.external_id, simulated_xml(
                openid=identity.external_id, action="text", text="积分")))
        local = [store for store in self.stores if store.plaza_id == plaza.pk] or self.stores
        if rng.random() < 0.6:
            store = rng.choice(local)
            api = self._api(store)
            code = codes.member_code_issue(member=member).code
            amount = rng.randint(20, 1500) * 100
            response = api("/api/v1/purchases/", {"member_code": code, "store_code": store.code, "amount_fen": amount,
                                                  "order_ref": f"SIM-{uuid.uuid4().hex[:12]}"})
            self._count("purchase", response)
            if rng.random() < 0.15:
                points = rng.choice((20, 50, 100))
                if ledger.member_points_spendable(member=member) >= points:
                    response = api("/api/v1/redemptions/", {"member_code": code, "store_code": store.code, "points": points})
                    self._count("redemption", response)
        if self.payments and rng.random() < 0.08:
            self._pay(identity, rng.choice(local))

    def _api(self, store: Store):
        client = Client(HTTP_HOST=self.host)
        headers = {"Authorization": f"Bearer {self._api_key(store.merchant)}"}

        def post(path: str, body: dict):
            return client.post(path, data=json.dumps(body), content_type="application/json",
                               headers={**headers, "Idempotency-Key": f"sim-{uuid.uuid4()}"})

        return post

    def _wechat(self, openid: str, xml: str):
        """POST ``xml`` to /wechat/ as WeChat does: signed query string, encrypted in safe mode."""
        token, crypto = wechat_token(), wechat_crypto()
        timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
        query = {"signature": signature_of(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce, "openid": openid}
        body = xml
        if crypto is not None:
            encrypted = xml_fields(xml_root(crypto.encrypt_message(xml, nonce, timestamp)))
            body = f"<xml><ToUserName><![CDATA[sim]]></ToUserName><Encrypt><![CDATA[{encrypted['Encrypt']}]]></Encrypt></xml>"
            query.update(encrypt_type="aes", msg_signature=encrypted["MsgSignature"])
        return Client(HTTP_HOST=self.host).post("/wechat/?" + urlencode(query), data=body.encode(), content_type="text/xml")

    def _pay(self, identity: Identity, store: Store) -> None:
        """The H5 pay flow: log in (the sandbox's demo login), pay at the shop's QR page,
        press "pay" in the sandbox cashier, whose signed notification marks the order paid."""
        client = Client(HTTP_HOST=self.host)
        response = client.post("/m/login/demo/", {"openid": identity.external_id, "next": f"/m/pay/{store.code}/"})
        if response.status_code != 302:
            self._count("pay login", response)
            return
        amount = f"{self.rng.randint(15, 600)}.{self.rng.choice(('00', '50', '80'))}"
        response = client.post(f"/m/pay/{store.code}/", {"amount": amount, "points": "0", "channel": "sandbox"})
        self._count("pay order", response)
        if response.status_code != 302 or "/sandbox/" not in response["Location"]:
            return
        cashier, _, next_url = response["Location"].partition("?")
        self._count("pay cashier", client.post(cashier, {"next": next_url.removeprefix("next=")}))

    # --- the night ----------------------------------------------------------------

    def night(self) -> None:
        ledger.points_expire_due()
        points_release_due()
        tiers.tiers_review()
        segments.segments_tag()
        reminders.expiry_reminders_send()
        ledger.ledger_rollup()

    def check(self) -> list[str]:
        self.report.violations = ledger_checks.books_violations(days=1)
        return self.report.violations
