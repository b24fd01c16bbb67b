"""Cryptosign against Crossbar's static cryptosign principals (issue 16): a key in every
form a user has -- made by ssh-keygen, openssl, wampd keygen, or just bytes -- joins; a
wrong key is fatal after one attempt; a key file others may read never gets that far."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.procs import REPO_ROOT, harness_env
from harness.wamp_call import call_until_ok
from wampd.keys import load_private_key

from .conftest import CrossbarFactory
from .wampd_proc import Launch

REALM = "realm1"


def wampd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wampd", *args],
        capture_output=True,
        text=True,
        env=harness_env(),
        cwd=REPO_ROOT,
        timeout=60,
        check=False,
    )


def keygen(path: Path) -> str:
    """``wampd keygen``: its stdout, used as is in the router's configuration."""
    made = wampd("keygen", str(path), "--comment", "integration test")
    assert made.returncode == 0, made.stderr
    assert path.read_text().count("private-key-ed25519") == 1
    public = made.stdout.strip()
    assert len(public) == 64 and f'"authorized_keys": ["{public}"]' in made.stderr
    # The private key never appears in what it printed.
    seed = next(
        line.split(":", 1)[1].strip()
        for line in path.read_text().splitlines()
        if line.startswith("private-key-ed25519")
    )
    assert seed not in made.stdout + made.stderr
    return public


def public_of(path: Path) -> str:
    """The public key of any key file, as wampd reads it (checked against the tools' own
    public halves where they write one)."""
    return load_private_key(str(path)).public_hex


def keys(folder: Path) -> dict[str, Path]:
    """One key file per form, each made the way a user makes it."""
    folder.mkdir()
    made: dict[str, Path] = {}
    raw = folder / "raw.key"
    raw.write_bytes(os.urandom(32))
    made["raw"] = raw
    hexed = folder / "hex.key"
    hexed.write_text(os.urandom(32).hex() + "\n")
    made["hex"] = hexed
    ssh = folder / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edge", "-f", str(ssh)], check=True
    )
    made["openssh"] = ssh
    pem = folder / "key.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(pem)], check=True)
    made["pkcs8"] = pem
    made["autobahn"] = folder / "wampd.key"
    for path in made.values():
        if path.exists():
            path.chmod(0o600)
    return made


def test_every_key_form_joins_with_the_principal_the_router_knows(
    crossbar_factory: CrossbarFactory, launch: Launch, tmp_path: Path
) -> None:
    files = keys(tmp_path / "keys")
    publics = {form: public_of(path) for form, path in files.items() if form != "autobahn"}
    publics["autobahn"] = keygen(files["autobahn"])
    assert public_of(files["autobahn"]) == publics["autobahn"]
    router = crossbar_factory(cryptosign={f"edge-{form}": [key] for form, key in publics.items()})
    url = router.url("cryptosign")
    for n, (form, path) in enumerate(files.items()):
        auth: dict[str, object] = {"method": "cryptosign", "key_file": str(path)}
        if n % 2 == 0:
            auth["authid"] = f"edge-{form}"  # else the router finds the principal by its key
        prefix = f"com.cs.{form}"
        daemon = launch(
            url,
            router={"auth": auth},
            components=[
                {
                    "name": "who",
                    "entry": "tests.integration.components:WhoAmI",
                    "extra": {"prefix": prefix},
                }
            ],
        )
        daemon.wait_for("session.joined")
        who = call_until_ok(router.url(), REALM, f"{prefix}.whoami", 10)[0]
        assert who == [f"edge-{form}", "agent", "cryptosign"], form
        assert daemon.terminate() == 0
        output = daemon.proc.output() + daemon.stderr()
        assert path.read_bytes().hex() not in output


def test_a_wrong_key_exits_78_after_one_attempt(
    crossbar_factory: CrossbarFactory, launch: Launch, tmp_path: Path
) -> None:
    known, unknown = tmp_path / "known.key", tmp_path / "unknown.key"
    router = crossbar_factory(cryptosign={"edge": [keygen(known)]})
    keygen(unknown)
    daemon = launch(
        router.url("cryptosign"),
        router={"auth": {"method": "cryptosign", "authid": "edge", "key_file": str(unknown)}},
    )
    assert daemon.wait(30) == 78
    assert len(daemon.events("connect.attempt")) == 1
    assert daemon.events("fatal.error")[0]["reason"] in (
        "wamp.error.not_authorized",
        "wamp.error.authentication_failed",
    )


def test_a_key_file_others_may_read_exits_2_naming_it(tmp_path: Path) -> None:
    key = tmp_path / "wampd.key"
    keygen(key)
    key.chmod(0o644)
    config = tmp_path / "wampd.toml"
    config.write_text(
        '[router]\nurl = "ws://127.0.0.1:9/ws"\nrealm = "realm1"\n'
        '[router.auth]\nmethod = "cryptosign"\nkey_file = "wampd.key"\n'
        '[[component]]\nname = "hello"\nentry = "tests.integration.components:Hello"\n'
    )
    for command in ("check-config", "run"):
        done = wampd(command, "--config", str(config))
        assert done.returncode == 2, done.stderr
        assert f"router.auth.key_file: the key file {key} is open to its group" in done.stderr
        assert "mode 0644" in done.stderr
    assert "Traceback" not in done.stderr
