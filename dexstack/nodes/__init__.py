"""One thin rclpy node per file: parameters, topics, QoS and timers wired to the pure core in ``dexstack``.

Every node module has ``main()`` (its console script, see setup.py) and a ``Params`` dataclass declaring its ROS
parameters; the launch-file checks read ``Params`` to verify that every parameter a launch file sets exists.
"""
