"""--path-normalization on the other targets: kind installs with the mode; the probe is unsupported there."""

import shutil
import socket
import subprocess
import threading

import pytest

from meshjwt.kube.curl import Transfer, batch_config
from meshjwt.security.pytest_plugin import unsupported_reason
from meshjwt.settings import Settings


def test_kind_installs_with_the_chosen_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHJWT_CACHE", str(tmp_path))
    from meshjwt.targets.kind import KindMesh, KindOptions

    plain = KindMesh(Settings(target="kind", target_options=KindOptions(istio_version="1.29")), '{"keys": []}')
    merged = KindMesh(Settings(target="kind", target_options=KindOptions(istio_version="1.29"),
                               path_normalization="MERGE_SLASHES"),
                      '{"keys": []}')  # fmt: skip
    assert "pathNormalization" not in plain.overlay()["spec"]["meshConfig"]
    assert merged.overlay()["spec"]["meshConfig"]["pathNormalization"] == {"normalization": "MERGE_SLASHES"}
    assert merged.config_hash() != plain.config_hash()  # another mode → another cluster


def test_probe_is_unsupported_off_the_local_mesh():
    assert unsupported_reason(Settings(target="local")) is None
    for target in ("kind", "cluster"):
        assert "no probe backends" in unsupported_reason(Settings(target=target))


@pytest.mark.integration
def test_kube_curl_sends_a_repeated_header_twice():
    def config(url: str) -> str:
        transfer = Transfer(url, headers={"Authorization": "Bearer\tA"}, extra_headers=[("Authorization", "B")])
        return batch_config([transfer], timeout=5, nonce="n")

    assert config("http://h/headers").count("\nheader = ") == 2
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed: the plan was checked, not what curl sends")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        received: list[bytes] = []

        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                received.append(data)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{server.getsockname()[1]}/headers"
        subprocess.run(["curl", "-sS", "-K", "-"], input=config(url), text=True, capture_output=True, timeout=10)
        thread.join(5)
    sent = [line for line in received[0].decode().split("\r\n") if line.startswith("Authorization")]
    assert sent == ["Authorization: Bearer\tA", "Authorization: B"]
