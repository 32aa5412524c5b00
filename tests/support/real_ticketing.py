"""A real Request Tracker 5 and a real Redmine (Debian's packages, installed by
deploy/ci/ensure-test-tools.sh), each started on a free loopback port with a throwaway SQLite
database in a temporary directory, and stopped (its whole process group) afterwards.

    with RequestTracker.start(tmp) as rt:   rt.base_url, rt.token, rt.create_ticket("subject")
    with Redmine.start(tmp) as rm:          rm.base_url, rm.api_key, rm.create_issue("subject")

Start-up waits on conditions (the setup command's exit, the port answering an authenticated
request) with a deadline; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import requests

from tests.support.workers import free_port

RT_LIB = Path("/usr/share/request-tracker5/lib")
RT_SERVER = Path("/usr/share/request-tracker5/libexec/rt-server")
RT_SETUP = Path("/usr/sbin/rt-setup-database")
REDMINE_ROOT = Path("/usr/share/redmine")
# Redmine's Debian package finds an instance under <root>/instances/<name>; a name climbing to
# "/" reaches any directory both through the symlinked path and lexically.
REDMINE_CLIMB = "../../../.."

START_TIMEOUT_S = 180.0


class StartError(RuntimeError):
    pass


def _wait_until_answers(
    url: str, headers: dict[str, str], process: subprocess.Popen[bytes], log: Path, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartError(f"server exited with {process.returncode}:\n{_tail(log)}")
        try:
            response = requests.get(url, headers=headers, timeout=2)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        # Wait on the process rather than sleeping: returns at once if it dies.
        try:
            process.wait(timeout=0.25)
        except subprocess.TimeoutExpired:
            pass
    raise StartError(f"{url} did not answer within {timeout_s:g} s ({last}):\n{_tail(log)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _run(
    cmd: list[str], *, env: dict[str, str], cwd: Path | None, log: Path, timeout_s: float
) -> str:
    with log.open("ab") as out:
        done = subprocess.run(
            cmd,
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=out,
            timeout=timeout_s,
            check=False,
        )
    if done.returncode != 0:
        raise StartError(f"{cmd[0]} failed ({done.returncode}):\n{_tail(log)}")
    return done.stdout.decode()


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


@dataclass
class _Server:
    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        _stop(self.process)

    def __enter__(self) -> _Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


# ── Request Tracker ───────────────────────────────────────────────────────────────────────────

_RT_HELPER = textwrap.dedent(
    """
    use strict; use warnings;
    use lib '%(lib)s';
    use RT; RT::LoadConfig(); RT::Init();
    my $action = shift @ARGV;
    if ($action eq 'token') {
        my $user = RT::User->new(RT->SystemUser); $user->Load('root');
        my ($id, $msg, $auth) = RT::AuthToken->new(RT->SystemUser)->Create(
            Owner => $user->Id, Description => 'tests');
        die "token: $msg" unless $id;
        print "$auth\\n";
    } elsif ($action eq 'ticket') {
        my $ticket = RT::Ticket->new(RT->SystemUser);
        my ($id, $txn, $msg) = $ticket->Create(
            Queue => 'General', Subject => $ARGV[0], Requestor => 'customer@example.com');
        die "ticket: $msg" unless $id;
        print "$id\\n";
    }
    """
)


@dataclass
class RequestTracker(_Server):
    token: str = ""

    @classmethod
    def start(cls, root: Path) -> RequestTracker:
        root.mkdir(parents=True, exist_ok=True)
        (root / "RT_SiteConfig.d").mkdir(exist_ok=True)
        port = free_port()
        config = root / "RT_SiteConfig.pm"
        config.write_text(
            textwrap.dedent(
                f"""
                Set($rtname, 'rf-test');
                Set($Organization, 'rf-test.example');
                Set($WebDomain, '127.0.0.1');
                Set($WebPort, {port});
                Set($WebPath, '');
                Set($WebBaseURL, 'http://127.0.0.1:{port}');
                Set($DatabaseType, 'SQLite');
                Set($DatabaseName, '{root / "rt.db"}');
                Set($LogToSTDERR, 'warning');
                Set($LogToSyslog, undef);
                Set($LogToFile, undef);
                Set($MailCommand, 'testfile');
                1;
                """
            )
        )
        env = {
            **os.environ,
            "RT_SITE_CONFIG": str(config),
            "RT_SITE_CONFIG_DIR": str(root / "RT_SiteConfig.d"),
            "HOME": str(root),
        }
        log = root / "rt.log"
        _run(
            [str(RT_SETUP), "--action", "init", "--skip-create"],
            env=env,
            cwd=root,
            log=log,
            timeout_s=START_TIMEOUT_S,
        )
        helper = root / "helper.pl"
        helper.write_text(_RT_HELPER % {"lib": RT_LIB})
        server = cls(root=root, port=port, env=env)
        server.token = server._helper("token")
        with log.open("ab") as out:
            server.process = subprocess.Popen(
                [str(RT_SERVER), "--port", str(port), "--max-workers", "2"],
                env=env,
                cwd=root,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        try:
            _wait_until_answers(
                f"{server.base_url}/REST/2.0/queues/all",
                {"Authorization": f"token {server.token}"},
                server.process,
                log,
                START_TIMEOUT_S,
            )
        except BaseException:
            server.stop()
            raise
        return server

    def _helper(self, *args: str) -> str:
        out = _run(
            ["perl", str(self.root / "helper.pl"), *args],
            env=self.env,
            cwd=self.root,
            log=self.root / "rt.log",
            timeout_s=60,
        )
        return out.strip().splitlines()[-1]

    def _get(self, path: str) -> Any:
        response = requests.get(
            f"{self.base_url}/REST/2.0{path}",
            headers={"Authorization": f"token {self.token}"},
            timeout=30,
        )
        response.raise_for_status()
        return response.json()

    def create_ticket(self, subject: str) -> str:
        response = requests.post(
            f"{self.base_url}/REST/2.0/ticket",
            headers={"Authorization": f"token {self.token}"},
            json={"Queue": "General", "Subject": subject, "Requestor": "customer@example.com"},
            timeout=30,
        )
        response.raise_for_status()
        return str(response.json()["id"])

    def comments(self, ticket: str) -> list[dict[str, Any]]:
        """Every comment on the ticket, read back through RT's own REST2 API."""
        history = self._get(f"/ticket/{ticket}/history?fields=Type&per_page=100")
        out = []
        for item in history["items"]:
            if item["Type"] != "Comment":
                continue
            attachments = self._get(
                f"/transaction/{item['id']}/attachments?fields=Content,ContentType"
            )
            out.append({"transaction": item["id"], "attachments": attachments["items"]})
        return out

    def correspondence_count(self, ticket: str) -> int:
        history = self._get(f"/ticket/{ticket}/history?fields=Type&per_page=100")
        return sum(1 for item in history["items"] if item["Type"] == "Correspond")


