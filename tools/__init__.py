"""Operator tools: the station simulator and helpers."""
