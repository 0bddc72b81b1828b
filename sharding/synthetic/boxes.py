"""Upright boxes (cars, pedestrians, trees, buildings) and casting camera rays against them.

Every solid thing in the synthetic world is a box standing on the ground with a yaw. Rays are
tested only inside each box's projected bounding rectangle, so the cost follows the pixels a
box covers rather than pixels x boxes; the nearest hit per pixel wins (a z-buffer).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Materials decide how a box face is shaded (see render.py).
PLAIN, VEHICLE, PEDESTRIAN, FOLIAGE, BUILDING = range(5)
# Which face a ray entered through: the box's own x faces (front/back), y faces (sides), top.
FACE_X, FACE_Y, FACE_TOP = range(3)
_NEAR_M = 0.05  # near clipping plane (camera depth, m)


@dataclass
class BoxSet:
    """K upright boxes. All arrays have K rows; positions in metres, yaw in rad.

    center: float32 [K, 2] (x, y) of the footprint centre
    bottom, top: float32 [K] z of the bottom and top faces
    half_size: float32 [K, 2] half length (along the box's x) and half width
    yaw: float32 [K] heading of the box's x axis
    color: float32 [K, 3] RGB albedo in [0, 1]
    material: int8 [K] one of PLAIN, VEHICLE, PEDESTRIAN, FOLIAGE, BUILDING
    """

    center: np.ndarray
    bottom: np.ndarray
    top: np.ndarray
    half_size: np.ndarray
    yaw: np.ndarray
    color: np.ndarray
    material: np.ndarray

    def __len__(self) -> int:
        return len(self.yaw)

    @classmethod
    def empty(cls) -> BoxSet:
        return cls(np.zeros((0, 2), np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32),
                   np.zeros((0, 2), np.float32), np.zeros(0, np.float32), np.zeros((0, 3), np.float32),
                   np.zeros(0, np.int8))

    @classmethod
    def concat(cls, sets: list[BoxSet]) -> BoxSet:
        return cls(*(np.concatenate([getattr(s, f) for s in sets]) for f in cls.__dataclass_fields__))

    def select(self, index: np.ndarray) -> BoxSet:
        return BoxSet(*(getattr(self, f)[index] for f in self.__dataclass_fields__))

    def to_frame(self, x: float, y: float, yaw: float) -> BoxSet:
        """The same boxes seen from a frame at (x, y, yaw) (e.g. world -> ego)."""
        c, s = np.cos(yaw), np.sin(yaw)
        dx, dy = self.center[:, 0] - x, self.center[:, 1] - y
        center = np.stack([c * dx + s * dy, -s * dx + c * dy], axis=1).astype(np.float32)
        return BoxSet(center, self.bottom, self.top, self.half_size, (self.yaw - yaw).astype(np.float32),
                      self.color, self.material)

    def corners(self) -> np.ndarray:
        """float32 [K, 8, 3]: the four footprint corners at the bottom, then at the top."""
        signs = np.array([[1, 1], [1, -1], [-1, -1], [-1, 1]], np.float32)
        local = signs[None] * self.half_size[:, None, :]  # [K, 4, 2]
        c, s = np.cos(self.yaw)[:, None], np.sin(self.yaw)[:, None]
        x = self.center[:, None, 0] + c * local[..., 0] - s * local[..., 1]
        y = self.center[:, None, 1] + s * local[..., 0] + c * local[..., 1]
        ring = np.stack([x, y], axis=-1)  # [K, 4, 2]
        bottom = np.concatenate([ring, np.broadcast_to(self.bottom[:, None, None], (len(self), 4, 1))], axis=-1)
        top = np.concatenate([ring, np.broadcast_to(self.top[:, None, None], (len(self), 4, 1))], axis=-1)
        return np.concatenate([bottom, top], axis=1)


@dataclass
class Hits:
    """The nearest box behind each pixel that shows one (M such pixels, all views flattened).

    pixel: int64 [M] index into the flattened [V * H * W] image
    box: int64 [M] row of the BoxSet that was hit
    depth: float32 [M] camera z of the hit point
    face: int8 [M] FACE_X, FACE_Y or FACE_TOP
    local: float32 [M, 3] hit point in the box frame (x along the box, y across, z up)
    """

    pixel: np.ndarray
    box: np.ndarray
    depth: np.ndarray
    face: np.ndarray
    local: np.ndarray


# the 12 edges of a box as pairs of rows of BoxSet.corners()
_EDGES = np.array([[0, 1], [1, 2], [2, 3], [3, 0], [4, 5], [5, 6], [6, 7], [7, 4], [0, 4], [1, 5], [2, 6], [3, 7]])


def _pixel_box_pairs(boxes: BoxSet, camera_from_ego: np.ndarray, intrinsics: np.ndarray, width: int, height: int):
    """Pixels inside each box's projected bounding rectangle, per view.

    The part of a box behind the camera is clipped away first (at depth _NEAR_M), so a car
    beside the ego covers only the pixels it really can in a side view.
    camera_from_ego: float [V, 4, 4]; intrinsics: float [V, 3, 3].
    Returns (pixel int64 [M] into the flattened [V * H * W] image, box int64 [M]).
    """
    corners = boxes.corners()  # [K, 8, 3]
    cam = np.einsum("vij,knj->vkni", camera_from_ego[:, :3, :3].astype(np.float32), corners)
    cam += camera_from_ego[:, None, None, :3, 3].astype(np.float32)  # [V, K, 8, 3]
    a, b = cam[:, :, _EDGES[:, 0]], cam[:, :, _EDGES[:, 1]]  # [V, K, 12, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        along = (_NEAR_M - a[..., 2]) / (b[..., 2] - a[..., 2])
    crossing = (along > 0) & (along < 1)  # the edge pierces the near plane
    cut = a + np.where(crossing, along, 0)[..., None] * (b - a)
    points = np.concatenate([cam, cut], axis=2)  # [V, K, 20, 3]
    usable = np.concatenate([cam[..., 2] >= _NEAR_M, crossing], axis=2)
    depth = np.maximum(points[..., 2], _NEAR_M)
    u = intrinsics[:, None, None, 0, 0] * points[..., 0] / depth + intrinsics[:, None, None, 0, 2]
    v = intrinsics[:, None, None, 1, 1] * points[..., 1] / depth + intrinsics[:, None, None, 1, 2]
    u0 = np.floor(np.where(usable, u, np.inf).min(-1)).clip(0, width)
    u1 = np.ceil(np.where(usable, u, -np.inf).max(-1)).clip(-1, width - 1)
    v0 = np.floor(np.where(usable, v, np.inf).min(-1)).clip(0, height)
    v1 = np.ceil(np.where(usable, v, -np.inf).max(-1)).clip(-1, height - 1)
    visible = usable.any(axis=-1) & (u1 >= u0) & (v1 >= v0)  # [V, K]
    view, box = np.nonzero(visible)
    u0, v0 = u0[view, box].astype(np.int64), v0[view, box].astype(np.int64)
    cols = u1[view, box].astype(np.int64) - u0 + 1
    rows = v1[view, box].astype(np.int64) - v0 + 1
    sizes = cols * rows
    owner = np.repeat(np.arange(len(box)), sizes)  # which (view, box) rectangle each pair belongs to
    offset = np.arange(owner.size) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    row, col = v0[owner] + offset // cols[owner], u0[owner] + offset % cols[owner]
    pixel = view[owner] * (width * height) + row * width + col
    return pixel, box[owner]


def cast_rays(
    boxes: BoxSet,
    origin: np.ndarray,
    directions: np.ndarray,
    camera_from_ego: np.ndarray,
    intrinsics: np.ndarray,
    width: int,
    height: int,
) -> Hits:
    """Nearest hit of every pixel ray against upright boxes given in the ego frame.

    origin: float [3] optical centre shared by all views (ego frame).
    directions: float32 [V * H * W, 3] ray per pixel in the ego frame, scaled so that its camera
    z component is 1 (the ray parameter is then the depth).
    Slab test: a ray is inside the box where it is between both x planes, both y planes and
    both z planes; it hits where the latest entry comes before the earliest exit.
    """
    pixel, box = _pixel_box_pairs(boxes, camera_from_ego, intrinsics, width, height)
    origin = np.asarray(origin, np.float32)  # keep the per-pair arithmetic in float32
    if pixel.size == 0:
        return Hits(pixel, box, np.zeros(0, np.float32), np.zeros(0, np.int8), np.zeros((0, 3), np.float32))
    cos, sin = np.cos(boxes.yaw), np.sin(boxes.yaw)
    rel_x, rel_y = origin[0] - boxes.center[:, 0], origin[1] - boxes.center[:, 1]
    local_origin = np.stack([cos * rel_x + sin * rel_y, -sin * rel_x + cos * rel_y], axis=1)  # [K, 2]
    ray = directions[pixel]  # [M, 3]
    c, s = cos[box], sin[box]
    ray_x = c * ray[:, 0] + s * ray[:, 1]
    ray_y = c * ray[:, 1] - s * ray[:, 0]
    ox, oy = local_origin[box, 0], local_origin[box, 1]
    hx, hy = boxes.half_size[box, 0], boxes.half_size[box, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_x, inv_y, inv_z = 1.0 / ray_x, 1.0 / ray_y, 1.0 / ray[:, 2]
        ax, bx = (-hx - ox) * inv_x, (hx - ox) * inv_x
        ay, by = (-hy - oy) * inv_y, (hy - oy) * inv_y
        az, bz = (boxes.bottom[box] - origin[2]) * inv_z, (boxes.top[box] - origin[2]) * inv_z
    near_x, near_y, near_z = np.minimum(ax, bx), np.minimum(ay, by), np.minimum(az, bz)
    near = np.maximum(np.maximum(near_x, near_y), near_z)
    far = np.minimum(np.minimum(np.maximum(ax, bx), np.maximum(ay, by)), np.maximum(az, bz))
    hit = (near <= far) & (near > 0)
    pixel, box, near = pixel[hit], box[hit], near[hit]
    # z-buffer: the smallest depth per pixel; ties (shared faces) go to either box
    zbuffer = np.full(directions.shape[0], np.inf, np.float32)
    np.minimum.at(zbuffer, pixel, near)
    win = near == zbuffer[pixel]
    pixel, box, depth = pixel[win], box[win], near[win]
    pixel, first = np.unique(pixel, return_index=True)
    box, depth = box[first], depth[first]
    nx, ny, nz = near_x[hit][win][first], near_y[hit][win][first], near_z[hit][win][first]
    face = np.where(nx >= ny, FACE_X, FACE_Y).astype(np.int8)
    face[nz > np.maximum(nx, ny)] = FACE_TOP
    ray = directions[pixel]
    c, s = cos[box], sin[box]
    local = np.stack([
        local_origin[box, 0] + depth * (c * ray[:, 0] + s * ray[:, 1]),
        local_origin[box, 1] + depth * (c * ray[:, 1] - s * ray[:, 0]),
        origin[2] + depth * ray[:, 2],
    ], axis=1).astype(np.float32)
    return Hits(pixel, box, depth.astype(np.float32), face, local)
