"""Golden moments: when a creator's audience is active, by hour of the week (7x24, UTC), shrunk
toward the population for small audiences (:mod:`models.timing.shrinkage`), and the best hours
to post each content type in (:mod:`models.timing.windows`). Pure: no I/O, no clock but the
event times given."""
