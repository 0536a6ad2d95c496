"""What the tests share: running the console commands, tiny data sets in each layout, checkpoints,
a kill -9 driver and a training class of a user's own."""
