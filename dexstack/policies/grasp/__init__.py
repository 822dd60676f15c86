"""Grasp policies (FunGrasp, issue 12): the batched grasp task, its physics and trainer, and policy type ``grasp``."""
