"""The board's map: the authority's zones (sized by their audience, coloured by the share
accounted for) and shelters, in Web Mercator, drawn as SVG by the server.

Tiles from the configured server (``HOSEN_MAP_TILES_URL``, a ``{z}/{x}/{y}`` template) are placed
as ``<image>`` elements under the zones, in the same projection; without one the map draws the
same zones and shelters on a blank ground, so it works offline. No script is involved: the map
prints, refreshes with the board's fragment, and keeps the console's strict
Content-Security-Policy, whose ``img-src`` names the tile server's origin and nothing wider.
The table of counts beside the map carries the same figures for anyone who cannot see it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from config.settings import Settings
from dispatch import board as boards
from registry.resources import Resource, ResourceKind, ResourceState

TILE = 256  # pixels a side, as every slippy-map tile server serves them
WIDTH, HEIGHT = 640, 360  # the SVG's viewBox
INNER_W, INNER_H = 560, 280  # what the places' spread may fill, leaving room for the labels
MAX_LAT = 85.0511287798  # Web Mercator's edge: the world is square
# Resources that shelter people, counted on their zone (they have no coordinates of their own).
SHELTERING = (ResourceKind.ACCESSIBLE_SHELTER, ResourceKind.COMMUNITY_CENTRE)


@dataclass(frozen=True)
class Spot:
    x: float
    y: float
    r: float
    name: str
    kind: str  # "zone" or "shelter"
    colour: str
    percent: int
    capacity: int
    resources: int = 0  # a zone's accessible shelters and community centres in service


@dataclass(frozen=True)
class Tile:
    x: float
    y: float
    size: float
    href: str


@dataclass(frozen=True)
class Map:
    spots: list[Spot]
    tiles: list[Tile]
    attribution: str | None

    def __bool__(self) -> bool:
        return bool(self.spots)


def tile_xy(lat: float, lon: float, zoom: float) -> tuple[float, float]:
    """Where a point falls in the slippy-map tile grid at ``zoom``: the integer parts are the
    tile's x and y (as in ``{z}/{x}/{y}``), the fractions the place within that tile."""
    lat = max(-MAX_LAT, min(MAX_LAT, lat))
    n = 2.0**zoom
    x = (lon + 180.0) / 360.0 * n
    y = (1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n
    return x, y


def tile_url(template: str, *, z: int, x: int, y: int) -> str:
    return template.replace("{z}", str(z)).replace("{x}", str(x)).replace("{y}", str(y))


def content_security_policy(tiles_origin: str | None) -> str:
    """The console's policy: everything from the console itself, images also from the tile
    server when one is configured (its origin only)."""
    images = "'self' data:" + (f" {tiles_origin}" if tiles_origin else "")
    return (
        f"default-src 'self'; img-src {images}; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'"
    )


def sheltering_by_zone(session: Session, *, authority_id: int) -> dict[int, int]:
    """Accessible shelters and community centres not out of service, counted per zone."""
    rows = session.execute(
        select(Resource.zone_id, func.count())
        .where(
            Resource.authority_id == authority_id,
            Resource.kind.in_(SHELTERING),
            Resource.state != ResourceState.OUT_OF_SERVICE,
        )
        .group_by(Resource.zone_id)
    )
    return {zone_id: count for zone_id, count in rows}


def draw(
    places: list[boards.Place],
    counts: dict[int | None, boards.ZoneCounts],
    *,
    settings: Settings,
    resources: dict[int, int] | None = None,
) -> Map:
    """Zones and shelters projected into the 640×360 box at the zoom that fits their spread
    (no closer than the tile server's closest zoom), with the tiles under them if configured."""
    if not places:
        return Map([], [], None)
    world = [tile_xy(p.lat, p.lon, 0) for p in places]  # zoom 0: the world is one tile
    xs = [TILE * x for x, _ in world]
    ys = [TILE * y for _, y in world]
    span_x, span_y = max(xs) - min(xs), max(ys) - min(ys)
    fit = min(
        INNER_W / span_x if span_x else math.inf,
        INNER_H / span_y if span_y else math.inf,
    )
    zoom = max(0.0, min(float(settings.map_tiles_max_zoom), math.log2(fit)))
    scale = 2.0**zoom
    left = (min(xs) + max(xs)) / 2 * scale - WIDTH / 2
    top = (min(ys) + max(ys)) / 2 * scale - HEIGHT / 2

    biggest = max((z.total for z in counts.values()), default=1) or 1
    spots = []
    for place, wx, wy in zip(places, xs, ys, strict=True):
        px, py = round(wx * scale - left, 1), round(wy * scale - top, 1)
        if place.kind == "shelter":
            spots.append(Spot(px, py, 5, place.name, "shelter", "#1f2937", 0, place.capacity))
            continue
        zone = counts.get(place.zone_id)
        share = zone.share if zone else 0.0
        size = zone.total if zone else 0
        radius = round(10 + 22 * math.sqrt(size / biggest), 1)
        # Red (nobody accounted for) to green (everyone); grey where nobody was asked.
        colour = f"hsl({round(120 * share)}, 70%, 42%)" if size else "#9ca3af"
        sheltering = (resources or {}).get(place.zone_id or -1, 0)
        spots.append(
            Spot(px, py, radius, place.name, "zone", colour, round(100 * share), 0, sheltering)
        )

    tiles: list[Tile] = []
    if settings.map_tiles_url:
        z = min(settings.map_tiles_max_zoom, math.floor(zoom))
        size = TILE * 2.0 ** (zoom - z)  # a tile drawn between its own zoom and the next
        last = 2**z - 1
        for ty in range(
            max(0, math.floor(top / size)), min(last, math.floor((top + HEIGHT) / size)) + 1
        ):
            for tx in range(math.floor(left / size), math.floor((left + WIDTH) / size) + 1):
                tiles.append(
                    Tile(
                        round(tx * size - left, 1),
                        round(ty * size - top, 1),
                        # Half a pixel more, so that no hairline shows between two tiles.
                        round(size + 0.5, 1),
                        tile_url(settings.map_tiles_url, z=z, x=tx % (last + 1), y=ty),
                    )
                )
    return Map(spots, tiles, settings.map_tiles_attribution if tiles else None)
