"""The Modbus TCP output: register maps (built-in ones are package data in ``maps/``),
encoding, the per-unit image, the server and the writes that become meter commands."""

from gateway.modbus.loader import builtin_path, load_mapping
from gateway.modbus.mapping import Point, RegisterMap
from gateway.modbus.output import ModbusOutput

__all__ = ["ModbusOutput", "Point", "RegisterMap", "builtin_path", "load_mapping"]
