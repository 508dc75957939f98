"""The Modbus TCP output: register maps (built-in ones are package data in ``maps/``),
encoding, the per-unit image, the server and the writes that become meter commands; the
auto-pinned slots (``<state_dir>/modbus/<meter>.json``) and the layout a unit serves; the
relay that serves the units of several worker processes on one endpoint."""

from gateway.modbus.layout import Layout, pin_new, point_unit, polled_names, with_counters
from gateway.modbus.loader import builtin_path, load_mapping
from gateway.modbus.mapping import Point, RegisterMap
from gateway.modbus.output import ModbusOutput
from gateway.modbus.pins import Pin, Pins, PinStore
from gateway.modbus.relay import DOWN, Down, ModbusRelay, RelayStats

__all__ = ["DOWN", "Down", "Layout", "ModbusOutput", "ModbusRelay", "Pin", "PinStore", "Pins",
           "Point", "RegisterMap", "RelayStats", "builtin_path", "load_mapping", "pin_new",
           "point_unit", "polled_names", "with_counters"]
