"""Evaluation of policies on the path a user runs: the launched ROS graph (see :mod:`.deployed`), scored by the
same metric as the in-process training evaluation (:mod:`.scoring`)."""
