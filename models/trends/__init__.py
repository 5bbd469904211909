"""Trend detection: sliding-window counts of hashtags and categories, burst detection of each
against its own baseline rate (:mod:`models.trends.burst`), heavy hitters with Apache
DataSketches' frequent-items sketch (:mod:`models.trends.heavy`) and the subjects a post
mentions (:mod:`models.trends.subjects`). Pure: no I/O, no clock but the event times given."""
