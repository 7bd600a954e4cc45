"""Stand-ins for the command-line tools the kind/cluster targets run (rehearsal only)."""
