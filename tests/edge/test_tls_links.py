"""Every device link is TLS, a device needs nothing but its provisioning bundle, and revocation
takes effect at once — against real Mosquitto, paho-mqtt (TCP and websockets transports), httpx
and tcpdump, on 127.0.0.1 and 127.0.0.2 (the store LAN's stand-in)."""

from __future__ import annotations

import dataclasses
import json
import signal
import socket
import subprocess
import time

import httpx
import paho.mqtt.client as mqtt
import pytest
from netkit import LAN, Session, session, ssl_context, tls_config, tls_refusal, wait_for
from support.emulation import EMULATED
from support.gateway import running_gateway
from support.paho import close_client
from support.privacy import RAW_EMAIL, RAW_PHONE
from support.services import require_program

from edge import schema
from edge.cli import main
from edge.pki import StorePki
from edge.provision import provision

pytestmark = pytest.mark.integration


def _toml(config) -> str:
    lines = []
    sections = {name: dataclasses.asdict(config.section(name)) for name in schema.config_schema()}
    for section, values in sections.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if value is None:
                continue
            lines.append(f"{key} = {json.dumps(str(value) if hasattr(value, 'parts') else value)}")
    return "\n".join(lines) + "\n"


def _cli_bundle(capsys, path, *args) -> dict:
    assert main(["devices", "add", "--config", str(path), *args]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    config = tls_config(tmp / "state")
    path = tmp / "gateway.toml"
    path.write_text(_toml(config))
    with running_gateway(config, features=("edge.model", "edge.decisioning")) as handle:  # identity: tokens
        yield handle, config, path


def _event(message_id: str, **properties) -> bytes:
    return json.dumps(
        {
            "messageId": message_id,
            "event": "Customer Identified" if properties else "Cart Viewed",
            "properties": properties,
        }
    ).encode()


def test_a_device_connects_with_nothing_but_its_bundle(store, capsys):
    handle, config, path = store
    bundle = _cli_bundle(capsys, path, "--kind", "kiosk", "--id", "k-bundle", "--client-cert")
    assert set(bundle["urls"]) == {"mqtts", "mtls", "https", "wss"} and all(LAN in u for u in bundle["urls"].values())
    assert "BEGIN CERTIFICATE" in bundle["ca_cert"] and "PRIVATE KEY" in bundle["client_key"]
    events = bundle["topics"]["events"]
    with session(bundle, "mqtts") as s:
        assert s.publish(events, _event("tls-1", identifiers={"email": RAW_EMAIL})) == 0
    with session(bundle, "wss") as s:
        assert s.publish(events, _event("wss-1")) == 0
    with session(bundle, "mtls") as s:
        assert s.publish(events, _event("mtls-1")) == 0
    with httpx.Client(base_url=bundle["urls"]["https"], verify=ssl_context(bundle)) as client:
        answer = client.post(
            "/v1/events",
            json={"batch": [{"messageId": "https-1", "event": "Cart Viewed"}]},
            headers={"Authorization": f"Bearer {bundle['http_token']}"},
        )
        assert answer.status_code == 200, answer.text
    with schema.open_journal(config) as journal:
        wait_for(lambda: all(journal.get(m) for m in ("tls-1", "wss-1", "mtls-1", "https-1")))
        assert '"deviceId":"k-bundle"' in journal.get("mtls-1")  # the certificate's CN is the device


def test_plaintext_wrong_ca_expired_and_foreign_certificates_are_refused(store, tmp_path):
    handle, config, _ = store
    bundle = provision(config, "kiosk", "k-refused", client_cert=True)
    host, port = LAN, int(bundle["urls"]["mqtts"].rsplit(":", 1)[1])
    # plaintext MQTT to the LAN: the TLS listener drops it, and nothing else listens there
    plain = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="plain", protocol=mqtt.MQTTv5)
    plain.username_pw_set(bundle["mqtt_username"], bundle["mqtt_password"])
    answers: list = []
    plain.on_connect = lambda _c, _u, _f, reason, _p: answers.append(reason)
    plain.connect(host, port)
    plain.loop_start()
    time.sleep(1.0)
    close_client(plain, disconnect=False)  # dropped by the TLS listener: paho may still hold its socket
    assert not any(not a.is_failure for a in answers)
    for lan_port in (1883, 1884):
        with pytest.raises(OSError):
            socket.create_connection((LAN, lan_port), timeout=1).close()
    with pytest.raises(httpx.HTTPError):  # plain HTTP to the HTTPS port
        httpx.get(bundle["urls"]["https"].replace("https://", "http://") + "/healthz", timeout=3)
    # a CA that is not the store's
    other = StorePki(tmp_path / "other", store_id="elsewhere")
    other.ensure()
    assert "CERTIFICATE_VERIFY_FAILED" in tls_refusal(host, port, ssl_context(bundle, ca=other.ca_pem()))
    with pytest.raises(httpx.ConnectError):
        httpx.get(bundle["urls"]["https"] + "/healthz", verify=ssl_context(bundle, ca=other.ca_pem()))
    # an expired client certificate from the store CA, and a valid-looking one from another CA
    long_ago = StorePki(
        config.store.state_dir / "pki", store_id=config.store.id, client_days=1, clock=lambda: time.time() - 90 * 86_400
    )
    expired = long_ago.issue_client("k-refused")
    foreign = other.issue_client("k-refused")
    mtls_port = int(bundle["urls"]["mtls"].rsplit(":", 1)[1])
    assert tls_refusal(LAN, mtls_port, ssl_context(bundle, client_cert=True)) == ""  # the valid one is accepted
    for cert, why in ((expired, "expired"), (foreign, "unknown ca")):
        context = ssl_context({**bundle, "client_cert": cert.cert_pem, "client_key": cert.key_pem}, client_cert=True)
        assert why in tls_refusal(LAN, mtls_port, context).lower()


