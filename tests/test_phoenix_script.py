"""The Phoenix vLLM feature script without a container: input validation, lock choice, contracts.

Hostile CTIDs and lock names must be refused before anything reaches `pct` (the pct stand-in
records every call) and nothing they smuggle in may run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sample_lock import make_lock

from vllm_lock import codec

sys.path.insert(0, str(Path(__file__).parent / "phoenix"))
import harness as ph  # noqa: E402
import rootfs  # noqa: E402

CTID = "801"


def lock_text(name: str) -> str:
    """A valid lock (the host validates it before anything else happens)."""
    return codec.dumps(make_lock(name=name))


@pytest.fixture
def host(tmp_path: Path) -> ph.Host:
    host = ph.make_host(tmp_path / "host", ph.phoenix_config(CTID))
    (host.lock_dir / "stable.lock.toml").write_text(lock_text("stable"))
    return host


def _script_regex(name: str) -> str:
    text = ph.FEATURE_SCRIPT.read_text()
    m = re.search(rf"^{name}='([^']*)'$", text, re.M)
    assert m, name
    return m.group(1)


HOSTILE_LOCK_NAMES = [
    "dev; touch {pwned}",
    "$(touch {pwned})",
    "`touch {pwned}`",
    "../../../../tmp/x",
    "stable\ntouch {pwned}",
    "Dev",
    "-rf",
    "",
    "a" * 65,
]


@pytest.mark.parametrize("value", HOSTILE_LOCK_NAMES)
def test_hostile_lock_name_is_refused_and_nothing_runs(host: ph.Host, tmp_path: Path, value: str) -> None:
    pwned = tmp_path / "pwned"
    host.write_config(ph.phoenix_config(CTID, vllm_lock=value.format(pwned=pwned)))
    proc = host.run(CTID, "https://172.16.100.11:9000")
    assert proc.returncode != 0
    assert proc.returncode == 2
    assert "Refusing" in proc.stderr
    assert host.pct_calls() == []
    assert not pwned.exists()


@pytest.mark.parametrize("value", [["dev"], {"name": "dev"}, 7])
def test_non_string_lock_value_is_refused(host: ph.Host, value: object) -> None:
    host.write_config(ph.phoenix_config(CTID, vllm_lock=value))
    proc = host.run(CTID)
    assert proc.returncode == 2
    assert "Refusing" in proc.stderr
    assert host.pct_calls() == []


@pytest.mark.parametrize("ctid", ["101; touch {pwned}", "$(touch {pwned})", "101 ", "-1", "1e3", "", "abc",
                                  "1234567890"])
def test_hostile_ctid_is_refused_and_nothing_runs(host: ph.Host, tmp_path: Path, ctid: str) -> None:
    pwned = tmp_path / "pwned"
    proc = host.run(ctid.format(pwned=pwned))
    assert proc.returncode == 2
    assert "CTID must be digits only" in proc.stderr
    assert host.pct_calls() == []
    assert not pwned.exists()


def test_missing_ctid_is_a_usage_error(host: ph.Host) -> None:
    proc = host.run()
    assert proc.returncode == 2
    assert "Usage:" in proc.stderr


def test_default_lock_is_stable_and_per_container_key_overrides(host: ph.Host) -> None:
    # no container exists: the script gets as far as choosing the lock, then pct fails
    proc = host.run(CTID)
    assert "Using lock 'stable'" in proc.stderr
    (host.lock_dir / "dev.lock.toml").write_text(lock_text("dev"))
    host.write_config(ph.phoenix_config(CTID, vllm_lock="dev"))
    proc = host.run(CTID)
    assert "Using lock 'dev'" in proc.stderr


def test_fleet_default_at_file_root(host: ph.Host) -> None:
    (host.lock_dir / "canary.lock.toml").write_text(lock_text("canary"))
    config = ph.phoenix_config(CTID)
    config["vllm_lock"] = "canary"
    host.write_config(config)
    assert "Using lock 'canary'" in host.run(CTID).stderr


def test_missing_lock_file_fails_before_touching_the_container(host: ph.Host) -> None:
    host.write_config(ph.phoenix_config(CTID, vllm_lock="nosuch"))
    proc = host.run(CTID)
    assert proc.returncode == 1
    assert "Lock 'nosuch' not found" in proc.stderr
    assert host.pct_calls() == []


def test_vllm_requires_the_nvidia_feature_through_templates(host: ph.Host) -> None:
    config = ph.phoenix_config(CTID)
    config["lxc_configs"]["911"]["features"] = []
    host.write_config(config)
    proc = host.run(CTID)
    assert proc.returncode == 1
    assert "requires the 'nvidia' feature" in proc.stderr
    assert host.pct_calls() == []


def test_log_lines_follow_phoenix_format(host: ph.Host) -> None:
    host.run(CTID)
    first = host.log().splitlines()[0]
    assert re.match(rf"^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d \[INFO\] {ph.SCRIPT_NAME}: ", first), first


def test_schema_snippet_matches_the_script() -> None:
    snippet = json.loads((ph.REPO / "phoenix" / "phoenix_lxc_configs.schema.vllm_lock.json").read_text())
    prop = snippet["vllm_lock"]
    assert prop["pattern"] == _script_regex("LOCK_NAME_RE")
    assert prop["default"] == "stable"
    for good in ("stable", "dev", "2026-11-12", "a.b_c-d"):
        assert re.fullmatch(prop["pattern"], good)


def test_script_passes_bash_syntax_check() -> None:
    for script in (ph.FEATURE_SCRIPT, ph.BUNDLE_BUILDER, ph.HERE / "pct",
                   ph.HERE / "phoenix_hypervisor_common_utils.sh"):
        subprocess.run(["bash", "-n", str(script)], check=True)


def test_script_never_disables_tls_verification() -> None:
    text = ph.FEATURE_SCRIPT.read_text()
    for bad in ("--trusted-host", "GIT_SSL_NO_VERIFY", "sslVerify", "--allow-insecure-host", "UV_INSECURE_HOST",
                "--no-check-certificate", "verify=False", "-k "):
        assert bad not in text, bad


def test_the_phoenix_rootfs_is_kept_in_the_suite_cache_not_the_products(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The product's cache variables point into this run's tmp; a rootfs kept there would be
    debootstrapped again on every run."""
    suite = Path(os.environ["VLLM_LOCK_TEST_CACHE"])
    assert rootfs.tarball_path().parent == rootfs.cache_dir() == suite / "phoenix"
    monkeypatch.setenv("VLLM_LOCK_CACHE", str(tmp_path / "product-cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert rootfs.cache_dir() == suite / "phoenix"


# ---- the binary cache key "vllm_cache" --------------------------------------------------------------
HOSTILE_CACHE_VALUES = [
    "/srv/cache; touch {pwned}",
    "$(touch {pwned})",
    "`touch {pwned}`",
    "/srv/../etc",
    "/srv/.hidden",
    "srv/relative",
    "file://srv/relative",
    "ftp://cache.lan/vllm",
    "http://user:secret@cache.lan/vllm",
    "https://cache.lan/v llm",
    "https://-cache.lan/vllm",
    "s3://Bucket/vllm",
    "s3://builds/vllm?endpoint=http://x;touch {pwned}",
    "/srv/cache\ntouch {pwned}",
    "/srv/cache\u00a0",
    "",
    "/" + "a" * 65,  # a path segment has at most 64
    "https://cache.lan/" + "/".join(["a" * 60] * 20),
]
GOOD_CACHE_VALUES = {
    "/srv/vllm-cache": "file:///srv/vllm-cache",
    "/srv/vllm-cache/": "file:///srv/vllm-cache",
    "file:///var/lib/vllm_cache.d": "file:///var/lib/vllm_cache.d",
    "https://cache.lan:8443/vllm/": "https://cache.lan:8443/vllm",
    "http://[::1]:9000/c": "http://[::1]:9000/c",
    "s3://builds/vllm?endpoint=http://10.0.0.5:9000&region=us-east-1":
        "s3://builds/vllm?endpoint=http://10.0.0.5:9000&region=us-east-1",
}


def _refusal_lines(host: ph.Host) -> list[str]:
    return [line for line in host.log().splitlines() if "[ERROR]" in line and "Script failed" not in line]


@pytest.mark.parametrize("value", HOSTILE_CACHE_VALUES)
def test_hostile_cache_value_is_refused_and_nothing_runs(host: ph.Host, tmp_path: Path, value: str) -> None:
    pwned = tmp_path / "pwned"
    config = ph.phoenix_config(CTID)
    config["lxc_configs"][CTID]["vllm_cache"] = value.format(pwned=pwned)
    host.write_config(config)
    proc = host.run(CTID)
    assert proc.returncode == 2, proc.stderr
    lines = _refusal_lines(host)
    assert len(lines) == 1 and "Refusing: 'vllm_cache' must be" in lines[0], lines
    # one line each: a newline in the value cannot make a second (forged) log line
    assert all(re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[", line) for line in proc.stderr.splitlines())
    assert host.pct_calls() == []
    assert not pwned.exists()


@pytest.mark.parametrize("value", [["/srv/cache"], {"url": "/srv/cache"}, 7, True])
def test_non_string_cache_value_is_refused(host: ph.Host, value: object) -> None:
    config = ph.phoenix_config(CTID)
    config["vllm_cache"] = value  # the fleet-wide default is checked the same way
    host.write_config(config)
    proc = host.run(CTID)
    assert proc.returncode == 2
    assert len(_refusal_lines(host)) == 1 and "'vllm_cache' must be" in proc.stderr
    assert host.pct_calls() == []


@pytest.mark.parametrize("value", sorted(GOOD_CACHE_VALUES))
def test_good_cache_values_are_accepted_and_normalized(host: ph.Host, value: str) -> None:
    # no offline bundle on this host: the cache steps cannot run here, which the script says,
    # naming the normalized URL (a directory is a file:// cache); then it goes on (and stops at
    # the first pct call: there is no container)
    config = ph.phoenix_config(CTID)
    config["vllm_cache"] = value
    host.write_config(config)
    proc = host.run(CTID)
    assert "Refusing" not in proc.stderr
    assert f"Binary cache {GOOD_CACHE_VALUES[value]} not used: no offline bundle" in proc.stderr


def test_schema_cache_pattern_matches_the_script() -> None:
    snippet = json.loads((ph.REPO / "phoenix" / "phoenix_lxc_configs.schema.vllm_lock.json").read_text())
    prop = snippet["vllm_cache"]
    assert prop["pattern"] == _script_regex("CACHE_URL_RE")
    assert prop["type"] == "string" and prop["maxLength"] == 1024
    for good in GOOD_CACHE_VALUES:
        assert re.fullmatch(prop["pattern"], good), good
    for bad in HOSTILE_CACHE_VALUES[:-1]:  # the last one fits the pattern; maxLength refuses it
        assert not re.fullmatch(prop["pattern"], bad.format(pwned="/tmp/p")), bad
    assert len(HOSTILE_CACHE_VALUES[-1]) > prop["maxLength"]


def test_offline_lock_bundle_must_be_a_regular_file(host: ph.Host, tmp_path: Path) -> None:
    host.lock_bundles.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere.tar"
    elsewhere.write_bytes(b"x")
    (host.lock_bundles / "stable.tar").symlink_to(elsewhere)
    proc = host.run(CTID)
    assert proc.returncode == 2
    lines = _refusal_lines(host)
    assert len(lines) == 1 and "is a symbolic link" in lines[0], lines
    assert host.pct_calls() == []


# ---- the binary cache's key files: checked with the bundle's vllm-lock, before any pct call -------
@pytest.fixture(scope="module")
def tool_bundle() -> Path:
    bundle: Path = ph.ensure_bundle(rootfs.cache_dir())
    return bundle


@pytest.fixture
def cache_host(host: ph.Host, tool_bundle: Path, tmp_path: Path) -> ph.Host:
    import shutil

    shutil.copy2(tool_bundle, host.bundle)
    config = ph.phoenix_config(CTID)
    config["vllm_cache"] = str(tmp_path / "vllm-cache")
    host.write_config(config)
    return host


def test_cache_keys_are_checked_on_the_host(cache_host: ph.Host, tmp_path: Path) -> None:
    host = cache_host
    public = ph.make_cache_signing_key(host)
    signing = host.cache_keys_dir / "signing.key"
    trusted = host.cache_keys_dir / "trusted-keys"

    # good keys: the script gets past every host check (and stops at the first pct call)
    trusted.write_text(f"# the fleet's builders\nother-1:{'A' * 43}=\n")
    proc = host.run(CTID)
    assert "Refusing" not in proc.stderr, proc.stderr
    assert "trusted keys: phoenix-1 other-1; this host signs and publishes new builds" in proc.stderr
    assert host.pct_calls()

    cases: list[tuple[str, str]] = [
        (f"{public}\nnot-a-key\n", "not a public cache key"),
        (signing.read_text(), "is a secret key, not a public one"),
        (public.split(":")[0] + ":" + "B" * 43 + "=\n", "also the name of another key"),
    ]
    for text, needle in cases:
        trusted.write_text(text)
        host.pct_log.write_text("")
        host.log_file.write_text("")
        proc = host.run(CTID)
        assert proc.returncode == 2, proc.stderr
        lines = _refusal_lines(host)
        assert len(lines) == 1 and needle in lines[0], lines
        assert host.pct_calls() == []
    trusted.unlink()

    signing.chmod(0o644)  # a secret others can read is refused, like ssh refuses it
    host.log_file.write_text("")
    proc = host.run(CTID)
    assert proc.returncode == 2
    assert "open to others than its owner" in proc.stderr and host.pct_calls() == []
    signing.chmod(0o600)

    signing.rename(tmp_path / "real.key")
    signing.symlink_to(tmp_path / "real.key")
    proc = host.run(CTID)
    assert proc.returncode == 2
    assert "must be a regular file" in proc.stderr and host.pct_calls() == []


def test_a_duplicate_vllm_cache_key_is_refused(host: ph.Host) -> None:
    """jq keeps the last of duplicate keys: a reviewed cache could be swapped by a second key below it."""
    text = json.dumps(ph.phoenix_config(CTID), indent=2)
    text = text.replace('"name": "embedding-server",',
                        '"vllm_cache": "/srv/reviewed", "name": "embedding-server", "vllm_cache": "/srv/other",')
    host.config_file.write_text(text)
    proc = host.run(CTID)
    assert proc.returncode == 2
    lines = _refusal_lines(host)
    assert len(lines) == 1 and "more than one 'vllm_cache' value at lxc_configs.801.vllm_cache" in lines[0], lines
    assert host.pct_calls() == []


def test_every_read_of_a_containers_file_is_bounded_in_bytes_and_time(tmp_path: Path) -> None:
    """The host reads a container's outbox (entry, wheel) with `pct exec cat`: a hostile container
    can leave a FIFO there or drip its bytes. Each such read is cut at its size (head -c) and
    stopped at OUTBOX_READ_SECONDS (timeout), and the wheel must be a regular file first."""
    text = ph.FEATURE_SCRIPT.read_text()
    reads = [m.start() for m in re.finditer(r"pct exec \"\$CTID\" -- cat -- ", text)]
    assert len(reads) == 2
    for at in reads:
        line_start = text.rfind("\n", 0, at) + 1
        assert text[line_start:at].strip() == 'timeout "$OUTBOX_READ_SECONDS"', text[line_start:at + 60]
        statement = text[at:text.index("|| true", at)]
        assert "head -c" in statement
    assert re.search(r"^OUTBOX_READ_SECONDS=[0-9]+ ", text, re.M)
    assert 'ct_probe test -f "${CT_OUTBOX}/${wheel_path}"' in text
    fifo = tmp_path / "wheel.whl"
    os.mkfifo(fifo)
    timed = subprocess.run(["bash", "-c", 'timeout 1 cat "$1" | head -c 10 >/dev/null || true', "bash", str(fifo)],
                           capture_output=True, timeout=30)
    assert timed.returncode == 0  # the same pipeline over a FIFO nobody writes ends at the timeout

