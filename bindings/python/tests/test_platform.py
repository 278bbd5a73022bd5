"""Deploy, invoke, usage, status, parking, removal, persistence."""

from __future__ import annotations

import pathlib
import zlib

import pytest

import corral
from conftest import CHAOS, HELLO, HELLO_BODY, THRESHOLDS_NEVER_TOML, config, tier


def test_deploy_returns_what_was_stored(platform: corral.Platform) -> None:
    info = platform.deploy("hello", HELLO)
    assert info == {
        "name": "hello",
        "tier": "free",
        "kind": "wasm",
        "bytes": len(HELLO),
        "crc32": zlib.crc32(HELLO),
        "static_files": 0,
        "replaced": False,
    }
    again = platform.deploy("hello", HELLO, tier="test")
    assert (again["tier"], again["replaced"]) == ("test", True)
    assert [(a["name"], a["tier"], a["kind"], a["version"]) for a in platform.apps()] == [
        ("hello", "test", "wasm", 2)
    ]


def test_invoke_returns_status_headers_body_and_figures(platform: corral.Platform) -> None:
    platform.deploy("hello", HELLO)
    resp = platform.invoke("hello")
    assert resp.status == 200
    assert resp.body == HELLO_BODY
    assert resp.text == HELLO_BODY.decode()
    assert resp.headers["content-type"] == "text/plain"
    assert resp.fuel_used > 0
    assert resp.memory_peak == 65536  # the module's one page
    assert 0 < resp.wall_ms < 5000
    assert "Response(status=200" in repr(resp)


def test_request_method_path_headers_and_body_reach_the_guest(platform: corral.Platform) -> None:
    platform.deploy("chaos", CHAOS, tier="test")
    echo = platform.invoke("chaos", method="POST", body=b"cpayload \x00\xff")
    assert echo.body == b"payload \x00\xff"
    env = platform.invoke(
        "chaos", method="PUT", path="/a/b?x=1", headers={"X-Trace": "t1"}, body="e"
    ).text.splitlines()
    assert "REQUEST_METHOD=PUT" in env
    assert "PATH_INFO=/a/b" in env
    assert "QUERY_STRING=x=1" in env
    assert "HTTP_X_TRACE=t1" in env
    as_pairs = platform.invoke("chaos", headers=[("x-a", "1"), ("x-a", "2")], body="e").text
    assert "HTTP_X_A=1, 2" in as_pairs.splitlines()


