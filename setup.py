"""ament_python package ``dexstack``: ``colcon build`` in a ROS 2 workspace, or ``pip install -e .`` in a venv."""

from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = "dexstack"

# One console script per node: `ros2 run dexstack <node>` after `colcon build`. The launcher in
# dexstack/launch/ finds node modules through these same entry points, so this table is the only list.
NODES = {
    "sim_cell": "dexstack.nodes.sim_cell:main",
    "scripted_motion": "dexstack.nodes.scripted_motion:main",
    "safety_monitor": "dexstack.nodes.safety_monitor:main",
    "camera": "dexstack.nodes.camera:main",
    "hand_pose": "dexstack.nodes.hand_pose:main",
    "object_pose": "dexstack.nodes.object_pose:main",
    "policy": "dexstack.nodes.policy:main",
    "teleop": "dexstack.nodes.teleop:main",
    "sim_hand": "dexstack.nodes.sim_hand:main",
    "recorder": "dexstack.nodes.recorder:main",
    "viz": "dexstack.nodes.viz:main",
    "grasp_target": "dexstack.nodes.grasp_target:main",
}
TOOLS = {
    "dexstack-sim-demo": "dexstack.cli.demo:main",
    "dexstack-launch": "dexstack.launch.runner:main",
    "dexstack-record": "dexstack.cli.record:main",
    "dexstack-calibrate": "dexstack.cli.calibrate:main",
    "dexstack-vgps-collect": "dexstack.vgps.collect:main",
    "dexstack-train-vgps": "dexstack.vgps.train:main",
    "dexstack-train": "dexstack.cli.train:main",
    "dexstack-viz": "dexstack.cli.viz:main",
    "dexstack-grasp-target": "dexstack.cli.grasp_target:main",
    "dexstack-demo2ref": "dexstack.cli.demo2ref:main",
    "dexstack-record-demos": "dexstack.cli.record_demos:main",
}


def data_files() -> list[tuple[str, list[str]]]:
    files = [
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
    ]
    for folder in ("launch", "config", "policies", "calibration"):
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                files.append((f"share/{PACKAGE}/{path.parent}", [str(path)]))
    return files


setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=data_files(),
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="dexstack maintainers",
    maintainer_email="maintainers@dexstack.dev",
    description="Camera-to-joint-command ROS 2 stack for dexterous robots",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [f"{name} = {target}" for name, target in {**NODES, **TOOLS}.items()],
    },
)
