"""Setting up the official account: its menu, and each plaza's permanent check-in QR code.

Both call WeChat (menu/create, qrcode/create) through ``core.platforms.wechat_client``,
so they need WECHAT_APP_ID and WECHAT_APP_SECRET; they are run by staff, not on a
shopper's request.
"""

from dataclasses import dataclass

from core.platforms import wechat_client
from core.qr import qr_png, qr_svg
from members.checkin import checkin_scene
from members.models import Plaza

# Every CLICK key is the name of a command in bots.commands.COMMANDS.
MENU = {
    "button": [
        {"type": "click", "name": "积分", "key": "points"},
        {"type": "click", "name": "签到", "key": "checkin"},
        {
            "name": "会员",
            "sub_button": [
                {"type": "click", "name": "会员码", "key": "member_code"},
                {"type": "click", "name": "优惠券", "key": "coupons"},
                {"type": "click", "name": "领券", "key": "claim"},
                {"type": "click", "name": "帮助", "key": "help"},
            ],
        },
    ]
}


def menu_install(*, menu: dict | None = None) -> dict:
    """Replace the official account's menu (menu/create)."""
    return wechat_client().menu.create(menu or MENU)


@dataclass(frozen=True)
class PlazaQr:
    plaza: Plaza
    scene: str  # checkin:<plaza code>
    ticket: str
    url: str  # what the QR code encodes: scanning it opens the account with the scene

    def png(self, *, box_size: int = 10) -> bytes:
        return qr_png(self.url, box_size=box_size)

    def svg(self) -> str:
        return qr_svg(self.url)


def plaza_qr_create(*, plaza: Plaza) -> PlazaQr:
    """A permanent parametric QR code (QR_LIMIT_STR_SCENE) with the plaza's check-in scene.

    WeChat answers the same ticket for the same scene, so this is safe to repeat. The
    image is drawn here from the ticket's ``url``: showqrcode lives on mp.weixin.qq.com,
    outside the configured API base.
    """
    scene = checkin_scene(plaza=plaza)
    answer = wechat_client().qrcode.create(
        {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": scene}}}
    )
    return PlazaQr(plaza=plaza, scene=scene, ticket=answer.get("ticket", ""), url=answer.get("url", ""))
