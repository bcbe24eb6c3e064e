"""Which substituted values stand where shlex.quote() keeps them inert: one table of commands (with {{N}} for
value N) and the refusals expected for them, then the properties no table can show (never raises, linear
time, marks in order)."""

from __future__ import annotations

import random
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.model.shellwords import DEEP, MARK, UNREAD, Misplaced, mark, misplaced


def marked(template: str) -> str:
    return re.sub(r"\{\{(\d+)\}\}", lambda m: mark(int(m.group(1))), template)


def refusals(template: str) -> list[Misplaced]:
    return misplaced(marked(template))


OK: list[tuple[int, str]] = []
CASES: list[tuple[str, list[tuple[int, str]]]] = [
    # -- realistic commands that must pass
    ("systemctl restart {{0}}", OK),
    ("tar -C {{0}} -xzf {{1}}", OK),
    ("{{0}}/bin/install --archive /var/tmp/dxcare-{{1}}.tar.gz", OK),
    ("{{0}}/bin/install --site {{1}}", OK),
    ("if [ -f {{0}} ]; then rm -f {{0}}; fi", OK),
    ('for f in {{0}} {{1}}; do echo "$f"; done', OK),
    ("cd $(dirname {{0}}) && ls | grep -c {{1}}", OK),
    ("echo {{0}} >> /var/log/deploy.log 2>&1", OK),
    ("cp {{0}} {{1}}.bak && ln -sfn /opt/app/releases/{{2}} /opt/app/current", OK),
    ("curl -fsS http://localhost:{{0}}/health || exit 1", OK),
    ("cmd --opt={{0}} -D{{1}} {{2}}.txt a={{3}}", OK),
    ("cat <<'EOF' > /etc/app.conf\nport=8080\nEOF\nsystemctl restart {{0}}", OK),
    ("cat <<EOF | sudo tee /etc/motd\nwelcome\nEOF\necho {{0}}", OK),
    ("echo {{0}} | sudo tee /etc/app/version > /dev/null", OK),
    ('x={{0}}; echo "$x"', OK),
    ("export PATH={{0}}:$PATH; local_dir={{1}} make -C {{1}}", OK),
    ("case {{0}} in a) echo {{1}};; *) echo no;; esac", OK),
    ("echo $(case a in a) echo hi;; esac) {{0}}", OK),
    ("(cd {{0}} && ./configure --prefix={{1}}) && { make -j{{2}}; }", OK),
    ("diff <(sort {{0}}) <(sort {{1}})", OK),
    ("[[ -n {{0}} && {{1}} == yes ]]", OK),
    ("[[ $x == {{0}} ]] || [[ -f {{1}} ]]", OK),
    ("[ {{0}} -eq 1 ]", OK),  # bash's [ reads integers without arithmetic
    ("bash -euo pipefail -c 'echo \"$1\"' _ {{0}}", OK),
    ("sudo -u app sh -c 'echo hi' -- {{0}}", OK),
    ("bash -- {{0}} {{1}}", OK),
    ("sed -i -e s/a/b/ -- {{0}}", OK),
    ("awk -v v={{0}} '{print v}' /etc/x", OK),
    ("find {{0}} -name '*.log' -mtime +{{1}} -delete", OK),
    ("find . -exec rm {} \\; -name {{0}}", OK),
    ("flock /tmp/l systemctl restart {{0}}", OK),
    ("env FOO={{0}} cmd; command -v {{1}}", OK),
    ('"$APP_HOME/bin/ctl" restart {{0}}', OK),
    ("echo {{0}}{{1}} x#{{2}}", OK),
    (": {{0}} # a comment with ' in it\necho {{1}}", OK),
    ('f() { echo "$@"; }; f {{0}}', OK),
    ("declare -a list; local x={{0}}", OK),
    ("echo a[{{0}}]=1", OK),
    # -- quotes and expansions
    ("echo 'stopping {{0}} now'", [(0, "inside '...' quotes")]),
    ('echo "{{0}}"', [(0, 'inside "..." quotes')]),
    ('echo "$(dirname {{0}})"', [(0, 'inside "$(...)"')]),
    ("echo `ls {{0}}`", [(0, "inside backquotes")]),
    ("echo $'{{0}}'", [(0, "inside $'...' quotes")]),
    ('echo $"{{0}}"', [(0, 'inside "..." quotes')]),
    ("echo ${x:-{{0}}}", [(0, "inside ${...}")]),
    ("echo $(( {{0}} + 1 ))", [(0, "inside $((...)) arithmetic")]),
    ("(( n = {{0}} ))", [(0, "inside (( )) arithmetic")]),
    ("for (( i = 0; i < {{0}}; i++ )); do :; done", [(0, "inside (( )) arithmetic")]),
    ("echo $[ {{0}} ]", [(0, "inside $[...] arithmetic")]),
    ("a=( {{0}} )", [(0, "NAME=(...)")]),
    ("echo '{{0}}", [(0, "inside '...' quotes")]),  # unterminated: all after it is quoted
    ('echo "unterminated {{0}}\necho {{1}}', [(0, '"..."'), (1, '"..."')]),
    # -- comments, here-documents, neighbours
    ("echo hi # {{0}}", [(0, "in a comment")]),
    ("cat <<EOF\n{{0}}\nEOF\necho {{1}}", [(0, "in a here-document")]),
    ("cat <<'EOF'\n{{0}}\nEOF", [(0, "in a here-document")]),
    ("cat <<-EOF\n\t{{0}}\n\tEOF\necho {{1}}", [(0, "in a here-document")]),
    ("cat <<{{0}}\nx", [(0, "delimiter word of a here-document")]),
    ("cat <<EOF\nx\\\nEOF\n{{0}}\nEOF", [(0, "in a here-document")]),  # the \ joins the next line
    ("echo \\{{0}}", [(0, "right after a backslash")]),
    ("echo ${{0}}", [(0, "right after $")]),
    ("echo $HOME{{0}}", [(0, "right after $NAME")]),
    ("echo ~{{0}}/x a=~{{1}}", [(0, "right after ~"), (1, "right after ~")]),
    ("echo {a,{{0}}}", [(0, "brace expansion")]),
    ("echo {{0}}>f", [(0, "file descriptor")]),
    # -- commands that run their arguments
    ("eval {{0}}", [(0, "an argument of eval")]),
    ("source {{0}}", [(0, "an argument of source")]),
    (". {{0}}/env.sh", [(0, "an argument of .")]),
    ("trap {{0}} EXIT", [(0, "an argument of trap")]),
    ("alias ll={{0}}", [(0, "an argument of alias")]),
    ("alias e=eval\ne {{0}}", [(0, "an argument of an alias")]),
    ("let x={{0}}", [(0, "an argument of let")]),
    ("read {{0}}", [(0, "an argument of read")]),
    ("mapfile -C {{0}} -c 1 lines < /etc/hosts", [(0, "an argument of mapfile")]),
    ("watch -n 5 systemctl status {{0}}", [(0, "an argument of watch")]),
    ("{{0}} {{1}}", [(1, "a command whose name comes from a value")]),
    # A value holding "=" is always quoted (templating.quote_word), so {{0}} = A=B cannot make the
    # first word an assignment and {{1}} the command: the everyday `{{ dir }}/bin/ctl {{ arg }}` is fine.
    ("{{0}}/bin/appctl {{1}} {{2}}", OK),
    ("cd {{0}} && ./bin/appctl {{1}} {{2}}", OK),  # the way to write the one above
    ("command -- {{0}}/bin/appctl {{1}} {{2}}", OK),  # a program's argv: never an assignment
    ("exec {{0}} {{1}}", [(1, "a command whose name comes from a value")]),
    ("nice -n 5 {{0}} {{1}}", [(1, "a command whose name comes from a value")]),
    ("$SHELL -c {{0}}", [(0, "a command whose name comes from a value or an expansion")]),
    ("$(echo {{0}})", [(0, "inside $(...) in a command name")]),
    ("f() { eval {{0}}; }", [(0, "an argument of eval")]),
    ("2>/dev/null eval {{0}}", [(0, "an argument of eval")]),
    # -- shells and the programs that take code
    ("sh -c {{0}}", [(0, "the script of sh -c")]),
    ("bash -o pipefail -euc {{0}}", [(0, "the script of bash -c")]),
    ("env sh -c {{0}}", [(0, "the script of sh -c")]),
    ("sudo sh -c {{0}}", [(0, "the script of sh -c")]),
    ("sudo -s systemctl restart {{0}}", [(0, "sudo -s or -i")]),
    ("timeout 5 busybox sh -c {{0}}", [(0, "the script of sh -c")]),
    ("xargs sh -c {{0}}", [(0, "the script of sh -c")]),
    ("find . -exec sh -c {{0}} \\;", [(0, "the script of sh -c")]),
    ("find {{0}} {{1}} {{2}}", [(2, "a command whose name comes from a value")]),  # {{0}} could be -exec
    ("bash {{0}} {{1}}", [(1, "after a value that could be -c")]),
    ("sh -c 'eval \"$1\"' _ {{0}}", [(0, "runs as code (through $1 or $@)")]),
    ('bash -c "echo $1" _ {{0}}', [(0, "runs as code (through $1 or $@)")]),  # not literal: conservative
    ("su -c {{0}} app", [(0, "the command of su -c")]),
    ("su app -c {{0}}", [(0, "the command of su -c")]),
    ("su {{0}} -c 'systemctl restart app'", [(0, "where su reads options")]),
    ("flock /tmp/l -c {{0}}", [(0, "the command of flock -c")]),
    ("env {{0}} cmd", [(0, "where env reads options")]),
    ("env -S {{0}}", [(0, "env -S")]),
    ("ssh {{0}} systemctl restart app", [(0, "where ssh reads options")]),
    ("ssh -- host systemctl restart {{0}}", [(0, "the remote command of ssh")]),
    ("python3 -c {{0}}", [(0, "python -c")]),
    ("perl -e 'print 1' {{0}}", [(0, "where perl reads options")]),
    ("sed -i s/VERSION/{{0}}/ /etc/app.conf", [(0, "a sed script")]),
    ("sed -i s/a/b/ {{0}}", [(0, "where sed reads options")]),  # GNU sed: {{0}} = "-ee cmd" runs cmd
    ("awk {{0}} /etc/passwd", [(0, "an awk program")]),
    ("bash <(echo {{0}})", [(0, "inside $(...)")]),
    ("docker exec app sh -c {{0}}", [(0, "the script of sh -c")]),  # a shell named in any program's args
    ("kubectl exec pod -- bash -lc {{0}}", [(0, "the script of bash -c")]),
    ("docker exec app sh -c 'echo \"$1\"' _ {{0}}", OK),
    ("sh -c '$0' {{0}}", [(0, "runs as code (through $1 or $@)")]),
    ("timeout $(echo {{0}})", [(0, "could become options or code")]),
    ("scp {{0}} deploy@host:/tmp/", [(0, "where scp reads options")]),  # {{0}} = -oProxyCommand=cmd
    ("scp -- {{0}} deploy@host:/tmp/ && rsync -a -- {{1}} /opt/", OK),
    ("rsync -a {{0}} /opt/", [(0, "where rsync reads options")]),
    ("tar xzf {{0}} -C {{1}}", OK),
    ("tar -xzf app.tgz {{0}}", [(0, "where tar reads options")]),  # {{0}} = --to-command=cmd
    ("tar --to-command={{0}} -xf app.tgz", [(0, "an option of tar that runs a program")]),
    # -- stdin that a shell runs
    ("echo {{0}} | sh", [(0, "piped into a shell")]),
    ("{ echo {{0}}; } | sh", [(0, "piped into a shell")]),
    ("echo {{0}} | (cat) | bash -s", [(0, "piped into a shell")]),
    ("echo {{0}} | tee >(sh) > /dev/null", [(0, "piped into a shell")]),
    ("sh <<< {{0}}", [(0, "a here-string fed to a shell")]),
    ("echo {{0}} | xargs sh -c 'eval \"$1\"' _", [(0, "piped into a shell")]),
    ("echo {{0}} | xargs -I{} sh -c 'echo {}'", [(0, "piped into a shell")]),
    ("echo {{0}} | xargs sudo sh -c", [(0, "piped into a shell")]),
    ("echo {{0}} | xargs -n1 rm -f && echo {{1}} | xargs sh -c 'echo \"$1\"' _", OK),
    ("echo 'eval \"$1\"' | sh -s {{0}}", [(0, "a positional parameter")]),
    # -- bash evaluating names and arithmetic
    ("declare -i n={{0}}", [(0, "the value in declare -i")]),
    ("local -n ref={{0}}", [(0, "the value in declare -i or -n")]),
    ("declare {{0}}=1", [(0, "an argument of declare")]),
    ("declare -i n; n={{0}}", [(0, "an integer variable")]),
    ("printf -v {{0}} %s x", [(0, "printf -v")]),
    ("[ -v {{0}} ]", [(0, "may follow -v")]),
    ("test {{0}} {{1}}", [(1, "may follow -v")]),
    ("[ $(echo {{0}}) ]", [(0, "could become options or code")]),
    ("[[ {{0}} -eq 1 ]]", [(0, "arithmetic test in [[ ]]")]),
    ("[[ 1 -lt {{0}}+1 ]]", [(0, "arithmetic test in [[ ]]")]),
    ("[[ -v {{0}} ]]", [(0, "-v in [[ ]]")]),
    ("[[ {{0}} {{1}} {{2}} ]]", [(0, "next to another value"), (1, "next to"), (2, "next to")]),
    ("[[ a && eval {{0}} ]]", [(0, "an argument of eval")]),  # dash and busybox: && ends [[
    ("a[{{0}}]=1", [(0, "inside an array subscript")]),
    # -- values that reach such places through variables
    ("n={{0}}; (( n > 3 )) && echo big", [(0, "assigned to n")]),
    ("x={{0}}; y=$x; [[ $y -gt 1 ]]", [(0, "assigned to x")]),
    ('x={{0}}; eval "$x"', [(0, "assigned to x")]),
    ("x={{0}}; $x", [(0, "assigned to x")]),
    ("x={{0}}; env $x", [(0, "assigned to x")]),
    ("export x={{0}}; sh -c 'eval \"$x\"'", [(0, "assigned to x")]),
    ("x={{0}}; sh <<EOF\n$x\nEOF", [(0, "assigned to x")]),
    ("x={{0}}; echo ${!x}", [(0, "assigned to x")]),
    ("read x <<< {{0}}; (( x ))", [(0, "fed to read")]),
    ('while read -r l; do eval "$l"; done <<< {{0}}', [(0, "fed to read")]),
    ("echo {{0}} | while read -r l; do (( l )); done", [(0, "fed to read")]),
    ('read -r a b <<< {{0}}; echo "$a"', OK),
    ('for i in 1 2; do f {{0}}; f() { eval "$1"; }; done', [(0, "a positional parameter")]),
    ("for i in {{0}}; do (( i )); done", [(0, "assigned to i")]),
    ('set -- {{0}}; eval "$1"', [(0, "a positional parameter")]),
    ('f() { eval "$@"; }; f {{0}}', [(0, "a positional parameter")]),
    ("BASH_ENV={{0}} bash -c :", [(0, "assigned to BASH_ENV")]),
    ("export PS4={{0}}; set -x", [(0, "assigned to PS4")]),
    (
        "{{0}}={{1}} bash -c :",
        OK,
    ),  # 'BASH_ENV'=x is a command name, not an assignment: values with = are quoted
    # -- where the shells disagree, everything after is refused
    ("echo $'a\\'b' {{0}}", [(0, "dash ends the quote there")]),
    ("echo \"${x:-'}'}\" {{0}}", [(0, "shells disagree")]),
    ("(echo {{0}}) ) echo {{1}}", [(1, "an unmatched )")]),
    ("echo $(cat <<EOF) {{0}}\nbody\nEOF", [(0, "here-document begun inside $(...)")]),
    ("cat <<$x\n{{0}}\n$x\necho {{1}}", [(0, "here-document"), (1, "delimiter with $")]),
    ("true &>/dev/null eval {{0}}", [(0, "an argument of eval")]),  # dash: true &, then >/dev/null eval
    # -- found by fuzzing
    ("printf -v{{0}} x=$1", [(0, "printf -v")]),  # found by fuzzing: bash takes -vNAME as one word
    ("a[ {{0}}]=1", [(0, "bash and dash split it differently")]),  # found by fuzzing: bash reads to the ]
    ("nice2>&1{{0}}", [(0, "the target of >&")]),  # found by fuzzing: bash expands '$(cmd)' there again
    ("{{0}}\n$[_]", [(0, "$_ may carry")]),  # found by fuzzing: $_ is the last argument, bash evaluates it
    ("sh -c + {{0}}", [(0, "the script of sh -c")]),  # found by fuzzing: a lone + or - ends the options
    ("printf -vtest -v{{0}} command", [(0, "printf -v")]),  # found by fuzzing: -v repeats, the last wins
    ("printf -v out -v {{0}} %s x", [(0, "printf -v")]),
    ("printf -v out -- {{0}}", OK),
    ('cp {{0}} /tmp; eval "$_"', [(0, "$_ may carry")]),
    ("echo hi >& {{0}}; x={{1}}; exec >&$x", [(0, "the target of >&"), (1, "assigned to x")]),
]


