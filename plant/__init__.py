"""The simulated plant: devices that speak the real protocols, replaying real degradation data.

The plant stands apart: it is the outside world, and imports nothing of Shopfloor's.
"""
