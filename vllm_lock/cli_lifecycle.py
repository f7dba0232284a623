"""update / diff / test / promote commands (lifecycle area)."""