@pytest.mark.parametrize(("template", "expected"), CASES, ids=[c[0][:50] for c in CASES])
def test_refusals(template: str, expected: list[tuple[int, str]]) -> None:
    got = refusals(template)
    assert [m.index for m in got] == [i for i, _ in expected], [(m.index, m.where) for m in got]
    for m, (_, phrase) in zip(got, expected, strict=True):
        assert phrase in m.where, (m.index, m.where)


def test_mark_is_the_placeholder_the_integrator_renders() -> None:
    assert mark(0) == "\x1e0\x1e" and mark(12) == f"{MARK}12{MARK}"


def test_every_phrase_reads_after_is() -> None:
    # "playbook.yaml:12: {{ vars.x }} is <where>; remove the quotes around it ..."
    phrases = {m.where for template, _ in CASES for m in refusals(template)}
    assert len(phrases) > 50
    for where in phrases:
        assert where[0].islower() and not where.endswith((".", ";")), where


def test_marks_come_in_order_of_appearance_and_a_repeated_index_is_reported_each_time() -> None:
    got = refusals("echo '{{3}}' \"{{1}}\"; eval {{3}}; echo {{2}}")
    assert [(m.index, m.where.split(" (")[0]) for m in got] == [
        (3, "inside '...' quotes"),
        (1, 'inside "..." quotes'),
        (3, "an argument of eval"),
    ]


