"""Running as a service: logging, signals, status."""
