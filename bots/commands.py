"""The bot's commands, once for every channel.

Each command is a function of a channel-neutral ``Context`` returning the reply text;
the WeChat official account, the Alipay service window (and later the mini-program)
call the same functions. Adding a command is one function and one ``Command`` in
``COMMANDS``: its name is also the key of the menu button that runs it.

Replies are in Chinese, or in English when the shopper wrote in English.

"签到" / "check in" typed as text does not check anyone in: a check-in is the record of
an offline visit, and the proof of presence is the scan of the plaza's QR code (a
``checkin:<plaza>`` scene, or ``checkin:<plaza>:<token>`` from the plaza's check-in
screen), checked against what the plaza accepts (members.checkin). Checking in at "the
plaza of the last visit" from a chat would pay points for staying at home and put
visits in the data that never happened. The command explains how to check in and shows
today's check-in if there is one.
"""

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from bots import coupon_replies
from members import checkin, ledger
from members.checkin import CheckinCode, CheckinResult, Location, Proof
from members.models import Checkin, Member, Plaza


@dataclass(frozen=True)
class Context:
    member: Member
    channel: str  # "wechat", "alipay", "miniapp"
    lang: str = "zh"  # "zh" or "en"
    plaza: Plaza | None = None  # the plaza of a scanned check-in code
    is_new: bool = False  # the member was created by this message
    member_card_url: str = ""  # absolute URL of the member card page
    checkin_code: CheckinCode | None = None  # the check-in code scanned (None: not one of ours)
    location: Location | None = None  # where the shopper's phone last said it was, recently


def _t(ctx: Context, *, zh: str, en: str) -> str:
    return en if ctx.lang == "en" else zh


def lang_of(text: str) -> str:
    """"zh" when the text has any CJK character, else "en"."""
    return "zh" if any("\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff" for ch in text or "") else "en"


# --- the commands -------------------------------------------------------------------


def points(ctx: Context) -> str:
    balance = ledger.member_points_balance(member=ctx.member)
    expiring = ledger.member_points_expiring(member=ctx.member, within_days=30)
    tier = ctx.member.tier.name if ctx.member.tier_id else ""
    zh = f"您的积分：{balance} 分"
    en = f"Your points: {balance}"
    if tier:
        zh += f"（{tier}）"
        en += f" ({tier})"
    if expiring:
        zh += f"\n其中 {expiring} 分将在 30 天内到期，记得使用哦。"
        en += f"\n{expiring} of them expire within 30 days: use them soon."
    zh += "\n在任一商户消费都能累积和使用积分。"
    en += "\nEarn and spend them at any shop in any of our plazas."
    return _t(ctx, zh=zh, en=en)


def checkin_howto(ctx: Context) -> str:
    today = (
        Checkin.objects.filter(member=ctx.member, day=timezone.localdate())
        .select_related("plaza")
        .order_by("-created_at")
        .first()
    )
    if today is not None:
        balance = ledger.member_points_balance(member=ctx.member)
        return _t(
            ctx,
            zh=f"您今天已在{today.plaza.name}签到（连续 {today.streak} 天），当前积分 {balance} 分。明天再来吧！",
            en=f"You checked in at {today.plaza.name} today (day {today.streak} in a row); "
            f"your balance is {balance} points. See you tomorrow!",
        )
    zh = "到店后扫描广场入口或服务台的签到二维码即可签到，每天每个广场可签到一次，连续签到还有奖励。"
    en = (
        "To check in, scan the check-in QR code at a plaza's entrance or service desk: "
        "once a day per plaza, with a bonus for a streak of days."
    )
    last = ctx.member.last_visit_plaza if ctx.member.last_visit_plaza_id else None
    if last is not None:
        zh += f"\n您上次光临的是{last.name}。"
        en += f"\nYour last visit was to {last.name}."
    return _t(ctx, zh=zh, en=en)


def coupons(ctx: Context) -> str:
    """优惠券: the member's usable coupons, the free ones to claim, the points mall (bots.coupon_replies)."""
    return coupon_replies.coupons(member=ctx.member, lang=ctx.lang, url=_h5_coupons_url(ctx))


def claim(ctx: Context, arg: str = "") -> str:
    """领券 <n>: claim the n-th free coupon listed; without n, the list (bots.coupon_replies)."""
    try:
        return coupon_replies.claim(member=ctx.member, lang=ctx.lang, url=_h5_coupons_url(ctx), arg=arg)
    except ledger.MemberNotActive:
        return member_not_active(ctx)


def _h5_coupons_url(ctx: Context) -> str:
    """The H5 coupons page (``coupons:list``) on the member card's host, or "" while there is none."""
    if not ctx.member_card_url:
        return ""
    try:
        card, page = reverse("h5:card"), reverse("coupons:list")
    except NoReverseMatch:
        return ""
    if not ctx.member_card_url.endswith(card):
        return ""
    return ctx.member_card_url[: len(ctx.member_card_url) - len(card)] + page


