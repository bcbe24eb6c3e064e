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
  - http: {url: "http://{{ host.address }}:8080/health", status: 200, json: {version: "2"}}
  - tcp: {port: 22}
  - command: {run: "systemctl is-active app", timeout: 5s}
stabilize: {interval: 1s, successes: 3, timeout: 60s}
revert_checks: [...]   # what the old version must pass after a revert; defaults to `checks` minus
                       # the ones that pin the new version (json / contains)
vars: {version: "2"}
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from orchestrator.model import windows
from orchestrator.model.yamlfile import LineMap, load, parse_duration

Seconds = Annotated[float, Field(ge=0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _seconds(value: Any) -> float:
    return parse_duration(value)


BatchSize = int | str


def _count_or_percent(value: int | str, field: str) -> int | str:
    if isinstance(value, bool):
        raise ValueError(f"{field} {value!r} is not a number; a number >= 0 or a percentage like '25%'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{field} {value} is negative; a number >= 0 or a percentage like '25%'")
        return value
    if not (value.endswith("%") and value[:-1].strip().isdigit() and 0 <= int(value[:-1]) <= 100):
        raise ValueError(f"{field} {value!r} is not valid; a number >= 0 or a percentage '0%'..'100%'")
    return value


class FailureBudget(Strict):
    """Failed hosts tolerated before `on_failure` applies (both limits hold). ``percent`` is of the
    hosts of the rollout, as "25%" or 25."""

    count: int = Field(default=0, ge=0)
    percent: int | str = "100%"

    _pct = field_validator("percent")(lambda v: _count_or_percent(v, "failure_budget.percent"))


class Strategy(Strict):
    batches: list[BatchSize] = [1]
    # halt: revert the failed host, stop. rollback_all: revert every host this rollout updated, newest
    # first, then stop. continue: carry on while failures stay within failure_budget, then halt.
    on_failure: Literal["halt", "rollback_all", "continue"] = "halt"
    failure_budget: FailureBudget = FailureBudget()
    max_unavailable: int | str | None = None  # servers out of service at once, ours and others'
    min_healthy: int | str | None = None  # servers that must stay in service
    capacity_timeout: Seconds = 600.0  # how long a host may wait for capacity before the rollout fails
    approve_after: list[int] = []  # batch numbers (1-based) after which a human must approve
    approval_timeout: Seconds = 14400.0
    on_approval_timeout: Literal["reject", "approve"] = "reject"

    _dur = field_validator("capacity_timeout", "approval_timeout", mode="before")(_seconds)
    _mu = field_validator("max_unavailable")(
        lambda v: None if v is None else _count_or_percent(v, "max_unavailable")
    )
    _mh = field_validator("min_healthy")(lambda v: None if v is None else _count_or_percent(v, "min_healthy"))

    @field_validator("batches")
    @classmethod
    def _sizes(cls, batches: list[BatchSize]) -> list[BatchSize]:
        if not batches:
            raise ValueError("batches is empty; a list of sizes such as [1, 2, '50%']")
        for size in batches:
            if isinstance(size, bool):
                raise ValueError(
                    f"batch size {size!r} is not a size; a number >= 1 or a percentage like '25%'"
                )
            if isinstance(size, int):
                if size < 1:
                    raise ValueError(
                        f"batch size {size} is below 1; a number >= 1 or a percentage like '25%'"
                    )
            elif not (size.endswith("%") and size[:-1].strip().isdigit() and 0 < int(size[:-1]) <= 100):
                raise ValueError(
                    f"batch size {size!r} is not valid; a number >= 1 or a percentage '1%'..'100%'"
                )
        return batches

    @model_validator(mode="after")
    def _continue_needs_budget(self) -> Strategy:
        if self.on_failure == "continue" and self.failure_budget.count == 0:
            raise ValueError(
                "on_failure: continue with no failure budget would halt at the first failure; "
                "set strategy.failure_budget, e.g. {count: 2, percent: '10%'}"
            )
        return self

    @field_validator("approve_after")
    @classmethod
    def _batches_numbered(cls, after: list[int]) -> list[int]:
        if any(n < 1 for n in after):
            raise ValueError("approve_after lists batch numbers from 1; e.g. [1] to approve after the canary")
        return sorted(set(after))


class Sessions(Strict):
    """User sessions on the server itself, beyond the load balancer's connection count."""

    probe: str  # a command printing the number of active user sessions
    interval: Seconds = 10.0
    warn: str | None = None  # a command run at `warn_every` while sessions remain (e.g. message the users)
    warn_every: Seconds = 300.0
    # What to do when sessions remain at the drain timeout: postpone (back in service, this host goes to
    # the end of the rollout, once), skip (back in service, not updated), force (update anyway).
    on_timeout: Literal["postpone", "skip", "force"] = "postpone"

    _dur = field_validator("interval", "warn_every", mode="before")(_seconds)


class Drain(Strict):
    timeout: Seconds = 60.0
    # What to do when connections remain at the timeout. "fail" keeps the host in service and fails it
    # (nothing was changed); "force" proceeds and cuts the remaining connections.
    on_timeout: Literal["fail", "force"] = "fail"
    sessions: Sessions | None = None

    _dur = field_validator("timeout", mode="before")(_seconds)


class Deadlines(Strict):
    host: Seconds | None = None  # a host's whole pipeline; past it, the host fails (and is reverted)
    rollout: Seconds | None = None  # the whole rollout; past it, no host starts and the rollout fails

    _dur = field_validator("host", "rollout", mode="before")(lambda v: None if v is None else _seconds(v))


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
    enabled: bool = True
    memory: bool = True
    name: str = "orch-{{ rollout.id }}"
    retention: Literal["delete_on_success", "keep"] = "delete_on_success"


class Upload(Strict):
    src: Path
    dest: str
    mode: str | None = None

    @field_validator("mode")
    @classmethod
    def _octal(cls, mode: str | None) -> str | None:
        if mode is not None:
            try:
                int(mode, 8)
            except ValueError:
                raise ValueError(f"mode {mode!r} is not octal; a string such as '0644'") from None
        return mode


class UploadStep(Strict):
    upload: Upload
    timeout: Seconds = 300.0

    _dur = field_validator("timeout", mode="before")(_seconds)


class RunStep(Strict):
    run: str
    timeout: Seconds = 300.0

    _dur = field_validator("timeout", mode="before")(_seconds)


def _one_of(what: str, *kinds: str) -> BeforeValidator:
    """Name the offending item's kind instead of pydantic's union noise. Checked per item, so the
    error's location (and so its line in the file) is the item itself."""

    def check(item: Any) -> Any:
        if isinstance(item, BaseModel) or (isinstance(item, dict) and any(k in item for k in kinds)):
            return item
        found = f"keys: {', '.join(map(str, item))}" if isinstance(item, dict) else repr(item)
        raise ValueError(
            f"unknown {what} kind ({found}); a {what} is a mapping with one of: {', '.join(kinds)}"
        )

    return BeforeValidator(check)


Step = Annotated[RunStep | UploadStep, _one_of("step", "run", "upload")]


class HttpCheckSpec(Strict):
    url: str
    status: int = 200
    contains: str | None = None
    json_fields: dict[str, Any] | None = Field(default=None, alias="json")
    timeout: Seconds = 5.0

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    _dur = field_validator("timeout", mode="before")(_seconds)


class TcpCheckSpec(Strict):
    port: int = Field(ge=1, le=65535)
    address: str = "{{ host.address }}"
    timeout: Seconds = 5.0

    _dur = field_validator("timeout", mode="before")(_seconds)


class CommandCheckSpec(Strict):
    run: str
    timeout: Seconds = 10.0

    _dur = field_validator("timeout", mode="before")(_seconds)


class HttpCheck(Strict):
    http: HttpCheckSpec


class TcpCheck(Strict):
    tcp: TcpCheckSpec


class CommandCheck(Strict):
    command: CommandCheckSpec


CheckSpec = Annotated[HttpCheck | TcpCheck | CommandCheck, _one_of("check", "http", "tcp", "command")]


class Stabilize(Strict):
    interval: Seconds = 1.0
    successes: int = Field(default=3, ge=1)
    timeout: Seconds = 120.0

    _dur = field_validator("interval", "timeout", mode="before")(_seconds)

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
    name: str = Field(min_length=1)
    pool: str
    strategy: Strategy = Strategy()
    drain: Drain = Drain()
    snapshot: Snapshot = Snapshot()
    update: list[Step] = Field(min_length=1)
    checks: list[CheckSpec] = Field(min_length=1)
    stabilize: Stabilize = Stabilize()
    revert_checks: list[CheckSpec] | None = None
    deadlines: Deadlines = Deadlines()
    window: WindowSpec | None = None
    vars: dict[str, Any] = {}

    def old_version_checks(self) -> list[CheckSpec]:
        """Checks the old version must pass after a revert.

        Without ``revert_checks``, reuse ``checks`` but drop what pins the new version (expected JSON
        fields and body text), since the reverted server is expected to run the old one.
        """
        if self.revert_checks is not None:
            return list(self.revert_checks)
        result: list[CheckSpec] = []
        for check in self.checks:
            if isinstance(check, HttpCheck):
                spec = check.http.model_copy(update={"json_fields": None, "contains": None})
                result.append(HttpCheck(http=spec))
            else:
                result.append(check)
        return result


def load_playbook(path: Path) -> tuple[Playbook, LineMap]:
    return load(Playbook, path)
