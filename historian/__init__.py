"""The historian: 4M1E tags, samples and events in TimescaleDB or plain PostgreSQL.

Layering: nothing here imports gateway, twin, analytics or api.
"""

from historian.errors import HistorianError, InvalidParameterError, UnknownTagError
from historian.samples import Batch, DeadLetter, Quality, Sample, SampleBatch

__all__ = [
    "Batch",
    "DeadLetter",
    "HistorianError",
    "InvalidParameterError",
    "Quality",
    "Sample",
    "SampleBatch",
    "UnknownTagError",
]
