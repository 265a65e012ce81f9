"""Contracts the application needs from the outside world. Imports only `domain`."""
