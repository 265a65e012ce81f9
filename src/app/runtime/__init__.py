"""Runtime: configuration, the service's signals and resilience, health and business logging."""
