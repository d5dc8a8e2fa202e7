"""Helpers for the order tests: a shopper speaking to /api/mp/v1/orders/, and checks of
what an order moved."""

import json

from django.test import Client

from members.auth import shopper_token_issue
from members.models import Push
from payments.models import Order


class Shopper:
    def __init__(self, member, *, client: Client | None = None):
        self.member = member
        token = shopper_token_issue(member=member).token
        self.client = client or Client()
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, path):
        return self.client.get("/api/mp/v1/" + path, headers=self.headers)

    def post(self, path, body):
        return self.client.post("/api/mp/v1/" + path, data=json.dumps(body), content_type="application/json", headers=self.headers)

    def order(self, *, store_code, amount_fen, channel="sandbox", points_to_use=None, **extra):
        body = {"store_code": store_code, "amount_fen": amount_fen, "channel": channel, **extra}
        if points_to_use is not None:
            body["points_to_use"] = points_to_use
        return self.post("orders/", body)


def order_pushes(order: Order) -> list[Push]:
    return list(Push.objects.filter(event="order_paid", event_key=f"order_paid:{order.pk}"))
