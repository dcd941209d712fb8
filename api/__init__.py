"""The HTTP API (Litestar): machine state, the historian's tags and samples, metrics.

Layering: api may import analytics, twin and historian; nothing below imports api.
"""
