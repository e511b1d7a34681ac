"""stationd: monitoring daemon for district-heating exchange stations (换热站)."""

__version__ = "0.1.0"
