"""The board's map without a database: the Web Mercator tile arithmetic, the layout of zones
and shelters (the same with tiles and without), the tiles that cover the picture, and the
Content-Security-Policy that names the tile server and nothing wider."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from config.settings import Settings, SettingsError, load_settings
from dispatch.board import BoardState, Place, ZoneCounts
from hosen.console.map import HEIGHT, WIDTH, content_security_policy, draw, tile_url, tile_xy

TILES = "http://127.0.0.1:8123/tiles/{z}/{x}/{y}.png"
# Three zones and a shelter of Kiryat Tamar (the sample profile's coordinates).
PLACES = [
    Place(1, "kt-north", "North", 31.6180, 34.7750, "zone"),
    Place(2, "kt-center", "Centre", 31.6100, 34.7700, "zone"),
    Place(3, "kt-vatika", "Vatika", 31.6030, 34.7630, "zone"),
    Place(2, "sh-1", "Shelter 1", 31.6104, 34.7705, "shelter", 120),
]


def _counts() -> dict[int | None, ZoneCounts]:
    def zone(zone_id: int, ok: int, waiting: int) -> ZoneCounts:
        counts = dict.fromkeys(BoardState, 0)
        counts[BoardState.OK], counts[BoardState.WAITING] = ok, waiting
        return ZoneCounts(zone_id=zone_id, counts=counts)

    return {1: zone(1, 3, 1), 2: zone(2, 0, 4), 3: zone(3, 0, 0)}


def _settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'unused.sqlite3'}",
        _env_file=None,  # type: ignore[call-arg]
        **values,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("lat", "lon", "zoom", "tile"),
    [
        (0.0, 0.0, 1, (1, 1)),  # the middle of the world is where four tiles meet
        (85.0511287798, -180.0, 3, (0, 0)),  # the top left corner
        (51.5074, -0.1278, 10, (511, 340)),  # London: OpenStreetMap's tile 10/511/340
        (48.8566, 2.3522, 11, (1037, 704)),  # Paris: tile 11/1037/704
    ],
)
def test_a_known_point_falls_in_its_known_tile(
    lat: float, lon: float, zoom: int, tile: tuple[int, int]
) -> None:
    x, y = tile_xy(lat, lon, zoom)
    assert (math.floor(x), math.floor(y)) == tile


def test_a_tile_url_is_the_template_filled_in() -> None:
    assert tile_url(TILES, z=15, x=19549, y=13344) == (
        "http://127.0.0.1:8123/tiles/15/19549/13344.png"
    )


def test_zones_and_shelters_are_drawn_the_same_with_tiles_and_without(tmp_path: Path) -> None:
    offline = draw(PLACES, _counts(), settings=_settings(tmp_path))
    online = draw(
        PLACES,
        _counts(),
        settings=_settings(tmp_path, map_tiles_url=TILES, map_tiles_attribution="© OSM"),
    )
    assert offline.spots == online.spots
    assert offline.tiles == [] and offline.attribution is None
    assert online.tiles and online.attribution == "© OSM"
    by_name = {spot.name: spot for spot in offline.spots}
    assert by_name["North"].colour == "hsl(90, 70%, 42%)"  # three of four accounted for
    assert by_name["Centre"].colour == "hsl(0, 70%, 42%)"  # nobody yet
    assert by_name["Vatika"].colour == "#9ca3af"  # nobody asked
    assert by_name["Shelter 1"].kind == "shelter" and by_name["Shelter 1"].capacity == 120
    # North is north-east of Vatika: up and to the right; every place inside the picture.
    assert by_name["North"].y < by_name["Vatika"].y and by_name["North"].x > by_name["Vatika"].x
    assert all(0 < s.x < WIDTH and 0 < s.y < HEIGHT for s in offline.spots)


def test_the_tiles_cover_the_picture_and_sit_under_the_zones_they_show(tmp_path: Path) -> None:
    settings = _settings(tmp_path, map_tiles_url=TILES, map_tiles_attribution="© OSM")
    drawn = draw(PLACES, _counts(), settings=settings)
    size = drawn.tiles[0].size
    assert min(t.x for t in drawn.tiles) <= 0 and max(t.x + t.size for t in drawn.tiles) >= WIDTH
    assert min(t.y for t in drawn.tiles) <= 0 and max(t.y + t.size for t in drawn.tiles) >= HEIGHT
    assert len(drawn.tiles) <= (math.ceil(WIDTH / size) + 1) * (math.ceil(HEIGHT / size) + 1)
    # The tile under the centre zone is the one tile_xy names for its coordinates.
    centre = next(s for s in drawn.spots if s.name == "Centre")
    under = next(
        t
        for t in drawn.tiles
        if t.x <= centre.x < t.x + t.size - 0.5 and t.y <= centre.y < t.y + t.size - 0.5
    )
    z = int(under.href.split("/")[4])
    x, y = tile_xy(31.6100, 34.7700, z)
    assert under.href == tile_url(TILES, z=z, x=math.floor(x), y=math.floor(y))


def test_one_place_alone_is_drawn_at_the_closest_zoom_the_server_has(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, map_tiles_url=TILES, map_tiles_attribution="© OSM", map_tiles_max_zoom=16
    )
    drawn = draw(PLACES[1:2], _counts(), settings=settings)
    assert (drawn.spots[0].x, drawn.spots[0].y) == (WIDTH / 2, HEIGHT / 2)
    assert {t.href.split("/")[4] for t in drawn.tiles} == {"16"}
    assert drawn.tiles[0].size == 256.5  # whole tiles at their own zoom
    assert not draw([], _counts(), settings=settings)


def test_the_policy_names_the_tile_server_only_when_there_is_one(tmp_path: Path) -> None:
    assert "img-src 'self' data:;" in content_security_policy(None)
    settings = _settings(tmp_path, map_tiles_url=TILES, map_tiles_attribution="© OSM")
    assert settings.map_tiles_origin == "http://127.0.0.1:8123"
    policy = content_security_policy(settings.map_tiles_origin)
    assert "img-src 'self' data: http://127.0.0.1:8123;" in policy
    assert "default-src 'self';" in policy and "script-src 'self';" in policy


@pytest.mark.parametrize(
    ("url", "attribution", "problem"),
    [
        ("https://{s}.tile.example.org/{z}/{x}/{y}.png", "©", "one host"),
        ("https://tiles.example.org/{z}/{x}.png", "©", "{z}, {x} and {y}"),
        ("https://tiles.example.org/{z}/{x}/{y}/{r}.png", "©", "{z}, {x} and {y}"),
        ("ftp://tiles.example.org/{z}/{x}/{y}.png", "©", "http"),
        ("https://u:p@tiles.example.org/{z}/{x}/{y}.png", "©", "user name"),
        ("https://tiles.example.org/{z}/{x}/{y}.png;x", "©", "semicolons"),
        ("https://tiles.example.org/{z}/{x}/{y}.png", "", "ATTRIBUTION"),
    ],
)
def test_a_tile_url_the_policy_could_not_name_exactly_is_refused(
    tmp_path: Path, url: str, attribution: str, problem: str
) -> None:
    with pytest.raises(SettingsError, match=re.escape(problem)):
        load_settings(
            database_url=f"sqlite:///{tmp_path / 'unused.sqlite3'}",
            map_tiles_url=url,
            map_tiles_attribution=attribution,
            _env_file=None,
        )


def test_no_tile_url_is_no_tiles(tmp_path: Path) -> None:
    settings = _settings(tmp_path, map_tiles_url="")
    assert settings.map_tiles_url is None and settings.map_tiles_origin is None
