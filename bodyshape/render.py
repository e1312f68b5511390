"""Silhouette rendering on the CPU: project a posed mesh with a pinhole camera, fill triangles.

Pure functions of numpy arrays. Views: "front" looks at the body's front (-Y side);
"side" turns the body 90 degrees so that it faces image-right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from bodyshape.errors import BodyShapeError


@dataclass(frozen=True)
class Camera:
    """A pinhole camera in front of the person.

    distance: metres from the camera to the body's vertical axis (``inf``: orthographic).
    height: camera height above the floor, metres.
    pitch_deg: tilt (positive = looking down), degrees, relative to aiming level.
    yaw_deg: extra turn of the person about the vertical axis, degrees.
    roll_deg: camera roll, degrees (a phone held slightly crooked).
    """

    distance: float = math.inf
    height: float = 1.2
    pitch_deg: float = 0.0
    yaw_deg: float = 0.0
    roll_deg: float = 0.0


def _rot_z(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float64)


VIEW_YAW = {"front": 0.0, "side": 90.0}  # side: the body faces image-right


def project(vertices: np.ndarray, view: str, camera: Camera) -> np.ndarray:
    """(V, 3) metres, Z up -> (V, 3): image-plane x (right), y (down), and depth.

    The scale is arbitrary (normalisation follows); perspective comes from the camera
    distance. The floor is the lowest vertex.
    """
    if view not in VIEW_YAW:
        raise BodyShapeError(f"unknown view {view!r}; expected 'front' or 'side'")
    v = vertices.astype(np.float64) @ _rot_z(VIEW_YAW[view] + camera.yaw_deg).T
    floor = v[:, 2].min()
    x, depth, z = v[:, 0], v[:, 1], v[:, 2] - floor  # camera looks along +Y
    if math.isinf(camera.distance):
        u, w, d = x, -z, depth
    else:
        # Camera at (0, -distance, height); pitch about the camera's x axis.
        p = math.radians(camera.pitch_deg)
        rel_y = depth + camera.distance
        rel_z = z - camera.height
        cy = rel_y * math.cos(p) - rel_z * math.sin(p)  # along the optical axis
        cz = rel_y * math.sin(p) + rel_z * math.cos(p)
        if (cy <= 0.05).any():
            raise BodyShapeError("camera is inside or behind the body")
        u, w, d = x / cy * camera.distance, -cz / cy * camera.distance, cy
    if camera.roll_deg:
        r = math.radians(camera.roll_deg)
        u, w = u * math.cos(r) - w * math.sin(r), u * math.sin(r) + w * math.cos(r)
    return np.stack([u, w, d], axis=1)


def rasterize(points: np.ndarray, faces: np.ndarray, height_px: int, margin_px: int = 8) -> np.ndarray:
    """Fill the projected triangles into a uint8 0/255 mask with the body ``height_px`` tall.

    ``points``: (V, 3) from :func:`project`. Only camera-facing triangles are filled: on a
    closed mesh they cover the whole silhouette, at 40% of the cost. Their orientation is
    read off the triangle nearest the camera. Sub-pixel triangles leave pinholes, which a
    3x3 morphological closing removes.
    """
    depth = points[:, 2]
    points = points[:, :2]
    lo, hi = points.min(0), points.max(0)
    scale = (height_px - 1) / max(hi[1] - lo[1], 1e-9)
    shift = 3  # sub-pixel precision bits
    px = (points - lo) * scale + margin_px
    w = int(math.ceil((hi[0] - lo[0]) * scale)) + 2 * margin_px + 1
    h = height_px + 2 * margin_px
    tri = px[faces]  # (F, 3, 2)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    cross = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    nearest = int(np.argmin(depth[faces].mean(1)))
    facing = cross * np.sign(cross[nearest]) > 0
    tris = np.round(tri[facing] * (1 << shift)).astype(np.int32)
    img = np.zeros((h, w), np.uint8)
    cv2.fillPoly(img, list(tris), 255, lineType=cv2.LINE_8, shift=shift)
    return cv2.morphologyEx(img, cv2.MORPH_CLOSE, _CLOSE_KERNEL)


_CLOSE_KERNEL = np.ones((3, 3), np.uint8)


def render_silhouette(
    vertices: np.ndarray, faces: np.ndarray, view: str, camera: Camera = Camera(), height_px: int = 224
) -> np.ndarray:
    """Mesh -> binary silhouette (uint8 0/255), body about ``height_px`` pixels tall."""
    return rasterize(project(vertices, view, camera), faces, height_px)
