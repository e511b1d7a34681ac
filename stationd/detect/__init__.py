"""The numpy detection core: pure functions over the fleet frame, vectorised across stations."""
