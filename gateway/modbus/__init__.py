"""Modbus TCP source: polls holding/input registers, coils and discrete inputs and writes back.

See README.md in this folder for the configuration and the byte/word orders.
"""

from gateway.modbus.adapter import ModbusSource
from gateway.modbus.config import ModbusSourceConfig, ModbusTag

__all__ = ["ModbusSource", "ModbusSourceConfig", "ModbusTag"]
