"""DexTrack-style tracking: kinematic hand-object references, the tracking environment and its training."""
