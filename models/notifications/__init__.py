"""Notification decisions: a Thompson-sampling bandit per user and notification type choosing to
send now, hold for a digest or drop (:mod:`models.notifications.bandit`), the daily budget, quiet
hours and digests around it (:mod:`models.notifications.policy`), and off-policy estimators of a
candidate policy's value from logged decisions (:mod:`models.notifications.ope`). Pure: no I/O,
no clock but the event times given, randomness only from the generator passed in."""
