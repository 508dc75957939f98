"""egauge-gateway: bridge eGauge energy meters to MQTT and Modbus TCP."""

__version__ = "0.1.0"
