"""Command-line entry points (the main job, tools)."""
