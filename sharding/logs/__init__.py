"""What the real-log sources (nuScenes, Waymo) share: poses and actions from logged ego poses
(`motion`), agents and hazard labels from annotated boxes (`agents`), and image resizing with the
intrinsics that follow (`images`). Imports no source package.
"""