def member_code(ctx: Context) -> str:
    url = ctx.member_card_url
    zh = f"您的会员号：{ctx.member.member_no}"
    en = f"Your member number: {ctx.member.member_no}"
    if url:
        zh += f"\n打开会员卡出示动态会员码，收银台扫码即可累积或使用积分：{url}"
        en += f"\nOpen your member card and show its member code at the till to earn or spend points: {url}"
    return _t(ctx, zh=zh, en=en)


def help_list(ctx: Context) -> str:
    return _t(
        ctx,
        zh="您可以发送：\n积分 — 查询积分\n签到 — 如何签到\n优惠券 — 我的优惠券\n领券 — 免费领取优惠券\n"
        "会员码 — 打开会员卡\n帮助 — 显示本说明",
        en="You can send:\npoints — your balance\ncheck in — how to check in\n"
        "coupons — your coupons\nclaim — free coupons to claim\nmember code — your member card\nhelp — this list",
    )


@dataclass(frozen=True)
class Command:
    name: str  # also the menu button key (CLICK EventKey / Alipay ActionParam)
    run: Callable[..., str]  # run(ctx), or run(ctx, arg) for a command typed with an argument
    keywords: tuple[str, ...]  # what a shopper may type; compared after ``normalise`` (case, width, "!")
    # A command that writes (redeems, claims …) runs in the transaction that logs its
    # message, so that a retried message cannot run it twice; one that only reads is
    # answered without one (bots.dialogue.dialogue_quick_answer).
    writes: bool = False
    # Typed with an argument ("领券 2"): matched after ``normalise``, group 1 is run's ``arg``.
    pattern: re.Pattern | None = None


COMMANDS: dict[str, Command] = {
    command.name: command
    for command in [
        Command(
            "points", points, ("points", "point", "balance", "my points", "积分", "我的积分", "查积分", "查询积分"),
        ),
        Command("checkin", checkin_howto, ("check in", "checkin", "check-in", "签到", "打卡")),
        Command("coupons", coupons, ("coupons", "coupon", "my coupons", "优惠券", "我的优惠券", "券")),
        Command(
            "claim", claim, ("claim", "claim coupon", "free coupons", "领券", "领取", "领优惠券", "领取优惠券"),
            writes=True, pattern=coupon_replies.CLAIM_PATTERN,
        ),
        Command(
            "member_code", member_code,
            ("member code", "member card", "membership card", "code", "card", "会员码", "会员卡"),
        ),
        Command("help", help_list, ("help", "menu", "?", "帮助", "菜单")),
    ]
}

_TRAILING = re.compile(r"[\s!.。！~～]+$")


def normalise(text: str) -> str:
    """Full-width to half-width, case-folded, inner spaces collapsed, trailing "!." dropped."""
    text = unicodedata.normalize("NFKC", text or "").casefold()
    text = " ".join(text.split())
    return _TRAILING.sub("", text) or text


_BY_KEYWORD = {normalise(keyword): command for command in COMMANDS.values() for keyword in command.keywords}


def command_for_text(text: str) -> Command | None:
    typed = normalise(text)
    command = _BY_KEYWORD.get(typed)
    if command is None:
        command = next((c for c in COMMANDS.values() if c.pattern is not None and c.pattern.fullmatch(typed)), None)
    return command


def command_for_key(key: str) -> Command | None:
    """A menu button: its key is a command's name."""
    return COMMANDS.get(key or "")


def reply_to_text(ctx: Context, text: str) -> str:
    command = command_for_text(text)
    if command is None:
        return not_understood(ctx)
    match = command.pattern.fullmatch(normalise(text)) if command.pattern is not None else None
    return command.run(ctx, match.group(1)) if match else command.run(ctx)


def reply_to_key(ctx: Context, key: str) -> str:
    command = command_for_key(key)
    return command.run(ctx) if command else not_understood(ctx)


# --- replies to events ----------------------------------------------------------------


def not_understood(ctx: Context) -> str:
    return _t(
        ctx,
        zh="抱歉，我没有看懂。发送“积分”查询积分，“会员码”打开会员卡，“帮助”查看全部指令。",
        en='Sorry, I did not get that. Send "points" for your balance, "member code" for your card, '
        'or "help" for everything I can do.',
    )


def welcome(ctx: Context) -> str:
    if ctx.is_new:
        text = _t(
            ctx,
            zh="欢迎加入大会员！在集团任一广场的任一商户消费都能累积积分，积分可在任一商户抵现。",
            en="Welcome to the membership! Earn points at any shop in any of our plazas, and spend them at any shop.",
        )
    else:
        text = _t(ctx, zh="欢迎回来！", en="Welcome back!")
    return text + "\n" + help_list(ctx)


