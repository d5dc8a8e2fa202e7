"""Distances on the Earth and China's map datum (GCJ-02), for geofences."""

import math

EARTH_RADIUS_M = 6_371_009


def _out_of_china(latitude: float, longitude: float) -> bool:
    return not (73.66 < longitude < 135.05 and 3.86 < latitude < 53.55)


def _gcj_offset(x: float, y: float) -> tuple[float, float]:
    lat = -100 + 2 * x + 3 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    lng = 300 + x + 2 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    wave = (20 * math.sin(6 * x * math.pi) + 20 * math.sin(2 * x * math.pi)) * 2 / 3
    lat += wave + (20 * math.sin(y * math.pi) + 40 * math.sin(y / 3 * math.pi)) * 2 / 3
    lat += (160 * math.sin(y / 12 * math.pi) + 320 * math.sin(y * math.pi / 30)) * 2 / 3
    lng += wave + (20 * math.sin(x * math.pi) + 40 * math.sin(x / 3 * math.pi)) * 2 / 3
    lng += (150 * math.sin(x / 12 * math.pi) + 300 * math.sin(x / 30 * math.pi)) * 2 / 3
    return lat, lng


def wgs84_to_gcj02(latitude: float, longitude: float) -> tuple[float, float]:
    """GCJ-02, the datum Chinese maps must use, from WGS-84 (GPS): a published
    approximation, within a few metres; outside China the two are the same."""
    if _out_of_china(latitude, longitude):
        return latitude, longitude
    a, ee = 6378245.0, 0.00669342162296594323  # Krasovsky 1940
    d_lat, d_lng = _gcj_offset(longitude - 105.0, latitude - 35.0)
    rad = latitude / 180.0 * math.pi
    magic = 1 - ee * math.sin(rad) ** 2
    d_lat = (d_lat * 180.0) / ((a * (1 - ee)) / (magic * math.sqrt(magic)) * math.pi)
    d_lng = (d_lng * 180.0) / (a / math.sqrt(magic) * math.cos(rad) * math.pi)
    return latitude + d_lat, longitude + d_lng


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> float:
    """Great-circle distance in metres (haversine)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    d_phi, d_lambda = phi2 - phi1, math.radians(lng2 - lng1)
    h = math.sin(d_phi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(d_lambda / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))