def test_remove_revokes_password_token_certificate_and_live_sessions(store, capsys):
    handle, config, path = store
    bundle = provision(config, "display", "d-revoked", client_cert=True)
    password_session = Session(bundle, "mqtts", reconnect=True)
    cert_session = Session(bundle, "mtls", client_id="whatever", reconnect=True)
    for s in (password_session, cert_session):
        assert not s.start().is_failure
    with httpx.Client(base_url=bundle["urls"]["https"], verify=ssl_context(bundle)) as client:
        token = {"Authorization": f"Bearer {bundle['http_token']}"}
        assert client.post("/v1/events", json={"batch": [{"event": "Cart Viewed"}]}, headers=token).status_code == 200
        assert main(["devices", "remove", "--config", str(path), "--id", "d-revoked"]) == 0
        out = capsys.readouterr().out
        assert "1 certificate(s) on the CRL" in out and "live session ended" in out
        assert client.post("/v1/events", json={"batch": [{"event": "Cart Viewed"}]}, headers=token).status_code == 401
    for s in (password_session, cert_session):  # dropped at once, and paho's own reconnects fail
        wait_for(lambda s=s: s.disconnects, 10)
        time.sleep(2.5)
        assert not s.connected.is_set()
        s.stop()
    with pytest.raises(AssertionError):
        with session(bundle, "mqtts"):
            pass
    mtls_port = int(bundle["urls"]["mtls"].rsplit(":", 1)[1])
    assert "revoked" in tls_refusal(LAN, mtls_port, ssl_context(bundle, client_cert=True)).lower()


def test_a_capture_of_a_device_session_holds_no_secret(store, tmp_path):
    handle, config, _ = store
    tcpdump = require_program("tcpdump")
    bundle = provision(config, "kiosk", "k-captured-7f3a")
    ports = sorted({int(u.rsplit(":", 1)[1].split("/")[0]) for u in bundle["urls"].values()})
    capture = tmp_path / "device.pcap"
    filter_ = f"host {LAN} and (" + " or ".join(f"tcp port {p}" for p in ports) + ")"
    dump = subprocess.Popen(
        [tcpdump, "-i", "lo", "-U", "-n", "-Z", "root", "-s", "0", "-w", str(capture), filter_],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        said = []  # libpcap may warn before it says it listens
        while len(said) < 20 and not any("listening" in line for line in said):
            line = dump.stderr.readline().decode()
            if not line:
                break
            said.append(line)
        if EMULATED and any("ioctl failed: Function not implemented" in line for line in said):
            # qemu-user translates no SIOCETHTOOL: libpcap cannot open the interface at all there
            pytest.skip(f"tcpdump cannot capture under qemu-user emulation: {said[0].strip()}")
        assert any("listening" in line for line in said), said
        time.sleep(0.5)  # the filter is attached just after tcpdump says it listens
        with session(bundle, "mqtts") as s:
            assert (
                s.publish(
                    bundle["topics"]["events"], _event("cap-1", identifiers={"email": RAW_EMAIL, "phone": RAW_PHONE})
                )
                == 0
            )
        with session(bundle, "wss") as s:
            assert s.publish(bundle["topics"]["events"], _event("cap-2", identifiers={"email": RAW_EMAIL})) == 0
        answer = httpx.post(
            bundle["urls"]["https"] + "/v1/events",
            verify=ssl_context(bundle),
            headers={"Authorization": f"Bearer {bundle['http_token']}"},
            json={
                "batch": [
                    {
                        "messageId": "cap-3",
                        "event": "Customer Identified",
                        "properties": {"identifiers": {"email": RAW_EMAIL}},
                    }
                ]
            },
        )
        assert answer.status_code == 200
        time.sleep(0.5)
    finally:
        dump.send_signal(signal.SIGTERM)
        dump.wait(10)
        dump.stderr.close()
    data = capture.read_bytes()
    assert len(data) > 5_000, "the capture saw the session"  # handshakes + records
    secrets = [
        bundle["mqtt_password"],
        bundle["http_token"],
        RAW_EMAIL,
        RAW_PHONE,
        "Quuxington",
        "k-captured-7f3a",
        "Customer Identified",
    ]
    leaked = [s for s in secrets if s.encode().lower() in data.lower()]
    assert not leaked, leaked