def test_bad_request_arguments_are_value_and_type_errors(platform: corral.Platform) -> None:
    platform.deploy("hello", HELLO)
    with pytest.raises(ValueError, match="invalid method"):
        platform.invoke("hello", method="GE T")
    with pytest.raises(ValueError, match="invalid path"):
        platform.invoke("hello", path="no spaces allowed")
    with pytest.raises(ValueError, match="invalid header name"):
        platform.invoke("hello", headers={"bad header": "x"})
    with pytest.raises(TypeError, match="body must be bytes or str"):
        platform.invoke("hello", body=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="source must be"):
        platform.deploy("hello", 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind must be"):
        platform.deploy("hello", HELLO, kind="python")


def test_deploy_from_a_path_and_from_javascript_source(
    platform: corral.Platform, tmp_path: pathlib.Path
) -> None:
    module = tmp_path / "app.wasm"
    module.write_bytes(HELLO)
    assert platform.deploy("from-path", module)["bytes"] == len(HELLO)
    assert platform.invoke("from-path").body == HELLO_BODY
    with pytest.raises(FileNotFoundError):
        platform.deploy("missing", tmp_path / "nope.wasm")

    js = 'export default { async fetch(request) { return new Response("hi from js " + request.method) } }'
    info = platform.deploy("js-app", js)
    assert (info["kind"], info["bytes"]) == ("js", len(js))
    resp = platform.invoke("js-app", method="POST")
    assert (resp.status, resp.text) == (200, "hi from js POST")


SSE_JS = """export default { fetch(request, env, ctx) {
  const { readable, writable } = new TransformStream();
  const writer = writable.getWriter();
  const forever = new URL(request.url).pathname === "/forever";
  ctx.waitUntil((async () => {
    for (let i = 0; forever || i < 3; i++) {
      await writer.write(new TextEncoder().encode(`data: ${i}\\n\\n`));
      await new Promise((r) => setTimeout(r, 20));
    }
    await writer.close();
  })());
  return new Response(readable, { headers: { "content-type": "text/event-stream" } });
} }"""


def test_an_event_stream_is_collected_until_it_ends(tmp_path: pathlib.Path) -> None:
    with corral.Platform(
        data_dir=tmp_path, config=config(tiers={"t": tier(wall_clock="1s")})
    ) as platform:
        platform.deploy("sse", SSE_JS, tier="t")
        resp = platform.invoke("sse")
        assert resp.headers["content-type"] == "text/event-stream"
        assert resp.text == "data: 0\n\ndata: 1\n\ndata: 2\n\n"
        # One that never ends is collected for the tier's wall clock at most.
        with pytest.raises(corral.DeadlineExceeded):
            platform.invoke("sse", path="/forever")


def test_usage_counts_requests_against_the_tier_quota(platform: corral.Platform) -> None:
    platform.deploy("hello", HELLO)
    fuel = sum(platform.invoke("hello").fuel_used for _ in range(3))
    report = platform.usage("hello")
    assert report["tier"] == "free"
    assert report["requests_quota"] == 10_000
    assert report["usage"]["tenant"] == "hello"
    assert report["usage"]["requests"] == 3
    assert report["usage"]["errors"] == 0
    assert report["usage"]["fuel"] == fuel
    assert report["usage"]["bytes_out"] == 3 * len(HELLO_BODY)


def test_park_then_the_next_request_is_a_cold_start(platform: corral.Platform) -> None:
    platform.deploy("hello", HELLO)
    # A deploy leaves the app parked: the first request wakes it.
    assert platform.status("hello")["state"] == "parked"
    first = platform.invoke("hello")
    assert (first.status, first.cold_start) == (200, True)
    status = platform.status("hello")
    assert (status["state"], status["in_flight"]) == ("warm", 0)
    assert platform.park("hello") is True
    assert platform.status("hello")["state"] == "parked"
    assert platform.park("hello") is False
    resp = platform.invoke("hello")
    assert (resp.body, resp.cold_start) == (HELLO_BODY, True)
    assert platform.invoke("hello").cold_start is False
    after = platform.status("hello")
    assert (after["state"], after["cold_starts"]) == ("warm", 2)


def test_remove(platform: corral.Platform) -> None:
    platform.deploy("hello", HELLO)
    assert platform.remove("hello") is True
    assert platform.remove("hello") is False
    assert platform.apps() == []
    with pytest.raises(corral.TenantNotFound):
        platform.invoke("hello")


def test_tiers_are_the_presets_plus_configured_ones(platform: corral.Platform) -> None:
    tiers = platform.tiers
    assert sorted(tiers) == ["free", "omni-core", "pilot", "pro", "scale", "sovereign", "test"]
    free = tiers["free"]
    assert (free["compute_shares"], free["memory_bytes"], free["requests_per_month"]) == (
        1,
        64 << 20,
        10_000,
    )
    assert tiers["test"]["fuel_per_request"] == 1_000_000_000


def test_set_tier_and_logs(platform: corral.Platform) -> None:
    platform.deploy("chaos", CHAOS)
    assert platform.set_tier("chaos", "pro")["tier"] == "pro"
    assert platform.usage("chaos")["requests_quota"] == 100_000
    assert platform.invoke("chaos", body="w").text == "hello\n"
    assert platform.logs("chaos")[-2:] == ["line one", "line two"]


def test_data_survives_a_restart(tmp_path: pathlib.Path) -> None:
    with corral.Platform(data_dir=tmp_path, config=config()) as first:
        first.deploy("hello", HELLO)
        first.invoke("hello")
        assert first.data_dir == tmp_path
    with corral.Platform(data_dir=str(tmp_path), config=config()) as second:
        assert [a["name"] for a in second.apps()] == ["hello"]
        assert second.invoke("hello").body == HELLO_BODY
        assert second.usage("hello")["usage"]["requests"] == 2


def test_temporary_store_is_removed_on_close() -> None:
    platform = corral.Platform(config=config())
    path = platform.data_dir
    assert path.is_dir()
    platform.deploy("hello", HELLO)
    platform.close()
    platform.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        platform.invoke("hello")
    del platform
    assert not path.exists()


def test_config_as_toml_and_metrics(tmp_path: pathlib.Path) -> None:
    toml = f'data_dir = "{tmp_path}"\ndefault_tier = "pro"\n' + THRESHOLDS_NEVER_TOML
    with corral.Platform(config=toml) as p:
        assert p.data_dir == tmp_path
        assert p.deploy("hello", HELLO)["tier"] == "pro"
        p.invoke("hello")
        assert "hello" in p.metrics()


def test_version() -> None:
    assert corral.__version__ == "0.1.0"


COMPONENTS = pathlib.Path(__file__).resolve().parents[3] / "sandbox-core/tests/fixtures/components"


def test_deploy_picks_the_component_backend_from_the_header(platform: corral.Platform) -> None:
    """A wasi:http/proxy component deploys like a module (`kind="wasm"` is the
    content type); the binary's header makes it a component."""
    info = platform.deploy("hello-c", COMPONENTS / "hello.wasm", tier="test", kind="wasm")
    assert info["kind"] == "component"
    resp = platform.invoke("hello-c")
    assert (resp.status, resp.body) == (200, b"Hello from C\n")
    assert resp.fuel_used > 0
    platform.deploy("out", COMPONENTS / "outbound.wasm", tier="test")
    with pytest.raises(corral.OutboundRefused) as refused:
        platform.invoke("out", headers={"x-target": "127.0.0.1:9"})
    assert refused.value.code == "outbound_refused"
    assert refused.value.authority == "127.0.0.1:9"
