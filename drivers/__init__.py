"""Protocol drivers behind one small interface (see drivers.base)."""
