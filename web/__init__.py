"""Command center: server-rendered pages for the shop floor, live over server-sent events."""
