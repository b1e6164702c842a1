"""Thin Flask blueprints: parse the request, call a service or protocol function, render the response."""
