"""The simulated cell: MuJoCo physics of the robot description on a table with an object and an RGB-D camera."""

from dexstack.sim.cell import SimCell
from dexstack.sim.config import CellConfig, load_cell_config

__all__ = ["CellConfig", "SimCell", "load_cell_config"]
