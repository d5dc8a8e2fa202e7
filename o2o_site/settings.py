"""Settings for the big-membership backend, read from the environment.

Every variable is optional: with none set this is the embedded demo (SQLite in WAL
mode, django-q2 on its ORM broker, sandbox payments and pushes). The names are a
contract (DESIGN.md "External contracts"); do not rename them.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("O2O_VAR_DIR", "").strip() or BASE_DIR / "var")
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), not {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {raw!r}") from None


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, "").strip() or default  # empty is unset, as for env_bool and env_int


# --- Core -------------------------------------------------------------------------

# Safe by default: DEBUG is off unless set, and then SECRET_KEY and ALLOWED_HOSTS are
# required. `make run` sets what the demo needs (DEBUG and with it the sandbox; the key
# is then a random one made once in var/); the test suite sets its own (tests/settings.py).
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (a long random string, the same on every host)")
    # The demo's key: random, made once on this machine, never in the code.
    _key_file = VAR_DIR / "secret_key"
    if not _key_file.exists():
        import secrets

        _key_file.write_text(secrets.token_urlsafe(50))
        _key_file.chmod(0o600)
    SECRET_KEY = _key_file.read_text().strip()
# Old keys that still verify what they signed (shopper tokens, member codes, links),
# so that rotating SECRET_KEY does not log every shopper out at once.
SECRET_KEY_FALLBACKS = [k.strip() for k in env_str("SECRET_KEY_FALLBACKS").split(",") if k.strip()]

ALLOWED_HOSTS = [h.strip() for h in env_str("ALLOWED_HOSTS").split(",") if h.strip()]
if not ALLOWED_HOSTS:
    if not DEBUG:
        raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is off")
    ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]

# Sandbox: payments through the sandbox cashier, pushes into the sandbox outbox, demo
# logins. It hands out points for nothing, so it is refused outside DEBUG.
O2O_SANDBOX = env_bool("O2O_SANDBOX", DEBUG)
if O2O_SANDBOX and not DEBUG:
    raise ImproperlyConfigured("O2O_SANDBOX is refused when DEBUG is off")

INSTALLED_APPS = [
    "o2o_site.apps.MallAdminConfig",  # django.contrib.admin with the mall's site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "core",
    "members",
    "coupons",
    "payments",
    "bots",
    "backoffice",
]

MIDDLEWARE = [
    # Probes and metrics first: plain HTTP, any Host (see "Operations" below, core/ops.py).
    "core.ops.OperatorEndpointsMiddleware",
    "core.logs.RequestIdMiddleware",
    "core.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "o2o_site.urls"
WSGI_APPLICATION = "o2o_site.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------------

# SQLite is written by gunicorn threads and the task cluster at once: WAL lets readers
# go on during a write, IMMEDIATE takes the write lock at BEGIN (so a transaction never
# fails half-way on lock upgrade), and the busy timeout makes writers wait, not fail.
SQLITE_PATH = Path(env_str("O2O_SQLITE_PATH") or VAR_DIR / "o2o.sqlite3")
SQLITE_OPTIONS = {
    "transaction_mode": "IMMEDIATE",
    "timeout": 30,
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
}
DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": SQLITE_PATH}}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # However it was named (no DATABASE_URL, or sqlite:///path), SQLite gets its options.
    DATABASES["default"]["OPTIONS"] = {**SQLITE_OPTIONS, **DATABASES["default"].get("OPTIONS", {})}
    # Opening SQLite and running the PRAGMAs costs more than a short request.
    DATABASES["default"]["CONN_MAX_AGE"] = 60
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # A file, not :memory:, so that test threads share it; one per test process, so that
    # parallel runs on one machine do not destroy each other's database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}

# --- Cache and task queue ---------------------------------------------------------

# The cache holds what every worker must share (platform access tokens, throttles),
# so the embedded default is the database, not process memory.
REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "o2o_cache",
        }
    }

Q_CLUSTER = {
    # Clusters of one name share one queue: two deployments on one Redis need two names.
    "name": env_str("O2O_Q_CLUSTER_NAME", "o2o"),
    "workers": env_int("O2O_Q_WORKERS", 2),
    "timeout": 120,
    "retry": 180,
    "max_attempts": 5,
    "catch_up": True,
    "ack_failures": True,
    "label": gettext_lazy("Task queue"),
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"
    Q_CLUSTER["poll"] = 0.5

# --- Auth, sessions, security -----------------------------------------------------

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
CSRF_TRUSTED_ORIGINS = [o.strip() for o in env_str("CSRF_TRUSTED_ORIGINS").split(",") if o.strip()]
# Admin messages live in the session, not in a cookie: a message may carry a secret shown
# once (a merchant's new API key), and a signed cookie is readable by whoever holds it.
MESSAGE_STORAGE = "django.contrib.messages.storage.session.SessionStorage"

# --- Internationalisation ---------------------------------------------------------

LANGUAGE_CODE = "zh-hans"
LANGUAGES = [("zh-hans", "简体中文"), ("en", "English")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "Asia/Shanghai"
USE_I18N = True
USE_TZ = True

# --- Static files -----------------------------------------------------------------

STATIC_URL = "/static/"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed names and a manifest, made by `collectstatic`: files can be cached forever.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG

# --- Points and money -------------------------------------------------------------

# Money is integer fen and points are integers everywhere (DESIGN.md "Money and points").
POINT_VALUE_FEN = env_int("POINT_VALUE_FEN", 1)
POINTS_LIFETIME_DAYS = env_int("POINTS_LIFETIME_DAYS", 365)
DEFAULT_EARN_RATE_BP = env_int("DEFAULT_EARN_RATE_BP", 100)
MAX_AMOUNT_FEN = env_int("MAX_AMOUNT_FEN", 100_000_000)
MAX_POINTS = env_int("MAX_POINTS", MAX_AMOUNT_FEN)
CHECKIN_POINTS = env_int("CHECKIN_POINTS", 10)
CHECKIN_STREAK_DAYS = env_int("CHECKIN_STREAK_DAYS", 7)
CHECKIN_STREAK_BONUS = env_int("CHECKIN_STREAK_BONUS", 50)
LAPSED_AFTER_DAYS = env_int("LAPSED_AFTER_DAYS", 120)
# Lifecycle segments (members/segments.py): loyal = a purchase in each of the last N whole
# months; occasional = at least this many visits in 12 months; high-value = the top share
# of members by 12-month spend.
SEGMENT_LOYAL_MONTHS = env_int("SEGMENT_LOYAL_MONTHS", 3)
SEGMENT_OCCASIONAL_MIN_VISITS = env_int("SEGMENT_OCCASIONAL_MIN_VISITS", 2)
SEGMENT_HIGH_VALUE_SHARE_PCT = env_int("SEGMENT_HIGH_VALUE_SHARE_PCT", 20)
# Tiers (members/tiers.py): a member whose 12-month spend fell below their tier keeps it
# this many days after the nightly review first saw it so, then moves down.
TIER_GRACE_DAYS = env_int("TIER_GRACE_DAYS", 90)
# Merchants' campaigns (coupons/merchant_campaigns.py): an audience below the minimum is
# refused and every figure a merchant sees is of at least that many members; at most
# this many members a campaign, this many pending or active at once, and this many
# requests a day (each one counts an audience).
MERCHANT_CAMPAIGN_MIN_AUDIENCE = env_int("MERCHANT_CAMPAIGN_MIN_AUDIENCE", 50)
MERCHANT_CAMPAIGN_MAX_TARGETS = env_int("MERCHANT_CAMPAIGN_MAX_TARGETS", 10_000)
MERCHANT_CAMPAIGN_OPEN_MAX = env_int("MERCHANT_CAMPAIGN_OPEN_MAX", 3)
MERCHANT_CAMPAIGN_REQUESTS_PER_DAY = env_int("MERCHANT_CAMPAIGN_REQUESTS_PER_DAY", 10)
# Check-in proofs (members/checkin.py): the plaza screen shows a new code this often,
# each valid this long; printed links last this many days unless staff choose; a WeChat
# LOCATION report counts this long for a scan; a screen code opened in time stays good
# this long in the same browser session (a slow login does not lose it).
CHECKIN_SCREEN_REFRESH_SECONDS = env_int("CHECKIN_SCREEN_REFRESH_SECONDS", 30)
CHECKIN_SCREEN_TOKEN_SECONDS = env_int("CHECKIN_SCREEN_TOKEN_SECONDS", 60)
CHECKIN_PRINTED_LINK_DAYS = env_int("CHECKIN_PRINTED_LINK_DAYS", 30)
CHECKIN_LOCATION_MAX_AGE_SECONDS = env_int("CHECKIN_LOCATION_MAX_AGE_SECONDS", 600)
CHECKIN_SEEN_GRACE_SECONDS = env_int("CHECKIN_SEEN_GRACE_SECONDS", 300)
# Mall-funded points on a sale (the tier extra) stay pending this long, the refund
# window, before they can be spent; a refund inside it cancels them.
MALL_POINTS_HOLD_DAYS = env_int("MALL_POINTS_HOLD_DAYS", 7)
# Per-merchant limits, unless the merchant has its own (admin): the largest single sale,
# and the mall-funded points released a day for its sales (the rest is held for staff).
MERCHANT_MAX_SALE_FEN = env_int("MERCHANT_MAX_SALE_FEN", MAX_AMOUNT_FEN)
MERCHANT_MALL_POINTS_DAILY_CAP = env_int("MERCHANT_MALL_POINTS_DAILY_CAP", 100_000)
# A scanned member code authorises one spend of at most this many points; above it the
# shopper confirms in the app (a redemption token, valid this many seconds).
REDEEM_CODE_MAX_POINTS = env_int("REDEEM_CODE_MAX_POINTS", 5000)
REDEMPTION_TOKEN_TTL_SECONDS = env_int("REDEMPTION_TOKEN_TTL_SECONDS", 120)
# Staff roles (members/roles.py): the most points one adjustment in the admin may move,
# either way, for anyone but an operator (customer service, mainly).
CS_ADJUST_MAX_POINTS = env_int("CS_ADJUST_MAX_POINTS", 500)
# Orders paid by scanning a shop's QR (payments/orders.py): how long one can be paid
# (sent to the platform as time_expire; the schedule closes it after), and the largest
# notification body read (a platform's are a few KB).
ORDER_PAY_MINUTES = env_int("ORDER_PAY_MINUTES", 15)
ORDER_OPEN_MAX = env_int("ORDER_OPEN_MAX", 5)  # a shopper's orders awaiting payment at once
PAYMENT_NOTIFY_MAX_BYTES = env_int("PAYMENT_NOTIFY_MAX_BYTES", 65536)
if POINT_VALUE_FEN <= 0 or POINTS_LIFETIME_DAYS <= 0 or MAX_AMOUNT_FEN <= 0:
    raise ImproperlyConfigured("POINT_VALUE_FEN, POINTS_LIFETIME_DAYS and MAX_AMOUNT_FEN must be positive")

# --- Platforms (WeChat, Alipay) ---------------------------------------------------

# Every outbound call goes to these bases, so tests and staging can point them at a
# local fake. core/platforms/ reads them (and members/web_auth.py the two OAuth pages).
WECHAT_APP_ID = env_str("WECHAT_APP_ID")
WECHAT_APP_SECRET = env_str("WECHAT_APP_SECRET")
WECHAT_TOKEN = env_str("WECHAT_TOKEN")
WECHAT_ENCODING_AES_KEY = env_str("WECHAT_ENCODING_AES_KEY")
WECHAT_MINIAPP_ID = env_str("WECHAT_MINIAPP_ID")
WECHAT_MINIAPP_SECRET = env_str("WECHAT_MINIAPP_SECRET")
WECHAT_PAY_MCH_ID = env_str("WECHAT_PAY_MCH_ID")
WECHAT_PAY_API_KEY = env_str("WECHAT_PAY_API_KEY")
WECHAT_PAY_CERT_PATH = env_str("WECHAT_PAY_CERT_PATH")
WECHAT_PAY_KEY_PATH = env_str("WECHAT_PAY_KEY_PATH")
# WeChat Pay APIv3 (new merchant numbers): the APIv3 key, the merchant's API key pair
# (private key and its certificate's serial), and WeChat Pay's public key and its id
# (PUB_KEY_ID_…). Keys: PEM text or a file path.
WECHAT_PAY_API_V3_KEY = env_str("WECHAT_PAY_API_V3_KEY")
WECHAT_PAY_PRIVATE_KEY = env_str("WECHAT_PAY_PRIVATE_KEY")
WECHAT_PAY_CERT_SERIAL = env_str("WECHAT_PAY_CERT_SERIAL")
WECHAT_PAY_PUBLIC_KEY = env_str("WECHAT_PAY_PUBLIC_KEY")
WECHAT_PAY_PUBLIC_KEY_ID = env_str("WECHAT_PAY_PUBLIC_KEY_ID")
ALIPAY_APP_ID = env_str("ALIPAY_APP_ID")
ALIPAY_APP_PRIVATE_KEY = env_str("ALIPAY_APP_PRIVATE_KEY")
ALIPAY_PUBLIC_KEY = env_str("ALIPAY_PUBLIC_KEY")
ALIPAY_SELLER_ID = env_str("ALIPAY_SELLER_ID")
WECHAT_API_BASE_URL = env_str("WECHAT_API_BASE_URL", "https://api.weixin.qq.com/")
WECHAT_PAY_API_BASE_URL = env_str("WECHAT_PAY_API_BASE_URL", "https://api.mch.weixin.qq.com/")
ALIPAY_GATEWAY_URL = env_str("ALIPAY_GATEWAY_URL", "https://openapi.alipay.com/gateway.do")
# Where shoppers' browsers send them to log in (web OAuth: snsapi_base / auth_base).
WECHAT_OAUTH_AUTHORIZE_URL = env_str("WECHAT_OAUTH_AUTHORIZE_URL", "https://open.weixin.qq.com/connect/oauth2/authorize")
ALIPAY_OAUTH_AUTHORIZE_URL = env_str("ALIPAY_OAUTH_AUTHORIZE_URL", "https://openauth.alipay.com/oauth2/publicAppAuthorize.htm")
# The public origin of this site (https://mall.example.com) for links in QR posters,
# chat replies and pushes; empty: the host of the request at hand.
O2O_PUBLIC_BASE_URL = env_str("O2O_PUBLIC_BASE_URL")
# Seconds any single outbound platform call may take before it counts as failed.
PLATFORM_TIMEOUT_SECONDS = env_int("PLATFORM_TIMEOUT_SECONDS", 5)
# A new follower's unionid is asked for while their first message is answered (so that
# one person is one member before the mini-program opens), for at most this long; then
# a task asks again. The reply must stay well inside WeChat's 5 seconds.
WECHAT_UNIONID_INLINE_TIMEOUT_SECONDS = env_float("WECHAT_UNIONID_INLINE_TIMEOUT_SECONDS", 1.5)

# --- REST API ---------------------------------------------------------------------

# Requests per merchant API key (a rate DRF understands: "1200/min", "50/s").
MERCHANT_API_RATE = env_str("MERCHANT_API_RATE", "1200/min")
# Shopper logins per client IP: generous, a plaza's Wi-Fi puts many phones behind one.
SHOPPER_LOGIN_RATE = env_str("SHOPPER_LOGIN_RATE", "120/min")
SHOPPER_TOKEN_TTL_SECONDS = env_int("SHOPPER_TOKEN_TTL_SECONDS", 7 * 24 * 3600)
MINIAPP_SESSION_KEY_TTL_SECONDS = env_int("MINIAPP_SESSION_KEY_TTL_SECONDS", 3 * 24 * 3600)

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "core.api.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "core.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
    # Proxies in front of gunicorn that append to X-Forwarded-For; without the right
    # count a client could pick its own IP and dodge per-IP throttles.
    "NUM_PROXIES": env_int("NUM_PROXIES", 0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "O2O big membership API",
    "DESCRIPTION": (
        "Merchant (POS) API under /api/v1/ and shopper mini-program API under /api/mp/v1/. "
        "商户（POS）接口位于 /api/v1/，顾客小程序接口位于 /api/mp/v1/。\n\n"
        "Merchant calls send `Authorization: Bearer <api key>`; every POST sends an `Idempotency-Key`. Errors are "
        "`{\"code\", \"message\"}` with a stable code (validation errors add `errors` by field). Request bodies are "
        "JSON; fields not listed are ignored. Some rules need the server's data and answer 400 although the request "
        "has the documented shape: a member or coupon code that is wrong or expired, `to` before `from` or more than "
        "92 days, a sale above the merchant's own limit; each operation lists its error codes.\n\n"
        "商户调用须带 `Authorization: Bearer <API 密钥>`，每个 POST 须带 `Idempotency-Key`。错误格式为 "
        "`{\"code\", \"message\"}`，code 稳定可用于判断。请求体为 JSON，未列出的字段会被忽略。"
        "格式正确但需服务器数据判断的请求仍可能返回 400（会员码/券码错误或过期、结束日期早于开始日期或超过 92 天、"
        "超过商户单笔限额等），各接口列出了其错误码。"
    ),
    "VERSION": "1.0.0",
    # The POS operations first, then the back office's, then the shopper's (Swagger UI keeps this order).
    "TAGS": [
        {"name": "purchases", "description": "Record a purchase · 记录消费（顾客积分）"},
        {"name": "redemptions", "description": "Pay with points · 积分抵扣"},
        {"name": "coupons", "description": "Coupons at the till · 门店核销优惠券"},
        {"name": "lookup", "description": "Look up the shopper at the till · 收银台查询会员"},
        {"name": "orders", "description": "Payment QR orders · 扫码支付订单"},
        {"name": "refunds", "description": "Refunds of purchases, redemptions and orders · 退款与积分退还"},
        {"name": "back-office", "description": "Back-office lists for reconciliation, by day · 对账明细（按日）"},
        {"name": "reports", "description": "Daily report · 日报"},
        {"name": "settlements", "description": "Monthly settlement · 月度结算"},
        {"name": "campaigns", "description": "Coupon campaigns to segments of members · 会员分群营销活动"},
        {"name": "shopper", "description": "Shopper mini-program API · 顾客小程序接口"},
    ],
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "PointsTransactionKindEnum": "members.models.ledger.PointsTransaction.Kind",
        "MemberGenderEnum": "members.models.members.Member.Gender",
        "OrderStatusEnum": "payments.models.orders.Order.Status",
        "OrderRefundStatusEnum": "payments.models.orders.OrderRefund.Status",
    },
}

# --- Bots -------------------------------------------------------------------------

# Days the conversations log (inbound messages and replies) is kept before the daily purge.
BOT_CONVERSATION_DAYS = max(env_int("BOT_CONVERSATION_DAYS", 180), 2)

# --- Pushes -----------------------------------------------------------------------

PUSH_DAILY_CAP = env_int("PUSH_DAILY_CAP", 5)  # messages a member gets a day on a channel; the rest: inbox only
PUSH_MAX_ATTEMPTS = env_int("PUSH_MAX_ATTEMPTS", 8)
PUSH_CLAIM_SECONDS = env_int("PUSH_CLAIM_SECONDS", 300)
PUSH_RETRY_BASE_SECONDS = env_int("PUSH_RETRY_BASE_SECONDS", 60)
PUSH_RETRY_MAX_SECONDS = env_int("PUSH_RETRY_MAX_SECONDS", 3600)

# --- Logging ----------------------------------------------------------------------

# One JSON object per line on stdout (core/logs.py): time, level, logger, message,
# request_id (from X-Request-ID or made, also in the tasks a request enqueues), exc_info.
# LOG_FORMAT=plain gives the old one-line text, for reading in a terminal.
LOG_FORMAT = env_str("LOG_FORMAT", "json")
if LOG_FORMAT not in {"json", "plain"}:
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "core.logs.RequestIdFilter"}},
    "formatters": {
        "json": {"()": "core.logs.JsonFormatter"},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stdout",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    # Django's own loggers go through the same handler, not also Django's plain console one.
    "loggers": {"django": {"handlers": [], "level": "INFO", "propagate": True}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# --- Operations -------------------------------------------------------------------

# /healthz, /readyz and /metrics answer plain HTTP: a load balancer's or Prometheus's
# probe reaches the pod directly. core.ops answers them before SecurityMiddleware; this
# keeps them out of the HTTPS redirect all the same (Django matches the path without
# its leading slash).
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
# The bearer token Prometheus presents at /metrics; empty: /metrics is 404.
METRICS_TOKEN = env_str("METRICS_TOKEN")
# PROMETHEUS_MULTIPROC_DIR (read by prometheus_client itself, from the environment, when
# first imported): a directory shared by gunicorn's workers and qcluster on this host,
# emptied before they start; /metrics then adds up every process (core/metrics.py).
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
# Errors to Sentry when SENTRY_DSN is set (SENTRY_ENVIRONMENT, SENTRY_RELEASE: read by
# sentry-sdk). No personal data: shoppers' phone numbers and openids live in request
# bodies and local variables, which sentry-sdk sends even with send_default_pii off.
SENTRY_DSN = env_str("SENTRY_DSN")
if SENTRY_DSN:
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration

    sentry_sdk.init(
        dsn=SENTRY_DSN,
        integrations=[DjangoIntegration()],
        send_default_pii=False,
        max_request_body_size="never",
        include_local_variables=False,
    )
