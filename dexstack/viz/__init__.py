"""Visualisation with Rerun: the live graph or a recorded episode as a 3-D scene, images and time series.

No rclpy import here: :class:`~dexstack.viz.scene.SceneLogger` turns messages (rclpy's or rosbags', duck-typed)
into Rerun entities; ``dexstack/nodes/viz.py`` feeds it from subscriptions, :mod:`dexstack.viz.episode` from an
MCAP episode.
"""
