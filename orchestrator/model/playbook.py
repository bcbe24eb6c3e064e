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

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from orchestrator.model.yamlfile import LineMap, load, parse_duration

Seconds = Annotated[float, Field(ge=0)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _seconds(value: Any) -> float:
    return parse_duration(value)


BatchSize = int | str


class Strategy(Strict):
    batches: list[BatchSize] = [1]
    on_failure: Literal["halt"] = "halt"

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


class Drain(Strict):
    timeout: Seconds = 60.0
    # What to do when sessions remain at the timeout. "fail" keeps the host in service and fails it
    # (nothing was changed); "force" proceeds and cuts the remaining sessions.
    on_timeout: Literal["fail", "force"] = "fail"

    _dur = field_validator("timeout", mode="before")(_seconds)


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
