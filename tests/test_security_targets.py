"""--path-normalization on the other targets: kind installs with the mode; the probe is unsupported there."""

from meshjwt.security.pytest_plugin import unsupported_reason
from meshjwt.settings import Settings


def test_kind_installs_with_the_chosen_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("MESHJWT_CACHE", str(tmp_path))
    from meshjwt.targets.kind import KindMesh

    plain = KindMesh(Settings(target="kind", extra={"istio_version": "1.29"}), '{"keys": []}')
    merged = KindMesh(Settings(target="kind", extra={"istio_version": "1.29", "path_normalization": "MERGE_SLASHES"}),
                      '{"keys": []}')  # fmt: skip
    assert "pathNormalization" not in plain.overlay()["spec"]["meshConfig"]
    assert merged.overlay()["spec"]["meshConfig"]["pathNormalization"] == {"normalization": "MERGE_SLASHES"}
    assert merged.config_hash() != plain.config_hash()  # another mode → another cluster


def test_probe_is_unsupported_off_the_local_mesh():
    assert unsupported_reason(Settings(target="local")) is None
    for target in ("kind", "cluster"):
        assert "no probe backends" in unsupported_reason(Settings(target=target))
