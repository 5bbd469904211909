"""Code several agents share (review tasks, media checks, search marks). Not agents: an agent
module may import these, never another agent module (checked by import-linter)."""
