"""Benchmarks: commands that print figures and ratios against the dlib reference."""
