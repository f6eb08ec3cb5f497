"""The systemd units in contrib/systemd: hardened, restarting, the proxy reloadable.

Every key is checked by a small parser; where ``systemd-analyze`` exists (it
does on the CI and development machines) the units are also verified by
systemd itself, with the install paths pointed at this environment's scripts.
"""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "contrib" / "systemd"
HARDENING = {
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
    "PrivateTmp": "yes", "PrivateDevices": "yes", "RestrictSUIDSGID": "yes",
    "CapabilityBoundingSet": "", "SystemCallArchitectures": "native",
}


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string((UNITS / name).read_text(encoding="utf-8"))
    return parser


def test_mepl_service_runs_as_its_user_hardened_with_only_the_state_dir_writable() -> None:
    service = unit("mepl.service")["Service"]
    for key, value in HARDENING.items():
        assert service[key] == value, key
    assert service["User"] == "mepl"
    assert service["ReadWritePaths"] == "/var/lib/mepl"
    assert service["StateDirectory"] == "mepl"
    assert service["Environment"] == "MEPL_STATE_DIR=/var/lib/mepl"
    assert service["Restart"] == "on-failure"
    assert service["KillSignal"] == "SIGTERM"  # the graceful stop
    assert service["ExecStartPre"].endswith("mepl run --config /etc/mepl/mepl.toml --check")
    assert " run --config /etc/mepl/mepl.toml" in service["ExecStart"]
    assert unit("mepl.service")["Install"]["WantedBy"] == "multi-user.target"


def test_the_proxy_reloads_on_sighup_and_reaches_the_admin_socket_through_the_group() -> None:
    service = unit("mdm-proxy.service")["Service"]
    for key, value in HARDENING.items():
        assert service[key] == value, key
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["SupplementaryGroups"] == "mepl"
    assert service["Restart"] == "on-failure"
    assert "ReadWritePaths" not in service
    sysusers = (UNITS / "mepl.sysusers.conf").read_text(encoding="utf-8")
    assert re.search(r"^m mdm-proxy mepl$", sysusers, re.M)


def test_systemd_itself_accepts_both_units_without_a_warning(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    scripts = Path(sys.executable).parent
    assert (scripts / "mepl").exists() and (scripts / "mdm-proxy").exists()
    copies = []
    for name in ("mepl.service", "mdm-proxy.service"):
        copy = tmp_path / name
        copy.write_text((UNITS / name).read_text(encoding="utf-8").replace(
            "/opt/mepl/bin/", f"{scripts}/"), encoding="utf-8")
        copies.append(str(copy))
    if analyze is None:  # no systemd on this machine: the parser checks above stand
        return
    done = subprocess.run([analyze, "verify", *copies], capture_output=True, text=True,
                          check=False, timeout=60)
    relevant = [line for line in (done.stdout + done.stderr).splitlines()
                if "mepl" in line or "mdm-proxy" in line]
    assert done.returncode == 0, done.stderr
    assert relevant == [], relevant  # e.g. "Unknown key 'Bogus' in section [Service]"
    security = subprocess.run([analyze, "security", "--offline=yes", copies[0]],
                              capture_output=True, text=True, check=False, timeout=60)
    level = re.search(r"Overall exposure level for mepl.service: ([0-9.]+)",
                      security.stdout + security.stderr)
    assert level is not None, security.stdout + security.stderr
    assert float(level.group(1)) <= 2.5
