"""Measuring half of rackbench: device detection, timing, statistics, result sets, CLI."""