def test_characters_that_only_look_like_marks_are_text() -> None:
    assert misplaced(f"echo {MARK} {MARK}12 {MARK}{MARK} x{MARK}9999999999999999999999{MARK}") == []
    assert misplaced(f"echo '{MARK}{mark(4)}'") == [Misplaced(4, "inside '...' quotes")]


def test_nesting_deeper_than_the_limit_refuses_everything() -> None:
    got = misplaced("echo " + mark(0) + " " + "$(" * 200 + mark(1) + ")" * 200)
    assert [(m.index, m.where) for m in got] == [(0, DEEP), (1, DEEP)]


ALPHABET = [
    *"ab =;&|()<>{}[]$`'\"\\#~!*?,-+:/\n\t012",
    *[mark(0), mark(1), MARK, "<<EOF\n", "\nEOF\n", "$((", "$(", "${", "[[", "]]", "case ", " in ", "esac"],
    *["eval ", "sh -c ", "-eq", "-v"],
]


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(ALPHABET), max_size=60))
def test_never_raises_and_never_gives_up_on_any_script(parts: list[str]) -> None:
    script = "".join(parts)
    got = misplaced(script)
    assert all(m.where != UNREAD for m in got)
    assert len(got) <= script.count(MARK) // 2


def _seconds(script: str) -> float:
    t0 = time.perf_counter()
    misplaced(script)
    return time.perf_counter() - t0


