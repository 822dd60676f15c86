"""Recording demonstrations: crash-safe rosbag2 MCAP episodes, repair, LeRobot v3.0 export, replay. No ROS imports.

- :mod:`~dexstack.record.mcap_io`: unchunked MCAP writer (every record handed to the OS as it goes) and repair
- :mod:`~dexstack.record.episode`: episode directories (``.mcap`` + rosbag2 ``metadata.yaml``), metadata, store
- :mod:`~dexstack.record.session`: episode control and the writer thread the recorder node feeds
- :mod:`~dexstack.record.export`: ``python -m dexstack.record.export <episodes> <out>`` (LeRobot v3.0)
- :mod:`~dexstack.record.replay`: an episode's commands with their original timing
"""

from dexstack.record.episode import EpisodeInfo, EpisodeStore, load_episode_info, recover_episode
from dexstack.record.mcap_io import repair_mcap, scan_mcap
from dexstack.record.session import RecordingSession, SessionConfig, TopicSpec

__all__ = ["EpisodeInfo", "EpisodeStore", "RecordingSession", "SessionConfig", "TopicSpec", "load_episode_info",
           "recover_episode", "repair_mcap", "scan_mcap"]
