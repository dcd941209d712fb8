"""The shopfloor command: configuration, the demo, and the entry points that start each part.

This package sits on top of everything (it wires api, gateway, twin, historian and plant together);
nothing imports it.
"""
