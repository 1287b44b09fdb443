"""Consuming EventsQueue: routing, failure classes, backoff and dead-lettering."""
