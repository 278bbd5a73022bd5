"""The stubs describe the module: mypy accepts the sample and rejects misuse,
and every public runtime name is in the stubs (stubtest runs in CI as well)."""

from __future__ import annotations

import pathlib

import pytest

import corral
import corral._corral as native

api = pytest.importorskip("mypy.api")
HERE = pathlib.Path(__file__).resolve().parent


def mypy(*args: str) -> tuple[str, int]:
    out, err, code = api.run(["--strict", "--no-incremental", "--cache-dir=/dev/null", *args])
    return out + err, code


def test_sample_type_checks() -> None:
    out, code = mypy(str(HERE / "typing_sample.py"))
    assert code == 0, out


def test_misuse_is_rejected() -> None:
    out, code = mypy(
        "-c",
        "import corral\n"
        "p = corral.Platform()\n"
        "p.invoke(3)\n"
        "r = p.invoke('a')\n"
        "r.status + 'x'\n"
        "e = corral.FuelExhausted('m', limit=1, consumed=1)\n"
        "e.retry_after\n",
    )
    assert code == 1, out
    assert 'Argument 1 to "invoke" of "Platform" has incompatible type "int"' in out
    assert 'Unsupported operand types for + ("int" and "str")' in out
    assert '"FuelExhausted" has no attribute "retry_after"' in out
    assert "Found 3 errors" in out


def test_runtime_names_match_the_stub_names() -> None:
    stub = (pathlib.Path(native.__file__).parent / "_corral.pyi").read_text()
    runtime = {n for n in dir(native) if not n.startswith("_")}
    assert runtime == {"Platform", "Response"}
    for name in runtime:
        assert f"class {name}:" in stub
    for name in dir(corral.Platform):
        if not name.startswith("_"):
            assert f"def {name}(" in stub, name
    assert set(corral.__all__) <= set(dir(corral))
