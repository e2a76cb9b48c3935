"""The Compose flavour, remembered on disk until COMPOSE_CMD or a Compose binary changes."""

from __future__ import annotations

from deploy.machine.flavour import detect_flavour_cached


def test_the_compose_flavour_is_probed_once_until_the_binaries_change(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []

    def probe(argv):
        calls.append(argv)
        if argv[0] == "docker-compose":
            return 0, "1.29.2\n"
        return 1, ""

    assert detect_flavour_cached(None, probe) == (("docker-compose",), "v1")
    probes = len(calls)
    assert probes >= 2
    assert detect_flavour_cached(None, probe) == (("docker-compose",), "v1")
    assert len(calls) == probes
    assert detect_flavour_cached("docker-compose", probe) == (("docker-compose",), "v1")
    assert len(calls) == probes + 1  # another COMPOSE_CMD is another key
