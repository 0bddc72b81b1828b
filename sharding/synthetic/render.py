"""Numpy renderer of the synthetic world: per-pixel rays through a pinhole rig.

Each pixel's ray is fixed in the ego frame, so everything that depends only on it (where it
meets the flat ground, that patch's footprint, its fog and headlight, its sky direction) is
computed once. Per frame the renderer maps ground points to road coordinates, casts rays
against the boxes in view, shades, and adds fog. Output: uint8 [V, H, W, 3] RGB.
"""

from __future__ import annotations

import numpy as np

from sharding.synthetic.boxes import (
    BUILDING,
    FACE_TOP,
    FACE_X,
    FACE_Y,
    FOLIAGE,
    PEDESTRIAN,
    VEHICLE,
    BoxSet,
    Hits,
    cast_rays,
)
from sharding.synthetic.camera import RigConfig
from sharding.synthetic.ground import GroundStyle, shade_ground
from sharding.synthetic.road import Road
from sharding.synthetic.textures import noise_tile
from sharding.synthetic.weather import Atmosphere

ROAD_QUERY_M = 250.0  # ground beyond this distance is drawn as verge (markings are sub-pixel there)
_GLASS = np.array([0.10, 0.13, 0.17], np.float32)
_TYRE = np.array([0.05, 0.05, 0.05], np.float32)
_TAIL_LIGHT = np.array([0.55, 0.05, 0.04], np.float32)
_HEAD_LIGHT = np.array([0.9, 0.88, 0.75], np.float32)
_SKIN = np.array([0.80, 0.62, 0.50], np.float32)
_WINDOW = np.array([0.16, 0.2, 0.26], np.float32)
_LIT_WINDOW = np.array([1.0, 0.85, 0.5], np.float32)


