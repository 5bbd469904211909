"""One-off modelling experiments for Content Guard's text moderation (not imported by the service)."""
