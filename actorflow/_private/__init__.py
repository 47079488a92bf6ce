"""Implementation modules of actorflow; nothing here is public API."""
