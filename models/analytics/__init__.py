"""Creator analytics: distinct viewers with Apache DataSketches' HyperLogLog sketch
(:mod:`models.analytics.reach`), the engagement figures of a post or creator and the early
signals of a post (:mod:`models.analytics.signals`), and the online virality regressor over them
(:mod:`models.analytics.virality`, river). Pure: no I/O, no clock but the event times given."""
