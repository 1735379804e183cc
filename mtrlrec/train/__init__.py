"""Training: the jitted online loop, replay buffers, supervised loops, sharding."""
