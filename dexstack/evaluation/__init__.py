"""Evaluation of policies on the path a user runs: the launched ROS graph (see :mod:`.deployed`), scored by the
same metric as the in-process training evaluation (:mod:`.scoring`); in-process episodes can see the object pose
from perception through :mod:`.perception_feed` (the object pose node's core on the sim camera, no ROS)."""
