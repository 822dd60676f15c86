"""V-GPS (value-guided policy steering): offline datasets from recorded episodes, the Cal-QL/IQL critic and its
bundle. The ``vgps`` policy type that uses the critic is :mod:`dexstack.policies.vgps`. No rclpy imports."""