PATHOLOGICAL = {
    "values": f"echo {mark(0)} ",
    "wrappers": "env nice timeout 1 sudo ",
    "maybe-assignments": f"{mark(0)}/bin/sh -c ",
    "brackets": "[[ -n x -eq ",
    "heredocs": "cat <<EOF\n",
    "case": "case x in a) ",
    "quotes": "'a'\"b\"$'c'",
    "arith": "$(( (1+2) ",
    "comments": f"# {mark(0)}\n",
    "for-read": f"for x in {mark(0)}; do read y <<< $x; done; ",
    "declare": f"declare -i a{mark(0)}=1 ",
}


@pytest.mark.parametrize("unit", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_linear_time_up_to_64_kib(unit: str) -> None:
    small = unit * (16_384 // len(unit))
    big = unit * (65_536 // len(unit))
    t_small, t_big = min(_seconds(small) for _ in range(3)), min(_seconds(big) for _ in range(3))
    assert t_big < 2.0
    assert t_big < 10 * t_small + 0.1  # four times the text: about four times the time, not sixteen


def test_random_64_kib_scripts_are_quick() -> None:
    rng = random.Random(7)
    for _ in range(5):
        script = "".join(rng.choice(ALPHABET) for _ in range(20_000))[:65_536]
        assert _seconds(script) < 2.0
