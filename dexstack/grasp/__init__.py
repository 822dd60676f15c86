"""Functional grasping (FunGrasp, issue 12): synthetic human grasps, grasp targets, the open-loop baseline."""
