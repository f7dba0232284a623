"""install / verify / rollback commands (installer area)."""
