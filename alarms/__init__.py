"""Alarm engine, playbooks of the heating plan, MQTT publishing/commands, pager adapters."""