def checkin_scan(ctx: Context) -> str:
    """The shopper scanned ``ctx.checkin_code`` (None: a code of no active plaza, or forged)."""
    if ctx.checkin_code is None:
        return checkin_code_invalid(ctx)
    try:
        result = checkin.checkin_attempt(
            member=ctx.member, code=ctx.checkin_code, location=ctx.location, push=False  # the reply is the message
        )
    except ledger.MemberNotActive:
        return member_not_active(ctx)
    except checkin.CheckinRefused as refused:
        return checkin_refused(ctx, refused)
    return _checkin_done(ctx, result)


def checkin_refused(ctx: Context, refused: checkin.CheckinRefused) -> str:
    """Why this code did not check the shopper in, and how to check in at that plaza."""
    plaza = refused.plaza
    match refused:
        case checkin.CheckinTokenExpired():
            zh, en = "这个签到码已过期。", "This check-in code has expired."
        case checkin.CheckinOutOfRange():
            metres = refused.extra.get("distance_m", 0)
            zh = f"您的位置距{plaza.name}约 {metres} 米，不在签到范围内。"
            en = f"Your location is about {metres} m from {plaza.name}: too far to check in."
        case checkin.CheckinLocationRequired():
            zh = f"{plaza.name}需要确认您在广场内，但还没有收到您的位置。"
            en = f"{plaza.name} needs to know you are there, and we have no location from you yet."
        case _:
            zh = f"{plaza.name}需要到场签到，这个签到码不能用于签到。"
            en = f"{plaza.name} asks you to check in on the spot: this code does not check you in."
    return _t(ctx, zh=zh, en=en) + "\n" + checkin_ways(ctx, plaza)


def checkin_ways(ctx: Context, plaza: Plaza) -> str:
    """How to check in at ``plaza``: the proofs it accepts, the strongest first."""
    accepted = checkin.plaza_proofs_accepted(plaza=plaza)
    ways = []
    if Proof.SCREEN in accepted:
        ways.append(("扫描服务台屏幕上的签到码", "scan the code on the check-in screen at the service desk"))
    if Proof.PRINTED in accepted:
        ways.append(("扫描广场内张贴的最新签到海报", "scan a current check-in poster at the plaza"))
    if Proof.LOCATION in accepted and ctx.channel == "wechat":
        ways.append((
            "在公众号资料页打开“提供位置信息”，进入本公众号对话后在广场内再扫一次签到码",
            'turn on "Provide location" in this account\'s profile, open this chat and scan again inside the plaza',
        ))
    elif Proof.LOCATION in accepted:
        ways.append(("允许获取位置后在广场内再扫一次签到码", "allow your location and scan again inside the plaza"))
    if Proof.PERMANENT in accepted:
        ways.append(("扫描广场的签到二维码", "scan the plaza's check-in QR code"))
    if not ways:
        return _t(ctx, zh="这个广场暂不支持签到。", en="This plaza does not take check-ins at the moment.")
    return _t(
        ctx, zh="请" + "，或".join(zh for zh, _en in ways) + "。", en="Please " + ", or ".join(en for _zh, en in ways) + ".",
    )


def _checkin_done(ctx: Context, result: CheckinResult) -> str:
    plaza = result.plaza
    if result.already:
        zh = f"您今天已在{plaza.name}签到过了（连续 {result.streak} 天），当前积分 {result.points_balance} 分。"
        en = (
            f"You already checked in at {plaza.name} today (day {result.streak} in a row); "
            f"your balance is {result.points_balance} points."
        )
    else:
        zh = f"签到成功！{plaza.name} +{result.points} 积分，已连续签到 {result.streak} 天"
        en = f"Checked in at {plaza.name}: +{result.points} points, day {result.streak} in a row"
        if result.bonus_points:
            zh += f"，连续签到奖励 +{result.bonus_points} 积分"
            en += f", streak bonus +{result.bonus_points} points"
        zh += f"。当前积分 {result.points_balance} 分。"
        en += f". Your balance: {result.points_balance} points."
    if plaza.notice:
        zh += f"\n今日活动：{plaza.notice}"
        en += f"\nToday at {plaza.name}: {plaza.notice}"
    return _t(ctx, zh=zh, en=en)


def checkin_code_invalid(ctx: Context) -> str:
    return _t(
        ctx,
        zh="这个签到码已失效，请扫描广场服务台的最新签到码。",
        en="This check-in code is no longer valid: please scan the current one at the service desk.",
    )


def member_not_active(ctx: Context) -> str:
    return _t(
        ctx,
        zh="您的会员资格已暂停，如有疑问请联系广场服务台。",
        en="Your membership is suspended; please ask at a plaza's service desk.",
    )
