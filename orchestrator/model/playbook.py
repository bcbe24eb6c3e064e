"""The playbook: what to do to every host of one pool, and how carefully.

```yaml
name: app-v2
pool: web
strategy: {batches: [1, 2, "50%"], on_failure: halt}
drain: {timeout: 30s}
snapshot: {enabled: true, memory: true, retention: delete_on_success}
update:
  - upload: {src: files/app-2.tar.gz, dest: /tmp/app-2.tar.gz, mode: "0644"}
  - run: "{{ vars.app_dir }}/bin/install /tmp/app-2.tar.gz"
    timeout: 60s
checks:
  - http: {url: "http://{{ host.address }}:8080/health", status: 200, json: {version: "2"},
           headers: {Authorization: "Bearer {{ secrets.health_token }}"}}
  - tcp: {port: 22}
  - command: {run: "systemctl is-active app", timeout: 5s}
stabilize: {interval: 1s, successes: 3, timeout: 60s}
revert_checks: [...]   # what the old version must pass after a revert; defaults to `checks` minus
                       # the ones that pin the new version (json / contains)
vars: {version: "2"}
secrets: {health_token: {env: APP_HEALTH_TOKEN}}   # see orchestrator.model.secrets
```
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from orchestrator.model import windows
from orchestrator.model.base import Bool, Duration, Int, Strict, Timeout, count_or_percent
from orchestrator.model.secrets import SecretName, SecretSource
from orchestrator.model.yamlfile import LineMap, load

BatchSize = Annotated[int | str, count_or_percent("batch size", low=1)]


class FailureBudget(Strict):
    """Failed hosts tolerated before `on_failure` applies (both limits hold). ``percent`` is of the
    hosts of the rollout, as "25%" or 25."""

    count: Int = Field(default=0, ge=0)
    percent: Annotated[int | str, count_or_percent("failure_budget.percent")] = "100%"


class Strategy(Strict):
    batches: list[BatchSize] = [1]
    # halt: revert the failed host, stop. rollback_all: revert every host this rollout updated, newest
    # first, then stop. continue: carry on while failures stay within failure_budget, then halt.
    on_failure: Literal["halt", "rollback_all", "continue"] = "halt"
    failure_budget: FailureBudget = FailureBudget()
    # Servers out of service at once, ours and others'. 0 would leave nothing to update.
    max_unavailable: Annotated[int | str, count_or_percent("max_unavailable", low=1)] | None = None
    min_healthy: Annotated[int | str, count_or_percent("min_healthy")] | None = None  # must stay in service
    capacity_timeout: Duration = 600.0  # how long a host may wait for capacity before the rollout fails
    approve_after: list[Int] = []  # batch numbers (1-based) after which a human must approve
    approval_timeout: Timeout = 14400.0
    on_approval_timeout: Literal["reject", "approve"] = "reject"
    # Four eyes: whoever approves or rejects must not be who requested (ran or scheduled) the rollout.
    four_eyes: bool = False

    @model_validator(mode="after")
    def _continue_needs_budget(self) -> Strategy:
        if self.on_failure == "continue" and self.failure_budget.count == 0:
            raise ValueError(
                "on_failure: continue with no failure budget would halt at the first failure; "
                "set strategy.failure_budget, e.g. {count: 2, percent: '10%'}"
            )
        return self

    @field_validator("batches")
    @classmethod
    def _some_batches(cls, batches: list[int | str]) -> list[int | str]:
        if not batches:
            raise ValueError("batches is empty; a list of sizes such as [1, 2, '50%']")
        return batches

    @field_validator("approve_after")
    @classmethod
    def _batches_numbered(cls, after: list[int]) -> list[int]:
        if any(n < 1 for n in after):
            raise ValueError("approve_after lists batch numbers from 1; e.g. [1] to approve after the canary")
        return sorted(set(after))


def _command(text: str) -> str:
    if not text.strip():
        raise ValueError("the command is empty; a command to run")
    return text


Command = Annotated[str, AfterValidator(_command)]


class Sessions(Strict):
    """User sessions on the server itself, beyond the load balancer's connection count."""

    probe: Command  # a command printing the number of active user sessions
    interval: Timeout = 10.0
    warn: Command | None = (
        None  # a command run at `warn_every` while sessions remain (e.g. message the users)
    )
    warn_every: Timeout = 300.0
    # What to do when sessions remain at the drain timeout: postpone (back in service, this host goes to
    # the end of the rollout, once), skip (back in service, not updated), force (update anyway).
    on_timeout: Literal["postpone", "skip", "force"] = "postpone"


class Drain(Strict):
    timeout: Timeout = 60.0
    # What to do when connections remain at the timeout. "fail" keeps the host in service and fails it
    # (nothing was changed); "force" proceeds and cuts the remaining connections.
    on_timeout: Literal["fail", "force"] = "fail"
    sessions: Sessions | None = None


class Deadlines(Strict):
    """0 is not "none": leave a deadline out for none."""

    host: Timeout | None = None  # a host's whole pipeline; past it, the host fails (and is reverted)
    rollout: Timeout | None = None  # the whole rollout; past it, no host starts and the rollout fails


class WindowSpec(Strict):
    """When the rollout may run; see orchestrator.model.windows for the syntax and DST rules."""

    timezone: str
    # Checked item by item first, so a malformed range is reported at its own line.
    allowed: list[Annotated[str, AfterValidator(windows.check_range)]]

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, name: str) -> str:
        windows.zone(name)
        return name

    @field_validator("allowed")
    @classmethod
    def _ranges_fit(cls, allowed: list[str], info: ValidationInfo) -> list[str]:
        if "timezone" in info.data:  # else the zone's own error is the one reported
            windows.parse_window(info.data["timezone"], allowed)
        return allowed

    def parsed(self) -> windows.Window:
        return windows.parse_window(self.timezone, self.allowed)