def _headlight(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Light of the ego's low beams at ego-frame ground/hit positions (m); 0 behind the car."""
    ahead = np.maximum(x - 2.5, 1e-3)
    angle = np.arctan2(np.abs(y), ahead)
    return (1.1 * np.exp(-(angle / 0.6) ** 2) / (1.0 + (ahead / 20.0) ** 2) * (x > 2.5)).astype(np.float32)


def _pixel_rays(intrinsics: np.ndarray, ego_from_camera: np.ndarray, width: int, height: int) -> np.ndarray:
    """float64 [V, H, W, 3]: the ray through each pixel centre in the ego frame, scaled to unit
    camera depth (camera ray (x, y, 1)), so a ray parameter equals the depth."""
    v, u = np.mgrid[0:height, 0:width].astype(np.float64)
    k = intrinsics[:, None, None]  # [V, 1, 1, 3, 3]
    camera_rays = np.stack([(u - k[..., 0, 2]) / k[..., 0, 0], (v - k[..., 1, 2]) / k[..., 1, 1],
                            np.ones((len(intrinsics), height, width))], axis=-1)
    return np.einsum("vij,vhwj->vhwi", ego_from_camera[:, :3, :3], camera_rays)


class Renderer:
    """Draws one scene (road, scenery, atmosphere) for any ego pose and set of moving boxes."""

    def __init__(self, rig: RigConfig, road: Road, scenery: BoxSet, atmosphere: Atmosphere, ground: GroundStyle,
                 rng: np.random.Generator, view_distance_m: float):
        self.rig, self.road, self.scenery = rig, road, scenery
        self.atmosphere, self.ground = atmosphere, ground
        self.view_distance_m = view_distance_m
        self.shape = (rig.num_views, rig.height, rig.width)
        self.intrinsics = rig.intrinsics()
        ego_from_camera = rig.ego_from_camera()
        self.camera_from_ego = rig.camera_from_ego()
        self.origin = rig.mount_point()
        rays = _pixel_rays(self.intrinsics, ego_from_camera, rig.width, rig.height)  # [V, H, W, 3]
        self.rays = rays.reshape(-1, 3).astype(np.float32)
        horizontal = np.hypot(rays[..., 0], rays[..., 1])
        self.ray_length = np.linalg.norm(rays, axis=-1).reshape(-1).astype(np.float32)
        self.elevation = np.arctan2(rays[..., 2], horizontal).reshape(-1).astype(np.float32)
        self.azimuth = np.arctan2(rays[..., 1], rays[..., 0]).reshape(-1).astype(np.float32)
        self._prepare_ground(rays)
        self.foliage = noise_tile(rng, 32, octaves=3)
        self.rain_seed = int(rng.integers(2**32))

    def _prepare_ground(self, rays: np.ndarray) -> None:
        """Per ground pixel (rays [V, H, W, 3] pointing down): where it meets z = 0, how much
        ground it covers there, and its fixed light and fog."""
        atmosphere = self.atmosphere
        down = np.minimum(rays[..., 2], -1e-4)
        depth = -self.origin[2] / down  # [V, H, W]
        ground = self.origin[:2] + depth[..., None] * rays[..., :2]  # [V, H, W, 2]
        is_ground = (rays[..., 2] < -1e-4).reshape(-1)
        self.ground_index = np.flatnonzero(is_ground)
        self.sky_index = np.flatnonzero(~is_ground)
        g = self.ground_index
        # ground step per pixel to the right (u) and down (v), [G, 2] each
        self.jacobian_u = np.gradient(ground, axis=2).reshape(-1, 2)[g].astype(np.float32)
        self.jacobian_v = np.gradient(ground, axis=1).reshape(-1, 2)[g].astype(np.float32)
        self.ground_xy = ground.reshape(-1, 2)[g].astype(np.float32)
        distance = (depth.reshape(-1) * self.ray_length)[g]
        self.ground_footprint = (np.hypot(*self.jacobian_u.T) + np.hypot(*self.jacobian_v.T)).astype(np.float32)
        self.near_ground = distance < ROAD_QUERY_M
        # colour = albedo * gain + haze: light (sun, sky, headlights) and fog are fixed per pixel
        light = np.broadcast_to(atmosphere.surface_light(1.0, atmosphere.sun_direction[2]), (g.size, 3))
        if atmosphere.headlights:
            light = light + _headlight(self.ground_xy[:, 0], self.ground_xy[:, 1])[:, None]
        fog = atmosphere.fog(distance)[:, None]
        self.ground_gain = (light * (1 - fog)).astype(np.float32)
        self.ground_haze = (atmosphere.fog_color * fog).astype(np.float32)

    def render(self, ego_x: float, ego_y: float, ego_yaw: float, ego_s: float, agents: BoxSet,
               frame: int) -> np.ndarray:
        """uint8 [V, H, W, 3] view of the world from the ego pose; `agents` in the world frame.

        A pure function of its arguments: `frame` (the step index) seeds the rain, so rendering
        a state twice, or not at all, never changes later frames.
        """
        image = np.empty((self.rays.shape[0], 3), np.float32)
        sky = self.sky_index
        image[sky] = self.atmosphere.background(self.elevation[sky], self.azimuth[sky] + np.float32(ego_yaw))
        image[self.ground_index] = self._ground(ego_x, ego_y, ego_yaw, ego_s)
        boxes = self._boxes_in_view(BoxSet.concat([self.scenery, agents]), ego_x, ego_y, ego_yaw)
        hits = cast_rays(boxes, self.origin, self.rays, self.camera_from_ego, self.intrinsics,
                         self.rig.width, self.rig.height)
        if hits.pixel.size:
            image[hits.pixel] = self._shade_boxes(boxes, hits, ego_yaw)
        if self.atmosphere.rain > 0:
            self._rain(image, frame)
        return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).reshape(*self.shape, 3)

    def _ground(self, ego_x: float, ego_y: float, ego_yaw: float, ego_s: float) -> np.ndarray:
        """Lit, fogged colour of every ground pixel, float32 [G, 3]."""
        c, s = np.float32(np.cos(ego_yaw)), np.float32(np.sin(ego_yaw))
        ex, ey = self.ground_xy[:, 0], self.ground_xy[:, 1]
        x, y = np.float32(ego_x) + c * ex - s * ey, np.float32(ego_y) + s * ex + c * ey
        road_s, road_d, on_map = self.road.to_frenet(x, y, np.float32(ego_s))
        on_map &= self.near_ground
        # footprint across / along the road, using the road direction at the ego for the whole view
        relative = float(self.road.heading_at(ego_s)) - ego_yaw
        c, s = np.float32(np.cos(relative)), np.float32(np.sin(relative))
        ju, jv = self.jacobian_u, self.jacobian_v  # elementwise, not `@`: BLAS threads cost more than they save here
        across = np.maximum(np.abs(c * ju[:, 1] - s * ju[:, 0]) + np.abs(c * jv[:, 1] - s * jv[:, 0]), 0.02)
        along = np.maximum(np.abs(c * ju[:, 0] + s * ju[:, 1]) + np.abs(c * jv[:, 0] + s * jv[:, 1]), 0.02)
        albedo = shade_ground(self.ground, self.road.layout, road_s, road_d, on_map, x, y, across, along,
                              self.ground_footprint)
        return albedo * self.ground_gain + self.ground_haze

    def _boxes_in_view(self, boxes: BoxSet, ego_x: float, ego_y: float, ego_yaw: float) -> BoxSet:
        """The boxes in the ego frame, without those too far away or behind every camera."""
        local = boxes.to_frame(ego_x, ego_y, ego_yaw)
        reach = np.hypot(local.half_size[:, 0], local.half_size[:, 1])
        distance = np.hypot(local.center[:, 0], local.center[:, 1])
        keep = (distance - reach < self.view_distance_m) & (local.center[:, 0] + reach > -25.0)
        return local.select(np.flatnonzero(keep))

    def _shade_boxes(self, boxes: BoxSet, hits: Hits, ego_yaw: float) -> np.ndarray:
        """Colour of each hit pixel, float32 [M, 3]: material details, sun, headlights, fog."""
        atmosphere = self.atmosphere
        box, face = hits.box, hits.face
        lx, ly, lz = hits.local[:, 0], hits.local[:, 1], hits.local[:, 2]
        half_l, half_w = boxes.half_size[box, 0], boxes.half_size[box, 1]
        bottom, top = boxes.bottom[box], boxes.top[box]
        rel_z = (lz - bottom) / np.maximum(top - bottom, 1e-3)  # 0 at the bottom, 1 at the top
        material = boxes.material[box]
        albedo = boxes.color[box].copy()
        emit = np.zeros_like(albedo)
        side, end = face == FACE_Y, face == FACE_X

        car = material == VEHICLE
        glass = car & (rel_z > 0.55) & (rel_z < 0.93) & ((side & (np.abs(lx) < 0.78 * half_l)) |
                                                         (end & (np.abs(ly) < 0.85 * half_w)))
        albedo[glass] = _GLASS
        wheel = car & side & (rel_z < 0.3) & (np.abs(np.abs(lx) - 0.62 * half_l) < 0.38)
        albedo[wheel] = _TYRE
        lamp = car & end & (rel_z > 0.3) & (rel_z < 0.48) & (np.abs(ly) > 0.55 * half_w)
        rear, front = lamp & (lx < 0), lamp & (lx > 0)
        albedo[rear] = _TAIL_LIGHT
        if atmosphere.headlights:
            emit[rear], emit[front] = _TAIL_LIGHT * 1.5, _HEAD_LIGHT * 1.5

        walker = material == PEDESTRIAN
        albedo[walker & (rel_z > 0.86)] = _SKIN
        albedo[walker & (rel_z < 0.47)] *= 0.45  # trousers darker than the shirt

        leaves = material == FOLIAGE
        size = self.foliage.shape[0]
        col = (np.floor((lx + ly) * 3.0).astype(np.int64)) % size
        row = (np.floor(lz * 3.0).astype(np.int64)) % size
        albedo[leaves] *= (1.0 + 0.3 * self.foliage[row[leaves], col[leaves]])[:, None]

        building = (material == BUILDING) & (face != FACE_TOP)
        across = np.where(side, lx, ly)
        window = building & (np.mod(lz, 3.2) > 1.1) & (np.mod(lz, 3.2) < 2.5) & (np.mod(across, 2.8) > 0.9) & (lz > 2.0)
        albedo[window] = _WINDOW
        if atmosphere.lighting in ("night", "dusk"):
            lit = window & (np.mod(np.floor(lz / 3.2) * 7 + np.floor(across / 2.8) * 13 + box, 5) < 2)
            emit[lit] = _LIT_WINDOW * (0.6 if atmosphere.lighting == "night" else 0.3)

        # sun: the face normal in the world frame, from the box yaw and which face was hit
        yaw = boxes.yaw[box] + np.float32(ego_yaw)
        sign_x, sign_y = np.sign(lx), np.sign(ly)
        nx = np.where(end, sign_x * np.cos(yaw), -sign_y * np.sin(yaw))
        ny = np.where(end, sign_x * np.sin(yaw), sign_y * np.cos(yaw))
        nz = (face == FACE_TOP).astype(np.float32)
        nx, ny = nx * (1 - nz), ny * (1 - nz)
        sun = atmosphere.sun_direction
        light = atmosphere.surface_light(nz, nx * sun[0] + ny * sun[1] + nz * sun[2])
        ray = self.rays[hits.pixel]
        if atmosphere.headlights:
            light = light + _headlight(self.origin[0] + hits.depth * ray[:, 0],
                                       self.origin[1] + hits.depth * ray[:, 1])[:, None]
        fog = atmosphere.fog(hits.depth * self.ray_length[hits.pixel])[:, None]
        return (albedo * light + emit) * (1 - fog) + atmosphere.fog_color * fog

    def _rain(self, image: np.ndarray, frame: int) -> None:
        """Bright 3-pixel streaks at random places, in place on a flat [V*H*W, 3] image."""
        count = int(self.atmosphere.rain * image.shape[0])
        start = np.random.default_rng([self.rain_seed, frame]).integers(0, image.shape[0], size=count)
        width = self.rig.width
        for offset in range(3):
            index = np.minimum(start + offset * width, image.shape[0] - 1)
            image[index] = image[index] * 0.7 + 0.25
