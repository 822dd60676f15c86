"""Run the graph a ``launch/*.launch.xml`` file describes without ``ros2 launch`` (absent from the PyPI wheels).

The same XML files serve ``ros2 launch dexstack <file>`` on a workstation. Only the subset of the launch XML
format used in this repository is understood: ``arg``, ``let``, ``set_env``, ``node`` with ``param`` (value or
``from`` file) and ``remap``, and the substitutions ``$(var NAME)`` and ``$(find-pkg-share dexstack)``.
"""

from dexstack.launch.xml import LaunchDescription, LaunchError, NodeAction, parse_launch_file

__all__ = ["LaunchDescription", "LaunchError", "NodeAction", "parse_launch_file"]
