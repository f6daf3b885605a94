"""Scheduling: which nodes run together as one kernel, in what order, on which buffers."""
