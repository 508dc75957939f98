"""``/api/sys``: read-only system information of a simulated meter (egauge-webapi §4)."""

from __future__ import annotations

from gateway.simulator.database import Database
from gateway.simulator.tree import Json

FIRMWARE = "4.7.2"
HARDWARE = "3EA"
KERNEL = "5.15.95+ #47 PREEMPT"


def system_tree(*, serial: str, model: str, now: float, boot_time: float,
                boot_reason: str, user_boot: float | None, db: Database,
                ipv4: Json, reboot_pending: bool) -> dict[str, Json]:
    """The whole ``/sys`` tree at ``now``: ``time`` is a string, ``uptime`` a number."""
    return {
        "sn": serial,
        "model": model,
        "time": f"{now:.6f}",
        "uptime": round(max(0.0, now - boot_time), 3),
        "version": {"firmware": FIRMWARE, "hardware": HARDWARE, "kernel": KERNEL},
        "boot": {
            "reason": boot_reason,
            "time": None if user_boot is None else f"{user_boot:.3f}",
            "backup_power_ok": True,
        },
        "reboot": reboot_pending,
        "db": {"max-registers": 64, "level": db.levels_json()},
        "net": {
            "ipv4": ipv4,
            "link": [{"id": 2, "name": "eth0", "state": "up", "addr": "00:50:c2:00:00:01",
                      "broadcast": "ff:ff:ff:ff:ff:ff"}],
        },
        "alert": [{"id": "pxyup", "reason": "Proxy-connection established"}],
        "team": {"lag": 0.195},
        "dev": {"serial": []},
    }
