"""The Modbus TCP output: register maps, encoding, the per-unit image and the server."""

from gateway.modbus.output import ModbusOutput

__all__ = ["ModbusOutput"]
