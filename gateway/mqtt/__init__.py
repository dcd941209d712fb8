"""The MQTT source: JSON topic mappings and Sparkplug B host application (see README.md here)."""

from gateway.mqtt.adapter import MqttSource
from gateway.mqtt.config import JsonMapping, MqttSourceConfig, SparkplugGroup, SparkplugMetric
from gateway.mqtt.sparkplug import STALE_QUALITY

__all__ = ["JsonMapping", "MqttSource", "MqttSourceConfig", "SparkplugGroup", "SparkplugMetric", "STALE_QUALITY"]
