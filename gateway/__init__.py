"""Protocol adapters (OPC UA, Modbus, MQTT) into the historian; imports historian only."""
