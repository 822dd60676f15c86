"""dexstack: camera-to-joint-command stack for dexterous robots on ROS 2.

The packages under ``dexstack`` are a pure core (no rclpy import) that is unit-tested without ROS;
``dexstack.nodes`` holds one thin rclpy node per file that wires topics and parameters to the core.
"""

__version__ = "0.1.0"
