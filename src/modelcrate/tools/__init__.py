"""Developer checks that guard the shape of the code base."""