class Snapshot(Strict):
    enabled: Bool = True
    memory: Bool = True
    name: str = Field(default="orch-{{ rollout.id }}", min_length=1)
    retention: Literal["delete_on_success", "keep"] = "delete_on_success"


def _octal(mode: str) -> str:
    if not re.fullmatch(r"0?[0-7]{3,4}", mode):
        raise ValueError(f"mode {mode!r} is not octal; a string such as '0644'")
    return mode


class Upload(Strict):
    src: str = Field(min_length=1)
    dest: str = Field(min_length=1)
    mode: Annotated[str, AfterValidator(_octal)] | None = None


class UploadStep(Strict):
    upload: Upload
    timeout: Timeout = 300.0


class RunStep(Strict):
    run: Command
    timeout: Timeout = 300.0


# A header's name is an RFC 9110 token; its value may use secrets (rendered later) but no line break.
HeaderName = Annotated[str, Field(pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")]


class HttpCheckSpec(Strict):
    url: str = Field(min_length=1)
    status: Int = Field(default=200, ge=100, le=599)
    contains: str | None = None
    json_fields: dict[str, Any] | None = Field(default=None, alias="json")
    headers: dict[HeaderName, str] = {}
    timeout: Timeout = 5.0

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class TcpCheckSpec(Strict):
    port: Int = Field(ge=1, le=65535)
    address: str = Field(default="{{ host.address }}", min_length=1)
    timeout: Timeout = 5.0


class CommandCheckSpec(Strict):
    run: Command
    timeout: Timeout = 10.0


class HttpCheck(Strict):
    http: HttpCheckSpec


class TcpCheck(Strict):
    tcp: TcpCheckSpec


class CommandCheck(Strict):
    command: CommandCheckSpec


def _kinds(what: str, kinds: dict[str, type[BaseModel]]) -> tuple[BeforeValidator, Discriminator]:
    """Name the offending item's kind instead of pydantic's union noise, and validate the item against
    the one kind it names, so the error is that kind's (checked per item, so the error's location,
    and so its line, is the item itself). Tags are not keys of the data: the location drops them."""
    names = list(kinds)

    def check(item: Any) -> Any:
        if isinstance(item, BaseModel):
            return item
        found = [k for k in names if isinstance(item, dict) and k in item]
        if len(found) == 1:
            return item
        if len(found) > 1:
            raise ValueError(
                f"this {what} has several kinds ({', '.join(found)}); one {what} per item, a mapping with "
                f"one of: {', '.join(names)}"
            )
        shown = f"keys: {', '.join(map(str, item))}" if isinstance(item, dict) else repr(item)
        raise ValueError(
            f"unknown {what} kind ({shown}); a {what} is a mapping with one of: {', '.join(names)}"
        )

    def tag(item: Any) -> str:
        if isinstance(item, BaseModel):
            return f"{what} {next(k for k, model in kinds.items() if isinstance(item, model))}"
        return f"{what} {next(k for k in names if k in item)}"

    return BeforeValidator(check), Discriminator(tag)


_STEP_CHECK, _STEP_KIND = _kinds("step", {"run": RunStep, "upload": UploadStep})
Step = Annotated[
    Annotated[Annotated[RunStep, Tag("step run")] | Annotated[UploadStep, Tag("step upload")], _STEP_KIND],
    _STEP_CHECK,
]
_CHECK_CHECK, _CHECK_KIND = _kinds("check", {"http": HttpCheck, "tcp": TcpCheck, "command": CommandCheck})
AnyCheck = Annotated[
    Annotated[
        Annotated[HttpCheck, Tag("check http")]
        | Annotated[TcpCheck, Tag("check tcp")]
        | Annotated[CommandCheck, Tag("check command")],
        _CHECK_KIND,
    ],
    _CHECK_CHECK,
]


class Stabilize(Strict):
    interval: Duration = 1.0
    successes: Int = Field(default=3, ge=1)
    timeout: Timeout = 120.0

    @model_validator(mode="after")
    def _reachable(self) -> Stabilize:
        needed = self.interval * (self.successes - 1)
        if needed > self.timeout:
            raise ValueError(
                f"{self.successes} successes {self.interval:g}s apart need {needed:g}s, more than the "
                f"timeout {self.timeout:g}s; raise the timeout or lower interval/successes"
            )
        return self


class Playbook(Strict):
    name: str = Field(min_length=1, max_length=200)
    pool: str = Field(min_length=1)
    strategy: Strategy = Strategy()
    drain: Drain = Drain()
    snapshot: Snapshot = Snapshot()
    update: list[Step] = Field(min_length=1)
    checks: list[AnyCheck] = Field(min_length=1)
    stabilize: Stabilize = Stabilize()
    revert_checks: list[AnyCheck] | None = None
    deadlines: Deadlines = Deadlines()
    window: WindowSpec | None = None
    vars: dict[str, Any] = {}
    secrets: dict[SecretName, SecretSource] = {}

    def old_version_checks(self) -> list[AnyCheck]:
        """Checks the old version must pass after a revert.

        Without ``revert_checks``, reuse ``checks`` but drop what pins the new version (expected JSON
        fields and body text), since the reverted server is expected to run the old one.
        """
        if self.revert_checks is not None:
            return list(self.revert_checks)
        result: list[AnyCheck] = []
        for check in self.checks:
            if isinstance(check, HttpCheck):
                spec = check.http.model_copy(update={"json_fields": None, "contains": None})
                result.append(HttpCheck(http=spec))
            else:
                result.append(check)
        return result


def load_playbook(path: Path) -> tuple[Playbook, LineMap]:
    return load(Playbook, path)
