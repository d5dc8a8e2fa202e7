"""seed_demo's mall: four plazas in four cities and thirty tenants across the categories a
Chinese mall has, each with a store (found by its code before it is made)."""

from dataclasses import dataclass

from members import services
from members.models import Plaza, Store

PLAZAS = [
    # code, name, city
    ("sh-wanda", "上海五角场万达广场", "上海"),
    ("bj-wanda", "北京CBD万达广场", "北京"),
    ("gz-wanda", "广州白云万达广场", "广州"),
    ("cd-wanda", "成都金牛万达广场", "成都"),
]


@dataclass(frozen=True)
class Tenant:
    name: str
    plaza: str
    store_code: str
    category: str
    earn_rate_bp: int
    # A ticket there, in fen: (typical low, typical high).
    ticket: tuple[int, int]


def _t(name, plaza, code, category, rate, low, high):
    return Tenant(name, plaza, code, category, rate, (low * 100, high * 100))


# The first is the demo POS's shop (its key is printed), and the coupons' claim shop.
TENANTS = [
    _t("星巴克 Starbucks", "sh-wanda", "sh-starbucks", "餐饮", 100, 30, 120),
    _t("海底捞 Haidilao", "sh-wanda", "sh-haidilao", "餐饮", 200, 150, 900),
    _t("优衣库 UNIQLO", "sh-wanda", "sh-uniqlo", "服饰", 150, 99, 800),
    _t("万达影城 Wanda Cinema", "sh-wanda", "sh-cinema", "影院", 100, 45, 260),
    _t("盒马鲜生 Freshippo", "sh-wanda", "sh-hema", "超市", 50, 60, 600),
    _t("丝芙兰 SEPHORA", "sh-wanda", "sh-sephora", "美妆", 150, 200, 1500),
    _t("乐高 LEGO", "sh-wanda", "sh-lego", "亲子", 100, 199, 2000),
    _t("万达停车 Parking", "sh-wanda", "sh-parking", "停车", 100, 10, 40),
    _t("喜茶 HEYTEA", "bj-wanda", "bj-heytea", "餐饮", 100, 19, 80),
    _t("西贝莜面村 Xibei", "bj-wanda", "bj-xibei", "餐饮", 150, 120, 600),
    _t("Apple", "bj-wanda", "bj-apple", "数码", 50, 1500, 12000),
    _t("ZARA", "bj-wanda", "bj-zara", "服饰", 150, 199, 1200),
    _t("万达影城 北京", "bj-wanda", "bj-cinema", "影院", 100, 45, 260),
    _t("华润万家 Vanguard", "bj-wanda", "bj-vanguard", "超市", 50, 50, 500),
    _t("宝大师 Kids Club", "bj-wanda", "bj-kids", "亲子", 100, 99, 600),
    _t("北京停车 Parking", "bj-wanda", "bj-parking", "停车", 100, 10, 40),
    _t("太二酸菜鱼 Tai Er", "gz-wanda", "gz-taier", "餐饮", 150, 90, 400),
    _t("点都德 Dim Dou Dak", "gz-wanda", "gz-dimsum", "餐饮", 150, 80, 500),
    _t("华为 HUAWEI", "gz-wanda", "gz-huawei", "数码", 50, 800, 9000),
    _t("H&M", "gz-wanda", "gz-hm", "服饰", 150, 99, 700),
    _t("完美日记 Perfect Diary", "gz-wanda", "gz-perfect", "美妆", 150, 79, 600),
    _t("永旺 AEON", "gz-wanda", "gz-aeon", "超市", 50, 50, 600),
    _t("广州停车 Parking", "gz-wanda", "gz-parking", "停车", 100, 10, 40),
    _t("蜀大侠火锅 Shudaxia", "cd-wanda", "cd-hotpot", "餐饮", 200, 150, 800),
    _t("茶颜悦色 Sexy Tea", "cd-wanda", "cd-tea", "餐饮", 100, 16, 60),
    _t("小米之家 Xiaomi", "cd-wanda", "cd-xiaomi", "数码", 50, 200, 6000),
    _t("李宁 LI-NING", "cd-wanda", "cd-lining", "服饰", 150, 199, 1200),
    _t("万达影城 成都", "cd-wanda", "cd-cinema", "影院", 100, 40, 220),
    _t("玩具反斗城 Toys\"R\"Us", "cd-wanda", "cd-toys", "亲子", 100, 99, 900),
    _t("屈臣氏 Watsons", "cd-wanda", "cd-watsons", "美妆", 100, 39, 400),
]
CATEGORIES = sorted({tenant.category for tenant in TENANTS})


def plazas_ensure() -> list[Plaza]:
    found = {plaza.code: plaza for plaza in Plaza.objects.filter(code__in=[code for code, _, _ in PLAZAS])}
    return [found.get(code) or services.plaza_create(code=code, name=name, city=city) for code, name, city in PLAZAS]


def stores_ensure(plazas: list[Plaza]) -> dict[str, Store]:
    """{store code: store}, in TENANTS order."""
    by_code = {plaza.code: plaza for plaza in plazas}
    found = {
        store.code: store
        for store in Store.objects.select_related("merchant", "plaza").filter(code__in=[t.store_code for t in TENANTS])
    }
    stores = {}
    for tenant in TENANTS:
        store = found.get(tenant.store_code)
        if store is None:
            _, store, _, _ = services.merchant_create(
                name=tenant.name, plaza=by_code[tenant.plaza], earn_rate_bp=tenant.earn_rate_bp, store_code=tenant.store_code
            )
        stores[tenant.store_code] = store
    return stores


def tenant_of(store: Store) -> Tenant:
    return _BY_CODE[store.code]


_BY_CODE = {tenant.store_code: tenant for tenant in TENANTS}
