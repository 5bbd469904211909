"""Pulse's agents: one module per AI system (a pure ``process`` core) and the registry
(``agents.registry.AGENTS``) that ``pulse worker`` runs."""
