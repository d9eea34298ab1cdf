"""Procedural scenes, tasks and scoring."""
