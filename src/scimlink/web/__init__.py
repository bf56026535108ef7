"""Web application factories and shared HTTP plumbing."""
