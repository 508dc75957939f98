"""WebApiClient over HTTPS to the simulator with a certificate from a trustme CA."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme

from gateway.errors import MeterUnavailable
from gateway.meter import TlsContexts, WebApiClient
from gateway.secret import Secret
from gateway.simulator import SimMeter, SimServer
from tests.support.simulator import SIM_PASSWORD, SIM_USERNAME

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
async def tls_url(ca: trustme.CA, sim_meter: SimMeter) -> AsyncIterator[str]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    async with SimServer([sim_meter], ssl=context) as server:
        url = server.url_for(sim_meter)
        assert url.startswith("https://")
        yield url


def client(url: str, verify_tls: bool | str, tls: TlsContexts | None = None) -> WebApiClient:
    return WebApiClient("tls", url, SIM_USERNAME, Secret(SIM_PASSWORD), verify_tls=verify_tls,
                        tls=tls)


async def test_verification_against_the_ca_bundle_works(tls_url: str, ca_file: str,
                                                        sim_meter: SimMeter) -> None:
    async with client(tls_url, ca_file) as c:
        ident = await c.identity()
    assert ident.serial == sim_meter.serial


async def test_default_verification_rejects_a_private_ca_clearly(tls_url: str,
                                                                 sim_meter: SimMeter) -> None:
    async with client(tls_url, True) as c:
        with pytest.raises(MeterUnavailable, match="TLS certificate verification failed") as info:
            await c.read()
    assert "verify_tls" in str(info.value)
    assert sim_meter.logins == 0


@pytest.mark.parametrize("shared", [False, True], ids=["own-context", "fleet-contexts"])
async def test_verification_can_be_turned_off(tls_url: str, sim_meter: SimMeter,
                                              shared: bool) -> None:
    """Also through the contexts a fleet shares (the gateway's own path), which httpx builds
    with ``create_ssl_context``: its first parameter became ``verify`` in 0.28 only."""
    async with client(tls_url, False, TlsContexts() if shared else None) as c:
        reading = await c.read()
    assert reading.registers
    assert sim_meter.logins == 1


async def test_a_ca_bundle_for_another_authority_fails(tls_url: str, tmp_path: Path) -> None:
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    async with client(tls_url, str(other)) as c:
        with pytest.raises(MeterUnavailable, match="TLS certificate verification failed"):
            await c.read()
