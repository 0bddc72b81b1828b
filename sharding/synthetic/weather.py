"""Lighting and weather of a synthetic scene, and the background they paint (sky, clouds, hills).

One `Atmosphere` is drawn per scene from its seed. The background depends only on the ray
direction and the ego heading, so it moves with rotation and never with translation, like
anything infinitely far away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sharding.synthetic.textures import noise_profile, noise_tile

LIGHTINGS = ("day", "overcast", "dusk", "night")
WEATHERS = ("clear", "fog", "rain")
_LIGHTING_ODDS = (0.5, 0.2, 0.15, 0.15)
_WEATHER_ODDS = (0.65, 0.15, 0.2)

# Per lighting: sky colour at the zenith and at the horizon, ambient and direct light strength,
# sun elevation range (deg), sun colour.
_LIGHT = {
    "day": ((0.30, 0.52, 0.90), (0.72, 0.83, 0.95), 0.50, 0.65, (30, 65), (1.0, 0.97, 0.9)),
    "overcast": ((0.55, 0.58, 0.62), (0.76, 0.77, 0.79), 0.80, 0.15, (30, 60), (1.0, 1.0, 1.0)),
    "dusk": ((0.20, 0.22, 0.45), (0.95, 0.58, 0.33), 0.35, 0.55, (2, 10), (1.0, 0.7, 0.45)),
    "night": ((0.01, 0.02, 0.06), (0.05, 0.06, 0.11), 0.10, 0.0, (-30, -10), (0.6, 0.6, 0.8)),
}


@dataclass
class Atmosphere:
    """Light and air of one scene. Colours are linear RGB in [0, 1]."""

    lighting: str
    weather: str
    sky_zenith: np.ndarray  # float32 [3]
    sky_horizon: np.ndarray  # float32 [3]
    sun_direction: np.ndarray  # float32 [3] world frame, unit, pointing towards the sun
    sun_color: np.ndarray  # float32 [3]
    ambient: float  # light on every surface
    direct: float  # extra light on surfaces facing the sun
    fog_color: np.ndarray  # float32 [3]
    fog_distance_m: float  # distance at which 63% of a surface's colour is replaced by fog
    rain: float  # density of rain streaks, 0 = dry
    headlights: bool  # the ego lights the road ahead (night)
    clouds: np.ndarray  # float32 [64, 64] cloud cover tile (azimuth x elevation)
    cloud_amount: float
    skyline: np.ndarray  # float32 [512] hill height over azimuth, in [0, 1]
    skyline_deg: float  # height of the tallest hill above the horizon
    hill_color: np.ndarray  # float32 [3]

    @classmethod
    def sample(cls, rng: np.random.Generator, lighting: str = "random", weather: str = "random") -> Atmosphere:
        """Draw a scene's atmosphere; `lighting`/`weather` fix one of LIGHTINGS/WEATHERS."""
        if lighting == "random":
            lighting = str(rng.choice(LIGHTINGS, p=_LIGHTING_ODDS))
        if weather == "random":
            weather = str(rng.choice(WEATHERS, p=_WEATHER_ODDS))
        zenith, horizon, ambient, direct, sun_range, sun_color = _LIGHT[lighting]
        zenith, horizon = np.array(zenith, np.float32), np.array(horizon, np.float32)
        elevation = math.radians(rng.uniform(*sun_range))
        azimuth = rng.uniform(-math.pi, math.pi)
        sun = np.array([math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
                        math.sin(elevation)], np.float32)
        fog_distance, rain, fog_color = rng.uniform(900.0, 2000.0), 0.0, horizon.copy()
        if weather == "fog":
            fog_distance = rng.uniform(35.0, 90.0)
            fog_color = np.full(3, {"night": 0.08, "dusk": 0.62}.get(lighting, 0.78), np.float32)
            zenith = horizon = fog_color
            direct *= 0.3
        elif weather == "rain":
            fog_distance, rain = rng.uniform(150.0, 350.0), rng.uniform(0.004, 0.012)
            grey = horizon.mean() * 0.85
            zenith, horizon = 0.4 * zenith + 0.6 * grey, 0.4 * horizon + 0.6 * grey
            fog_color = horizon.copy()
            direct *= 0.3
        cloud_amount = {"day": rng.uniform(0.0, 0.6), "overcast": 0.9, "dusk": rng.uniform(0.2, 0.7),
                        "night": 0.3}[lighting]
        if weather == "fog":
            cloud_amount = 0.0  # the fog hides the sky
        hill = np.array(rng.uniform([0.28, 0.36, 0.30], [0.42, 0.48, 0.45]), np.float32)
        return cls(
            lighting=lighting, weather=weather, sky_zenith=zenith, sky_horizon=horizon, sun_direction=sun,
            sun_color=np.array(sun_color, np.float32), ambient=ambient, direct=direct,
            fog_color=np.asarray(fog_color, np.float32), fog_distance_m=float(fog_distance), rain=float(rain),
            headlights=lighting == "night", clouds=noise_tile(rng, 64, octaves=4), cloud_amount=float(cloud_amount),
            skyline=noise_profile(rng, 512), skyline_deg=float(rng.uniform(1.5, 7.0)),
            hill_color=hill * (ambient + 0.5 * direct),
        )

    def fog(self, distance: np.ndarray) -> np.ndarray:
        """float32 fraction of fog in front of a surface at `distance` metres (same shape)."""
        return (1.0 - np.exp(-np.asarray(distance, np.float32) / np.float32(self.fog_distance_m))).astype(np.float32)

    def surface_light(self, normal_z: np.ndarray | float, facing_sun: np.ndarray | float) -> np.ndarray:
        """Light multiplier for a surface: ambient (more on up-facing faces) + direct sun.

        facing_sun: cosine between the surface normal and the sun direction.
        Returns float32 [..., 3] (coloured by the sun).
        """
        sky_part = self.ambient * (0.85 + 0.15 * np.asarray(normal_z, np.float32))
        sun_part = self.direct * np.clip(np.asarray(facing_sun, np.float32), 0.0, None)
        return (sky_part[..., None] + sun_part[..., None] * self.sun_color).astype(np.float32)

    def background(self, elevation: np.ndarray, azimuth: np.ndarray) -> np.ndarray:
        """Sky, clouds and distant hills for rays of world azimuth/elevation (rad), float32 [P, 3]."""
        up = np.clip(elevation * (1.0 / 0.6), 0.0, 1.0)[:, None]
        sky = self.sky_horizon * (1.0 - up) + self.sky_zenith * up
        if self.cloud_amount > 0:
            # clouds: a tile wrapped around the azimuth, stretched towards the horizon like a dome
            col = (azimuth * (64 / (2 * math.pi))).astype(np.int64) % 64
            row = np.clip(np.sqrt(np.clip(elevation, 0.0, None)) * 45.0, 0, 63).astype(np.int64)
            cover = np.clip(self.clouds[row, col] * 0.5 + self.cloud_amount - 0.3, 0.0, 1.0)[:, None]
            cloud_color = np.float32(0.55 * self.ambient + 0.35 * self.direct + 0.3) * np.minimum(self.sun_color, 1.0)
            sky = sky * (1.0 - 0.8 * cover) + 0.8 * cover * cloud_color
        # hills: a skyline over azimuth, hazed towards the horizon colour
        index = (azimuth * (len(self.skyline) / (2 * math.pi))).astype(np.int64) % len(self.skyline)
        hill_top = np.radians(self.skyline_deg) * (0.25 + 0.75 * self.skyline[index])
        hill = (elevation < hill_top) & (elevation > -0.2)
        haze = np.float32(min(1.0, 400.0 / self.fog_distance_m) * 0.6 + 0.3)
        sky[hill] = self.hill_color * (1 - haze) + self.fog_color * haze
        return sky.astype(np.float32)