# ── Redmine ──────────────────────────────────────────────────────────────────────────────────

_REDMINE_SETUP = textwrap.dedent(
    """
    Redmine::DefaultData::Loader.load('en')
    Setting.rest_api_enabled = '1'
    Setting.text_formatting = 'common_mark'
    admin = User.find_by_login('admin')
    admin.must_change_passwd = false
    admin.save!
    project = Project.create!(name: 'Support', identifier: 'support', is_public: false,
                              tracker_ids: Tracker.pluck(:id))
    puts admin.api_key
    """
)


@dataclass
class Redmine(_Server):
    api_key: str = ""

    @classmethod
    def start(cls, root: Path) -> Redmine:
        root = root.resolve()
        for sub in ("config", "log", "tmp", "files", "public"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        (root / "config" / "database.yml").write_text(
            "production:\n"
            "  adapter: sqlite3\n"
            f"  database: {root / 'redmine.sqlite3'}\n"
            "  pool: 5\n"
            "  timeout: 5000\n"
        )
        (root / "config" / "secret_key.txt").write_text(secrets.token_hex(32))
        port = free_port()
        env = {
            **os.environ,
            "REDMINE_INSTANCE": REDMINE_CLIMB + str(root),
            "RAILS_ENV": "production",
            "HOME": str(root),
            # Debian's Redmine bundle has no web server gem; WEBrick (ruby-webrick) is loaded
            # before Bundler narrows the load path.
            "RUBYOPT": "-rwebrick",
        }
        env.pop("DATABASE_URL", None)
        log = root / "log" / "tests.log"
        rails = str(REDMINE_ROOT / "bin" / "rails")
        _run([rails, "db:migrate"], env=env, cwd=REDMINE_ROOT, log=log, timeout_s=START_TIMEOUT_S)
        setup = root / "setup.rb"
        setup.write_text(_REDMINE_SETUP)
        out = _run(
            [rails, "runner", str(setup)],
            env=env,
            cwd=REDMINE_ROOT,
            log=log,
            timeout_s=START_TIMEOUT_S,
        )
        server = cls(root=root, port=port, env=env, api_key=out.strip().splitlines()[-1])
        with log.open("ab") as stream:
            server.process = subprocess.Popen(
                [
                    rails,
                    "server",
                    "-u",
                    "webrick",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-P",
                    str(root / "tmp" / "server.pid"),
                ],
                env=env,
                cwd=REDMINE_ROOT,
                stdout=stream,
                stderr=stream,
                start_new_session=True,
            )
        try:
            _wait_until_answers(
                f"{server.base_url}/users/current.json",
                {"X-Redmine-API-Key": server.api_key},
                server.process,
                log,
                START_TIMEOUT_S,
            )
        except BaseException:
            server.stop()
            raise
        return server

    def _headers(self) -> dict[str, str]:
        return {"X-Redmine-API-Key": self.api_key}

    def create_issue(self, subject: str) -> str:
        response = requests.post(
            f"{self.base_url}/issues.json",
            headers=self._headers(),
            json={"issue": {"project_id": "support", "subject": subject}},
            timeout=30,
        )
        if response.status_code != 201:
            raise AssertionError(f"issue not created: {response.status_code} {response.text}")
        return str(response.json()["issue"]["id"])

    def journals(self, issue: str) -> list[dict[str, Any]]:
        response = requests.get(
            f"{self.base_url}/issues/{issue}.json?include=journals",
            headers=self._headers(),
            timeout=30,
        )
        response.raise_for_status()
        return [j for j in response.json()["issue"]["journals"] if j.get("notes")]

    def rendered_note(self, issue: str) -> str:
        """The issue page as Redmine renders it (HTML), to see what its formatter made."""
        response = requests.get(
            f"{self.base_url}/issues/{issue}", headers=self._headers(), timeout=30
        )
        response.raise_for_status()
        return response.text


def as_json(value: Any) -> str:
    return json.dumps(value, indent=1, default=str)
