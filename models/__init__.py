"""Model wrappers (load, predict, train, version) for the AI systems: classifiers, CLIP,
fingerprints, bandits, online learners. Filled by the AI-system issues; the backbone has none."""
