"""The one error type of the policy runtime: a bundle, checkpoint or reference that cannot be used."""

from __future__ import annotations


class PolicyError(ValueError):
    """A policy bundle is missing, malformed, unsafe, or does not fit the robot: the message says why.

    A ``ValueError`` so that node entry points (:func:`dexstack.nodes.common.run_node`) report it without a traceback.
    """
