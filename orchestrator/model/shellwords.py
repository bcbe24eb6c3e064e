"""Where may a shell-quoted value stand in a command?

Templates render each value as ``shlex.quote(value)``: the bare text when it has only
``[A-Za-z0-9_@%+=:,./-]``, else a ``'...'`` string. That keeps the value one inert word only where the shell
reads it as unquoted word text and no command then runs that word as code. The integrator renders a template
with each value replaced by ``mark(i)`` and refuses the playbook for every mark that ``misplaced()``
returns. The command runs as ``sh -c``, which is dash, busybox ash or bash: the rules hold for all three,
and bash-only syntax is recognised everywhere. Where the shells read the same text differently, every later
mark is refused ("poisoned"): when we cannot know which reading will run, only a refusal is safe.

Refused (each ``where`` phrase completes "{{ vars.x }} is ..."):

- inside ``'...'``, ``"..."`` (also ``"$(...)"``: conservative), backquotes, ``$'...'``, ``$"..."``: the
  value's own quotes close the author's and the rest runs unquoted.
- inside ``${...}``, ``$((...))``, ``$[...]``, ``((...))``, ``NAME=(...)``: quoting differs between shells
  there, and bash evaluates ``a[$(cmd)]`` in arithmetic.
- in a comment (a value with a newline ends it); in a here-document body or delimiter (a value with a
  newline and the delimiter ends the body early, and an unquoted body expands ``$(...)``).
- right after ``\\`` (it escapes the value's opening quote), after ``$`` (``$'...'`` is ANSI-C quoting in
  bash, ``$`` + text a variable), after ``$NAME`` (text extends the name), in a tilde prefix ``~x`` (text
  names a user), inside an unclosed ``{`` of the word (bash brace expansion splits a value at commas), right
  before ``<`` or ``>`` with only digits before it (a value ``2`` becomes a file descriptor), in the target
  of ``>&`` (bash expands a target that is not a number a second time).
- as an argument of ``eval``, ``.``/``source``, ``trap``, ``alias``, ``let``, ``read``, ``mapfile`` (``-C``
  runs code), ``watch``, ``parallel``; of a command that a value, an expansion or an alias names (it could
  be ``eval``); of ``ssh`` after the host and ``su``/``runuser`` after the user (a remote or login shell
  runs them); of ``sudo -s``/``-i``.
- the script of ``sh -c`` (bash, dash, ash, ksh, zsh, ...), also behind wrappers (``env``, ``sudo``,
  ``exec``, ``command``, ``nice``, ``nohup``, ``timeout``, ``xargs``, ``flock``, ``busybox``,
  ``find -exec ... ;``, and any program naming a shell among its arguments: ``docker exec c sh -c``,
  ``kubectl exec p -- sh -c``); the code argument of ``su -c``, ``flock -c``, ``env -S``, ``script -c``,
  ``python -c``, ``perl -e``, ``ruby -e``, ``node -e``, ``php -r``, ``ssh``/``scp``/``sftp -o``,
  ``rsync -e``, ``tar --to-command``/``-I``/``-F``; the script operand of ``sed`` (its ``e`` command runs
  commands) and ``awk`` (``system()``). Where such a program reads options a value could be one (``-c``,
  ``-Scmd``, ``-ee cmd``, ``-oProxyCommand=cmd``), so it is refused there too, and so is a word that it
  could turn into code; ``--`` before the value fixes that. Arguments after ``sh -c SCRIPT`` are refused
  when the script runs ``$1``/``$@`` as code.
- piped into a shell or interpreter that reads its script from stdin (``echo {{x}} | sh``, ``tee >(sh)``),
  or into ``xargs`` running such a command (``xargs sh -c``, ``xargs -I{} sh -c '...{}...'``), or fed to one
  as a here-string; an argument of ``sh -s`` when the piped script runs ``$1`` as code.
- where bash evaluates ``a[$(cmd)]`` in a variable name or arithmetic, even from a quoted word: names and
  (with ``-i``/``-n``) values of ``declare``/``typeset``/``local``, ``printf -v NAME``, ``test -v``,
  ``[ -v``, ``[[ -v ]]``, operands beside ``-eq -ne -lt -le -gt -ge`` in ``[[ ]]`` (or beside another
  value there, which could be ``-eq``), ``NAME[...]=`` subscripts.
- inside ``$(...)`` where its output, split into words, could become options or code (a command name, the
  arguments of the programs above before their command or script).
- a value that reaches such a place through a variable or a positional parameter: assigned to a name (also
  by ``for``, ``printf -v``, ``export``, ``local``, copies ``y=$x``, and ``read`` from a pipe or from any
  here-string), passed to ``set --`` or to a function of the script (even one defined after the call),
  when that name, ``$1``/``$@`` or ``$_`` (the last argument of the previous command, so any value) is
  later expanded in a refused place; assigned to an integer variable
  (``declare -i``) or to one the shell or a program runs as code (``BASH_ENV``, ``ENV``, ``PS4``,
  ``PROMPT_COMMAND``, ``BASH_FUNC_*``, ``LD_PRELOAD``, ``PAGER`` ...); naming the variable of an
  assignment (``{{x}}=...``).

Accepted: a value in an unquoted word at top level or inside ``$( )``, ``( )``, ``{ }``, ``<( )``, after
``|``, ``;``, ``&&``, in redirection targets, assignment values, ``for`` lists, ``case`` words and patterns;
as the command name (it picks the program, which is what the template says) and in a path such as
``{{dir}}/bin/install`` whose last component is literal. A value in ``$(...)`` reaches the command line as
the inner command's output, split into words like any unquoted substitution: not code, but it can be several
arguments. Not modelled: the options of other programs (a value starting with ``-`` given to ``git``,
``curl``, ``docker``), globs and regexes written around a value, data flow through files and file
descriptors, and what a function does with its arguments beyond "it may run them as code".

``misplaced`` never raises and runs in linear time: one pass, bounded lookahead, a small fixed set of
readings per word; nesting deeper than 64 levels refuses everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property

MARK = "\x1e"


def mark(index: int) -> str:
    """The placeholder the integrator renders in place of value ``index``."""
    return f"{MARK}{index}{MARK}"


@dataclass(frozen=True)
class Misplaced:
    index: int  # the mark's index
    where: str  # completes "{{ vars.x }} is ...", e.g. "inside '...' quotes"


def misplaced(script: str) -> list[Misplaced]:
    """Every mark in ``script`` that stands where shlex.quote(value) would NOT make the value an inert
    part of one word, in order of appearance. [] means every mark is safe."""
    scan = _Scan(script)
    try:
        scan.run()
    except _TooDeep:
        scan.poison(0, DEEP)
    except Exception:  # a bug here must refuse the playbook, never pass it or crash validation
        scan.poison(0, UNREAD)
    out = []
    for pos, index in _all_marks(script):
        why = scan.flags.get(pos)
        if why is None and 0 <= scan.poison_at <= pos:
            why = scan.poison_why
        if why is None and pos not in scan.seen:
            why = UNREAD
        if why is not None:
            out.append(Misplaced(index, why))
    return out


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


SQ = "inside '...' quotes"
DQ = 'inside "..." quotes'
DQ_SUB = 'inside "$(...)" (double quotes around a command substitution)'
BQ = "inside backquotes"
ANSI = "inside $'...' quotes"
PARAM = "inside ${...}"
ARITH = "inside $((...)) arithmetic"
ARITH_CMD = "inside (( )) arithmetic"
OLD_ARITH = "inside $[...] arithmetic"
ARRAY = "inside a bash array assignment NAME=(...)"
COMMENT = "in a comment"
HEREDOC = "in a here-document"
HEREDOC_DELIM = "in the delimiter word of a here-document"
BACKSLASH = "right after a backslash"
DOLLAR = "right after $"
DOLLAR_NAME = "right after $NAME (it would extend the variable's name)"
TILDE = "right after ~ (it would name a user's home directory)"
BRACE = "inside {...} (bash brace expansion would split a value at its commas)"
FD = "right before a redirection (a value of digits would become a file descriptor)"
DUP = "the target of >& (bash expands it a second time when it is not a number)"
NAMED = "an argument of a command whose name comes from a value or an expansion (it could be eval)"
NAME_SPLIT = "inside $(...) in a command name (its output is split into a command and its arguments)"
SPLIT = "inside $(...) whose output, split into words, could become options or code here"
ALIASED = "an argument of an alias (dash and busybox expand aliases into code)"
NAMED_ASSIGN = "in an assignment whose variable a value names (it could be BASH_ENV, which runs code)"
SUBSCRIPT = "inside an array subscript NAME[...] (bash evaluates it as arithmetic)"
DECL_NAME = "an argument of declare, typeset or local (bash evaluates a[$(cmd)] in a name)"
DECL_VALUE = "the value in declare -i or -n (bash evaluates it as arithmetic or a variable name)"
PRINTF_V = "the variable name of printf -v (bash evaluates a[$(cmd)] in it)"
PRINTF_AFTER = "the argument after a value in printf (that value could be -v, and bash evaluates its name)"
TEST_V = "an operand of [ or test that may follow -v (bash evaluates a[$(cmd)] in the name)"
DB_ARITH = "an operand of an arithmetic test in [[ ]] (bash evaluates a[$(cmd)] in it)"
DB_V = "an operand of -v in [[ ]] (bash evaluates a[$(cmd)] in the name)"
DB_NEXT = "next to another value in [[ ]] (that value could be -eq or -v, which evaluate a[$(cmd)])"
LET = "an argument of let (bash evaluates it as arithmetic, and a[$(cmd)] runs cmd)"
ALIAS = "an argument of alias (its text runs as code)"
READ = "an argument of read (bash evaluates a[$(cmd)] in a variable name)"
PIPED = "piped into a shell (it would run as code)"
HERESTRING = "a here-string fed to a shell (it would run as code)"
SUDO_SHELL = "an argument of sudo -s or -i (it runs through a shell)"
POSITIONAL = "a positional parameter ($1, $@) that the script runs as code or arithmetic"
DEEP = "in a script nested more than 64 levels deep"
UNREAD = "in a part of the script this check could not read"
_RUNS_ARGS = {
    "eval": "an argument of eval (it would run as code)",
    ".": "an argument of . (it names a file that runs as code)",
    "source": "an argument of source (it names a file that runs as code)",
    "trap": "an argument of trap (its action runs as code)",
    "mapfile": "an argument of mapfile (-C runs a callback, and bash evaluates a[$(cmd)] in names)",
    "readarray": "an argument of readarray (-C runs a callback, and bash evaluates a[$(cmd)] in names)",
    "watch": "an argument of watch (it runs through sh -c)",
    "parallel": "an argument of parallel (it runs through a shell)",
}
_CODE_VARS = _words(
    "BASH_ENV ENV PS0 PS1 PS2 PS3 PS4 PROMPT_COMMAND SHELLOPTS BASHOPTS PERL5OPT PERL5LIB "
    "PYTHONSTARTUP PYTHONPATH LD_PRELOAD LD_LIBRARY_PATH LD_AUDIT GIT_SSH_COMMAND GIT_EXTERNAL_DIFF "
    "EDITOR VISUAL PAGER LESSOPEN LESSCLOSE MANPAGER SSH_ASKPASS BROWSER"
)
_KEYWORDS = _words("if then else elif fi do done while until { } ! esac coproc")
_ARITH_OPS = _words("-eq -ne -lt -le -gt -ge")
_META = frozenset(" \t\n;&|()<>")
_IDENT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_MAX_DEPTH = 64
_MAX_READINGS = 64


@dataclass
class _Prog:
    """How a program reads its arguments, as far as running code goes."""

    arg: str = ""  # short options that take an argument
    code: str = ""  # short options whose argument is code
    long_arg: frozenset[str] = frozenset()
    long_code: frozenset[str] = frozenset()
    long_rest: frozenset[str] = frozenset()
    flag_code: str = ""  # flags that make the first operand code (sh -c)
    stdin_flag: str = ""  # flags that make stdin the script (sh -s)
    rest: str = ""  # flags that make every later argument shell code (sudo -s)
    script_opts: str = ""  # options that supply the script, so no operand is (sed -e, -f)
    script: bool = False  # the first operand is code (sed, awk)
    plus: bool = False  # +o options
    stdin: bool = False  # with no script operand it runs stdin as code
    permutes: bool = False  # options may follow operands (GNU getopt)
    assigns: bool = False  # NAME=VALUE operands before the command (env, sudo)
    before: int = -1  # operands before the command it runs; -1: it runs none
    after: str = ""  # what follows those operands: "cmd" (a command) or "code" (shell code)
    why: str = ""  # the phrase for its code


# One line per program: its options in the fields of _Prog.
_TABLE = [
    (
        "sh bash dash ash ksh zsh mksh yash posh rbash lksh",
        "arg=oO long_arg=rcfile,init-file flag_code=c stdin_flag=s plus stdin",
    ),
    (
        "su runuser",
        "arg=sgGwu code=c long_arg=shell,group,supp-group,user long_code=command,session-command "
        "permutes before=1 after=code",
    ),
    (
        "sudo",
        "arg=CDghpRrtTUu rest=si long_arg=chdir,close-from,group,host,prompt,chroot,role,type,other-user,"
        "user long_rest=shell,login assigns before=0 after=cmd",
    ),
    ("doas", "arg=uC rest=s before=0 after=cmd"),
    ("env", "arg=uC code=S long_arg=unset,chdir long_code=split-string assigns before=0 after=cmd"),
    ("nohup setsid command builtin busybox", "before=0 after=cmd"),
    ("exec", "arg=a before=0 after=cmd"),
    ("nice", "arg=n long_arg=adjustment before=0 after=cmd"),
    ("stdbuf", "arg=ioe long_arg=input,output,error before=0 after=cmd"),
    ("ionice", "arg=cnp before=0 after=cmd"),
    ("time", "arg=fo long_arg=format,output before=0 after=cmd"),
    ("timeout", "arg=sk long_arg=signal,kill-after before=1 after=cmd"),
    ("chroot", "long_arg=userspec,groups before=1 after=cmd"),
    ("taskset", "before=1 after=cmd"),
    ("flock", "arg=wE code=c long_arg=timeout,wait,conflict-exit-code long_code=command before=1 after=cmd"),
    (
        "xargs",
        "arg=adEILnPs long_arg=arg-file,delimiter,eof,max-lines,max-args,max-procs,max-chars before=0 "
        "after=cmd",
    ),
    ("ssh", "arg=BbcDEeFIiJLlmOpQRSWw code=o before=1 after=code"),
    ("scp sftp", "arg=cDFiJlPX code=oS permutes"),
    ("rsync", "code=e long_code=rsh,rsync-path long_arg=files-from,exclude,include,filter,chmod permutes"),
    (
        "tar",
        "arg=fCbHKLNTgVX code=IF long_code=to-command,use-compress-program,info-script,new-volume-script,"
        "checkpoint-action,rsh-command,rmt-command long_arg=file,directory,exclude,files-from permutes",
    ),
    ("script", "code=c long_code=command"),
    ("sed", "code=e arg=fl long_code=expression long_arg=file,line-length script script_opts=ef permutes"),
    (
        "awk gawk mawk nawk",
        "code=e arg=fvF long_code=source long_arg=file,assign,field-separator script script_opts=ef",
    ),
    ("python python2 python3", "code=cm arg=WXQ stdin"),
    ("perl", "code=eEMm stdin"),
    ("ruby", "code=er stdin"),
    ("node nodejs", "code=epr long_code=eval,print,require,import stdin"),
    ("php", "code=rBRE stdin"),
]
_WHY = {  # keyed by the first name of a _TABLE line
    "su": "the command of {name} -c (it would run as code)",
    "env": "the argument of env -S (it is split into a command)",
    "flock": "the command of flock -c (it would run as code)",
    "ssh": "an -o option of ssh (ProxyCommand= runs a command)",
    "scp": "an -o or -S option of {name} (they run commands)",
    "rsync": "the remote shell of rsync -e (it runs as a command)",
    "tar": "an option of tar that runs a program (--to-command, -I, -F)",
    "script": "the command of script -c (it would run as code)",
    "sed": "a sed script (GNU sed's e command runs shell commands)",
    "awk": "an awk program (system() in it runs commands)",
    "python": "the code of python -c or the module of -m",
    "perl": "perl code (-e, -E, -M)",
    "ruby": "ruby code (-e, -r)",
    "node": "node code (-e, -p, -r)",
    "php": "php code (-r, -B, -R, -E)",
}
_AFTER = {
    "su": "an argument of {name} after the user (it goes to the user's shell)",
    "ssh": "the remote command of ssh (the remote shell runs it as code)",
}


def _parse_table() -> dict[str, _Prog]:
    out = {}
    for names, spec in _TABLE:
        prog, first = _Prog(), names.split()[0]
        for item in spec.split():
            key, _, val = item.partition("=")
            parsed: object = val
            if key.startswith("long_"):
                parsed = frozenset(val.split(","))
            elif key == "before":
                parsed = int(val)
            elif not val:
                parsed = True
            setattr(prog, key, parsed)
        for name in names.split():
            after = _AFTER.get(first, "").format(name=name) if prog.after == "code" else prog.after
            out[name] = replace(prog, why=_WHY.get(first, "").format(name=name), after=after)
    return out


_PROGS = _parse_table()


class _TooDeep(Exception):
    pass


def _try_mark(s: str, i: int) -> tuple[int, int] | None:
    """(index, end) when a mark starts at ``i``."""
    j = i + 1
    while j < len(s) and j - i <= 19 and "0" <= s[j] <= "9":
        j += 1
    if i + 1 < j <= i + 19 and j < len(s) and s[j] == MARK:
        return int(s[i + 1 : j]), j + 1
    return None


def _all_marks(s: str) -> list[tuple[int, int]]:
    out = []
    k = s.find(MARK)
    while k >= 0:
        m = _try_mark(s, k)
        if m:
            out.append((k, m[0]))
            k = s.find(MARK, m[1])
        else:
            k = s.find(MARK, k + 1)
    return out


def _names(text: str) -> set[str]:
    """The identifiers in ``text``: what it may expand or evaluate as a variable (over-approximated)."""
    out, cur = set(), []
    for c in text + " ":
        if c in _IDENT:
            cur.append(c)
        else:
            if cur and not cur[0].isdigit():
                out.add("".join(cur))
            cur = []
    return out


def _positional(text: str) -> bool:
    """Does ``text`` expand a positional parameter ($0 after sh -c SCRIPT, $1, ${2}, $@, $*)?"""
    k = text.find("$")
    while k >= 0:
        nxt = text[k + 1 : k + 2]
        if (
            nxt in ("@", "*")
            or "0" <= nxt <= "9"
            or (nxt == "{" and text[k + 2 : k + 3] in tuple("@*0123456789"))
        ):
            return True
        k = text.find("$", k + 1)
    return False


@dataclass(eq=False)
class _Word:
    """One shell word as the rules need it: its literal text (when no value or expansion is in it), and what
    a value in it could turn it into."""

    start: int
    m0: int  # its marks are _Scan.marks[m0:m1], nested ones too
    m1: int = 0
    end: int = 0
    lit: list[str] = field(default_factory=list)
    literal: bool = True
    plain: bool = True  # no quoting: keywords and [[ ]] operators need that
    exp: bool = False  # an expansion in it: $x, $(...), `...`
    unq: bool = False  # an unquoted one, whose result is split into words
    first_open: bool | None = None  # whether its first part is a value or an expansion
    last_value: bool = False  # it ends with a value
    split: list[int] = field(default_factory=list)  # marks in unquoted $(...) or <(...)
    tail: list[str] = field(default_factory=list)  # literal text after its last /
    tail_open: bool = False  # a value or expansion after its last /
    opword: bool = True  # unquoted letters and - around a value: the value can make it -eq or -v
    astate: str = "name"  # recognises NAME=, NAME+=, NAME[...]=: name, sub, after, plus, value, no
    name: list[str] = field(default_factory=list)
    maybe_assign: bool = False  # name characters, then a value: the value can make it NAME=...
    named_assign: bool = False  # ... and an = follows the value
    has_sub: bool = False
    eq_m: int = -1  # marks from here on are in the assignment's value
    sub_m: tuple[int, int] = (0, 0)  # marks in NAME[...]
    prefix: list[str] = field(default_factory=list)  # unquoted literal text before any other part
    in_prefix: bool = True

    @cached_property
    def text(self) -> str | None:  # read only once the word is complete
        return "".join(self.lit) if self.literal else None

    @property
    def assign(self) -> str | None:
        return "".join(self.name) if self.astate == "value" else None

    def char(self, c: str, quoted: bool, nmarks: int) -> None:
        self.lit.append(c)
        self.last_value = False
        if self.first_open is None:
            self.first_open = False
        if quoted:
            self.plain = self.in_prefix = self.opword = False
            if self.astate in ("name", "after", "plus"):
                self.astate = "no"
        else:
            if self.in_prefix:
                self.prefix.append(c)
            if not (c.isalpha() or c == "-"):
                self.opword = False
            self.named_assign = self.named_assign or (c == "=" and self.maybe_assign)
            self._assign_char(c, nmarks)
        if c == "/":
            self.tail, self.tail_open = [], False
        else:
            self.tail.append(c)

    def _assign_char(self, c: str, nmarks: int) -> None:
        st = self.astate
        if st == "name":
            if c in _IDENT and (self.name or not c.isdigit()):
                self.name.append(c)
            elif c in "=+[" and self.name:
                self.astate = {"=": "value", "+": "plus", "[": "sub"}[c]
                self.eq_m = nmarks if c == "=" else self.eq_m
                self.has_sub, self.sub_m = c == "[", (nmarks, nmarks)
            else:
                self.astate = "no"
        elif st == "sub" and c == "]":
            self.astate, self.sub_m = "after", (self.sub_m[0], nmarks)
        elif st in ("after", "plus"):
            if c == "=":
                self.astate, self.eq_m = "value", nmarks
            else:
                self.astate = "plus" if c == "+" and st == "after" else "no"

    def other(self, value: bool, unquoted: bool = False) -> None:
        """A part that is not literal text: a value (a mark) or an expansion."""
        if self.first_open is None:
            self.first_open = True
        self.literal = self.in_prefix = False
        self.tail_open, self.last_value = True, value
        if not value:
            self.opword, self.exp = False, True
            self.unq = self.unq or unquoted
        if self.astate == "name":
            # A value is quoted whenever it holds "=" (templating.quote_word), so it never completes a
            # NAME=... assignment; only an expansion's text could.
            self.maybe_assign = False
            self.astate = "no"
        elif self.astate in ("after", "plus"):
            self.astate = "no"


@dataclass
class _Here:
    delim: str
    strip: bool  # <<-
    quoted: bool
    code: bool = False  # fed to a shell


@dataclass(frozen=True, slots=True)
class _St:
    """One reading of the command so far; where shells differ, several readings run side by side."""

    kind: str
    fx: bool = False  # inside find -exec ... ;
    name: str = ""  # the program; a flag state's phrase; the variable a loop or printf -v sets
    pending: str = ""  # "arg": the next word is an option's argument; "code": it is code
    phase: int = 0  # 0 while options may come
    nops: int = 0  # operands seen, up to 2: no rule tells more apart, and so the readings stay few
    code: str = ""  # "c": sh -c; "v": a value may have been -c; "s": stdin is the script; "P": $1... are code
    xa: str = ""  # run by xargs, which adds its stdin as arguments ("I": xargs -I puts it inside them)


_START = _St("start")


class _Scan:
    """The lexer: one pass over the script, tracking quotes and nesting. Each command list gets a _Cmds,
    which reads its words and operators as commands."""

    def __init__(self, s: str, inner: bool = False) -> None:
        self.s, self.n, self.i, self.inner = s, len(s), 0, inner
        self.flags: dict[int, str] = {}  # mark position -> why it is misplaced
        self.marks: list[int] = []  # positions of the marks met, in order
        self.seen: set[int] = set()
        self.poison_at, self.poison_why = -1, ""
        self.why: list[str | None] = [None]  # what applies to a mark in the innermost context
        self.depth = 0
        self.assigns: list[tuple[str, list[int]]] = []  # NAME=value with marks in the value
        self.links: dict[str, set[str]] = {}  # NAME=...$OTHER...: whoever reads NAME reads OTHER
        self.code_names: set[str] = set()  # names expanded where code, arithmetic or a name is read
        self.int_names: set[str] = set()
        self.pos_code = False  # $1, $@ expanded in such a place
        self.pos_marks: list[int] = []  # values given as positional parameters (set --, functions)
        self.pos_names: set[str] = set()
        self.aliases: set[str] = set()
        self.functions: set[str] = set()
        self.calls: list[tuple[str, _Word]] = []  # the arguments of commands that may be functions
        self.feeds_code = False  # a >(...) in the current stage runs its input

    def run(self) -> None:
        self._list(closer=False, kind="top")
        for name, w in self.calls:
            if name in self.functions:
                self.pos_marks += self.marks[w.m0 : w.m1]
                self.pos_names |= _names(self.s[w.start : w.end])
        todo = [*self.code_names, *self.int_names]
        if self.pos_code:
            self.flag(self.pos_marks, POSITIONAL)
            todo += self.pos_names
        used: set[str] = set()
        while todo:
            name = todo.pop()
            if name not in used:
                used.add(name)
                todo.extend(self.links.get(name, ()))
        if "_" in used:  # $_ is the last argument of the previous command: it may carry any value
            self.flag(self.marks, "an argument that $_ may carry to where the script runs it as code")
        for name, positions in self.assigns:
            if name.startswith("#") and name in used:  # what a read took from a pipe or a here-string
                self.flag(positions, "fed to read, whose variable the script runs as code or arithmetic")
            elif name in self.int_names:
                self.flag(
                    positions, f"assigned to {name}, an integer variable (bash evaluates it as arithmetic)"
                )
            elif name in used:
                self.flag(positions, f"assigned to {name}, which the script later runs as code or arithmetic")

    def poison(self, pos: int, why: str) -> None:
        if self.poison_at < 0 or pos < self.poison_at:
            self.poison_at, self.poison_why = pos, why

    def flag(self, positions: list[int], why: str) -> None:
        for pos in positions:
            self.flags.setdefault(pos, why)

    def code_text(self, text: str) -> None:
        """``text`` stands where code, arithmetic or a name is read: so do the variables it expands."""
        self.code_names |= _names(text)
        self.pos_code = self.pos_code or _positional(text)

    def flag_word(self, w: _Word, why: str, target: bool = False) -> None:
        """Refuse the values in ``w``; what it expands is read as code too (a ``target`` name only when it is
        itself an expansion: read x sets x, it does not run it)."""
        self.flag(self.marks[w.m0 : w.m1], why)
        if w.exp or not target:
            self.code_text(self.s[w.start : w.end])

    def _meet(self, pos: int, why: str | None) -> None:
        self.marks.append(pos)
        self.seen.add(pos)
        if why:
            self.flags.setdefault(pos, why)

    def _flag_range(self, a: int, b: int, why: str) -> None:
        k = self.s.find(MARK, a, b)
        while k >= 0:
            m = _try_mark(self.s, k)
            if m and m[1] <= b:
                self._meet(k, why)
                k = self.s.find(MARK, m[1], b)
            else:
                k = self.s.find(MARK, k + 1, b)

    def _mark_here(self) -> bool:
        """Meet the mark at self.i, if one starts there, under the innermost context's reason."""
        m = _try_mark(self.s, self.i)
        if m is None:
            return False
        self._meet(self.i, self.why[-1])
        self.i = m[1]
        return True

    def _enter(self, why: str | None, sub: bool = False) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise _TooDeep
        if sub:  # $( ) keeps the reason of its context; inside "..." it gets its own phrase
            why = DQ_SUB if self.why[-1] in (DQ, DQ_SUB) else self.why[-1]
        self.why.append(why)

    def _leave(self) -> None:
        self.depth -= 1
        self.why.pop()

    def _at(self, k: int) -> str:
        return self.s[k] if k < self.n else ""

    # -- command lists

    def _list(self, closer: bool, kind: str) -> None:
        """Commands up to the end, or (``closer``) up to the ) that closes a $( or <(."""
        s = self.s
        cmds = _Cmds(self, kind)
        here: list[_Here] = []  # here-documents whose bodies start at the next newline
        while self.i < self.n:
            c, nxt = s[self.i], self._at(self.i + 1)
            if c in " \t":
                self.i += 1
            elif c == "\\" and nxt == "\n":
                self.i += 2
            elif c == "\n":
                self.i += 1
                cmds.op("\n")
                self._bodies(here)
                here = []
            elif c == "#":
                end = s.find("\n", self.i)
                end = self.n if end < 0 else end
                self._flag_range(self.i, end, COMMENT)
                self.i = end
            elif c == ")":
                self.i += 1
                if not cmds.close_paren():
                    if closer:
                        break
                    self.poison(self.i, "after an unmatched ) (the shells' reading of the rest is unclear)")
            elif c == "(" and nxt == "(" and not cmds.in_pattern():
                self._arith(self.i + 2, ARITH_CMD, "(", ")", 2, _Word(self.i, 0))
                cmds.arith_command()
            elif c == "(":
                self.i += 1
                k = self.i
                while self._at(k) in (" ", "\t"):
                    k += 1
                if self._at(k) == ")" and cmds.function_name():  # name() { ...; }
                    self.i = k + 1
                else:
                    cmds.open_paren()
            elif c in ";&|":
                op = next(
                    o
                    for o in (";;&", ";;", ";&", ";", "&&", "&>>", "&>", "&", "||", "|&", "|")
                    if s.startswith(o, self.i)
                )
                if op.startswith("&>"):
                    cmds.op("&>")
                    self._redirect(cmds, op, here)
                else:
                    self.i += len(op)
                    cmds.op(op)
            elif c in "<>" and nxt != "(":
                op = next(
                    o
                    for o in ("<<<", "<<-", "<<", "<>", "<&", "<", ">>", ">&", ">|", ">")
                    if s.startswith(o, self.i)
                )
                self._redirect(cmds, op, here)
            else:
                w = self._word(assign_ok=cmds.assign_ok())
                t = w.text
                if self._at(self.i) in ("<", ">"):
                    if w.plain and t and (t.isdigit() or (t[0] == "{" and t[-1] == "}")):
                        continue  # 2>file, {fd}>file: a file descriptor, not a word
                    if w.last_value and w.plain and all(ch.isdigit() for ch in w.lit):
                        self.flag_word(w, FD)
                cmds.word(w)
        cmds.end()
        if here and closer:
            self.poison(self.i, "after a here-document begun inside $(...) (shells disagree on its body)")

    def _redirect(self, cmds: _Cmds, op: str, here: list[_Here]) -> None:
        self.i += len(op)
        while self._at(self.i) in (" ", "\t"):
            self.i += 1
        if self.i >= self.n or self.s[self.i] in _META:
            return
        w = self._word()
        if op in ("<<", "<<-"):
            self.flag_word(w, HEREDOC_DELIM)
            raw = self.s[w.start : self.i]
            if "$" in raw or "`" in raw:
                self.poison(w.start, "after a here-document delimiter with $ or ` (shells disagree on it)")
            doc = _Here(
                "".join(c for c in raw if c not in "'\"\\"), op == "<<-", any(q in raw for q in "'\"\\")
            )
            here.append(doc)
            cmds.heredocs.append(doc)
        cmds.redirect(w, op)

    def _bodies(self, here: list[_Here]) -> None:
        s = self.s
        for doc in here:
            start = self.i
            while self.i < self.n:
                parts = []
                while True:  # one logical line: an unquoted body joins a line ending in an odd backslash
                    j = s.find("\n", self.i)
                    end = self.n if j < 0 else j
                    self._flag_range(self.i, end, HEREDOC)
                    line = s[self.i : end]
                    self.i = end + 1 if j >= 0 else self.n
                    if doc.strip:
                        line = line.lstrip("\t")
                    odd = (len(line) - len(line.rstrip("\\"))) % 2 == 1
                    if doc.quoted or not odd or j < 0:
                        parts.append(line)
                        break
                    parts.append(line[:-1])
                if "".join(parts) == doc.delim:
                    break
            if doc.code:  # sh <<EOF: what the body expands runs as code
                self.code_text(s[start : self.i])

    # -- words

    def _word(self, assign_ok: bool = False) -> _Word:
        """One unquoted word at self.i; ``assign_ok`` where bash would read NAME[...]= as an assignment."""
        s = self.s
        w = _Word(self.i, len(self.marks))
        brace, tilde, prev = 0, False, ""
        while self.i < self.n:
            c, nxt = s[self.i], self._at(self.i + 1)
            if c in _META:
                if c in "<>" and nxt == "(":  # bash and busybox: process substitution, even mid-word
                    self.i += 2
                    self._nested(w, in_dq=False, kind="out" if c == ">" else "sub")
                    tilde = False
                    continue
                if c == "(" and w.assign is not None and w.literal and w.lit[-1:] == ["="]:
                    self.i += 1
                    self._array()
                    w.other(False)
                    continue
                break
            if c == MARK and _try_mark(s, self.i):
                pos = self.i
                self._mark_here()
                if tilde:
                    self.flags.setdefault(pos, TILDE)
                if brace:
                    self.flags.setdefault(pos, BRACE)
                w.other(True)
                prev = ""
                continue
            if c == "\\":
                if nxt == "\n":
                    self.i += 2
                    continue
                if nxt == MARK and _try_mark(s, self.i + 1):
                    self.flags.setdefault(self.i + 1, BACKSLASH)
                    self.i += 1
                    continue
                if nxt:
                    w.char(nxt, True, len(self.marks))
                self.i += 2
                tilde = False
            elif c in "'\"`$":
                {"'": self._sq, '"': self._dq, "`": self._bq, "$": self._dollar}[c](w, False)
                tilde = False
            else:
                if c == "~" and (self.i == w.start or prev in ("=", ":")):
                    tilde = True
                elif c == "/":
                    tilde = False
                elif c == "{":
                    brace += 1
                elif c == "}" and brace:
                    brace -= 1
                w.char(c, False, len(self.marks))
                self.i += 1
            prev = c
        if assign_ok and w.astate == "sub":  # bash reads on to the ], across blanks and ; (dash does not)
            self.poison(
                w.start,
                "after NAME[ with a blank or operator before its ] (bash and dash split it differently)",
            )
        w.m1, w.end = len(self.marks), self.i
        return w

    def _sq(self, w: _Word, in_dq: bool) -> None:
        end = self.s.find("'", self.i + 1)
        end = self.n if end < 0 else end
        m0 = len(self.marks)
        self._flag_range(self.i + 1, end, SQ)
        for c in self.s[self.i + 1 : end] or "":
            w.char(c, True, len(self.marks))
        if end == self.i + 1:
            w.char("", True, len(self.marks))  # '' still quotes: the word is no keyword
        if len(self.marks) > m0:
            w.other(True)
        self.i = end + 1

    def _dq(self, w: _Word, in_dq: bool) -> None:
        self._enter(DQ)
        s = self.s
        self.i += 1
        w.char("", True, len(self.marks))
        while self.i < self.n:
            c = s[self.i]
            if c == '"':
                self.i += 1
                break
            if c == "\\":
                nxt = self._at(self.i + 1)
                if nxt == MARK:
                    self.i += 1
                    continue
                if nxt != "\n":
                    w.char(nxt if nxt in '$`"\\' else "\\" + nxt, True, len(self.marks))
                self.i += 2
            elif c == "$":
                self._dollar(w, True)
            elif c == "`":
                self._bq(w, True)
            elif c == MARK and self._mark_here():
                w.other(True)
            else:
                w.char(c, True, len(self.marks))
                self.i += 1
        self._leave()

    def _bq(self, w: _Word, in_dq: bool) -> None:
        """`...` ends at the first unescaped backquote, whatever quotes lie between."""
        s, k = self.s, self.i + 1
        while k < self.n and s[k] != "`":
            k += 2 if s[k] == "\\" and self._at(k + 1) != MARK else 1
        m0 = len(self.marks)
        self._flag_range(self.i + 1, min(k, self.n), BQ)
        if not in_dq:
            w.split.extend(self.marks[m0:])
        self.i = k + 1
        w.other(False, not in_dq)

    def _ansi(self) -> None:
        s = self.s
        self.i += 2
        start = self.i
        while self.i < self.n and s[self.i] != "'":
            if s[self.i] == "\\":
                if self._at(self.i + 1) == "'":
                    self.poison(self.i, "after \\' inside $'...' (dash ends the quote there, bash does not)")
                self.i += 1 if self._at(self.i + 1) == MARK else 2
            else:
                self.i += 1
        self._flag_range(start, min(self.i, self.n), ANSI)
        self.i += 1

    def _dollar(self, w: _Word, in_dq: bool) -> None:
        s, i = self.s, self.i
        nxt = self._at(i + 1)
        if nxt == "(" and self._at(i + 2) == "(":
            self._arith(i + 3, ARITH, "(", ")", 2, w)
        elif nxt == "(":
            self.i += 2
            self._nested(w, in_dq, "sub")
            return
        elif nxt == "{":
            self._param(w, in_dq)
        elif nxt == "[":
            self._arith(i + 2, OLD_ARITH, "[", "]", 1, w)
        elif nxt == "'" and not in_dq:
            self._ansi()
        elif nxt == '"' and not in_dq:
            self.i += 1  # $"..." (bash: translated) reads like "..."
            return
        elif nxt == MARK and _try_mark(s, i + 1):
            self.flags.setdefault(i + 1, DOLLAR)
            self.i += 1
        elif nxt in _IDENT and not nxt.isdigit():
            k = i + 1
            while k < self.n and s[k] in _IDENT:
                k += 1
            if self._at(k) == MARK and _try_mark(s, k):
                self.flags.setdefault(k, DOLLAR_NAME)
            self.i = k
        elif nxt and nxt in "@*#?-$!0123456789":
            self.i += 2
        else:
            w.char("$", in_dq, len(self.marks))
            self.i += 1
            return
        w.other(False, not in_dq)

    def _nested(self, w: _Word, in_dq: bool, kind: str) -> None:
        """$( ... ), <( ... ), >( ... ): a command list of its own."""
        m0 = len(self.marks)
        self._enter(None, sub=True)
        self._list(closer=True, kind=kind)
        self._leave()
        if not in_dq:
            w.split.extend(self.marks[m0:])
        w.other(False, not in_dq)

    def _param(self, w: _Word, in_dq: bool) -> None:
        self._enter(PARAM)
        s = self.s
        start = self.i = self.i + 2
        while self.i < self.n and s[self.i] != "}":
            c = s[self.i]
            if c == "\\":
                self.i += 1 if self._at(self.i + 1) == MARK else 2
            elif c == "'":
                if in_dq:  # bash reads a quote here, dash and busybox a plain '
                    self.poison(self.i, 'after a \' inside "${...}" (shells disagree on where that ends)')
                self._sq(w, in_dq)
            elif c in '"$`':
                {'"': self._dq, "$": self._dollar, "`": self._bq}[c](w, in_dq or c == '"')
            elif not (c == MARK and self._mark_here()):
                self.i += 1
        body = s[start : self.i]
        self.i += 1
        self._leave()
        k = 1 if body[:1] in ("#", "!") else 0
        while k < len(body) and body[k] in _IDENT:
            k += 1
        if (
            body[:1] == "!"
            or body[k : k + 1] == "["
            or (body[k : k + 1] == ":" and body[k + 1 : k + 2] not in "-=?+")
        ):
            self.code_text(body)  # ${!x}, ${a[i]}, ${s:i:n} read names and arithmetic

    def _arith(self, start: int, why: str, open_: str, close: str, depth: int, w: _Word) -> None:
        """$((...)), ((...)), $[...]: quotes and substitutions nest in them; the rest counts brackets."""
        self._enter(why)
        s = self.s
        self.i = start
        while self.i < self.n and depth:
            c = s[self.i]
            depth += (c == open_) - (c == close)
            if c == "\\":
                self.i += 1 if self._at(self.i + 1) == MARK else 2
            elif c in "'\"$`":
                {"'": self._sq, '"': self._dq, "$": self._dollar, "`": self._bq}[c](w, True)
            elif not (c == MARK and self._mark_here()):
                self.i += 1
        self.code_text(s[start : self.i])
        self._leave()
        w.other(False)

    def _array(self) -> None:
        """bash's NAME=( ... ), whose [subscripts] bash evaluates: every value in it is refused."""
        self._enter(ARRAY)
        while self.i < self.n:
            c = self.s[self.i]
            if c == ")":
                self.i += 1
                break
            if c == "#":
                end = self.s.find("\n", self.i)
                end = self.n if end < 0 else end
                self._flag_range(self.i, end, COMMENT)
                self.i = end
            elif c in _META:
                self.i += 1
            else:
                self._word()
        self._leave()


class _Cmds:
    """The commands of one list: which word is a command name, which are arguments, and what each program
    does with them. Every reading that some shell may take is followed side by side."""

    def __init__(self, sc: _Scan, kind: str) -> None:
        self.sc, self.kind = sc, kind  # kind: "top", "sub" for $( ) and <( ), "out" for >( )
        self.states: set[_St] = {_START}
        self.parens = 0
        self.case: list[str] = []  # open case ... esac: subject, in, pattern, body
        self.dbr: list[_Word | str] | None = None  # the items of an open [[ ... ]], as bash reads it
        self.pipe = self.stage = len(sc.marks)  # where the pipeline's and the stage's marks begin
        self.pipe_at = self.stage_at = sc.i
        self.groups: list[int] = []  # pipeline starts outside open ( ) and { }
        self.here: list[int] = []  # marks in this stage's here-strings
        self.heredocs: list[_Here] = []
        self.read_names: list[str] = []  # variables this stage's read sets
        self.done_at, self.done_m = sc.i, len(sc.marks)  # the pipeline already flagged for a reading shell
        self.pipe_read = False  # a read in this pipeline takes its input
        self.positional: dict[int, bool] = {}  # _runs_positional, by word start
        self.prev: str | None = None
        self.last_name: str | None = None  # the literal command name just read, for name() { ... }

    def in_pattern(self) -> bool:
        return bool(self.case) and self.case[-1] == "pattern"

    def assign_ok(self) -> bool:
        return not (self.case and self.case[-1] != "body") and any(
            st.kind in ("start", "cmd") for st in self.states
        )

    def word(self, w: _Word) -> None:
        t = w.text if w.plain else None
        if self.case and self.case[-1] != "body":
            top = self.case[-1]
            if top == "pattern" and t == "esac":
                self.case.pop()
                self.states = {_START}
            elif top != "pattern":
                self.case[-1] = "in" if top == "subject" else "pattern"
            return
        if self.dbr is not None:
            if t == "]]":
                self._dbracket()
                self.dbr = None
            else:
                self.dbr.append(w)
        if any(st.kind == "start" for st in self.states):
            if t == "case":
                self.case.append("subject")
                return
            if t == "[[":
                self.dbr = []
            elif t == "esac" and self.case:
                self.case.pop()
            elif t == "{":
                self.groups.append(self.pipe)
            elif t == "}" and self.groups:
                self.pipe = self.groups.pop()
        naming = any(st.kind in ("start", "cmd") for st in self.states)
        self.last_name = w.text if naming else None
        new: set[_St] = set()
        for st in self.states:
            new |= self._step(st, w)
        if len(new) > _MAX_READINGS:  # cannot happen with the rules as they are; keeps the time linear
            self.sc.poison(w.start, "in a command with more readings than this check follows")
            new = set()
        self.states = new or {_St("inert")}
        self.prev = w.text

    def redirect(self, w: _Word, op: str) -> None:
        if self.dbr is not None:
            self.dbr += [op, w]
        if op == ">&":  # bash expands >&WORD a second time when it is not a number: $(...) in it runs
            self.sc.flag_word(w, DUP)
        if op == "<<<":
            self.here.extend(self.sc.marks[w.m0 : w.m1])
            self.sc.assigns.append(("#stdin", self.sc.marks[w.m0 : w.m1]))  # done <<< x feeds a read inside

    def op(self, o: str) -> None:
        if self.case and self.case[-1] != "body":
            return
        if o in (";;", ";&", ";;&"):
            self._stage_end(True)
            if self.case:
                self.case[-1] = "pattern"
            self.states = {_START}
            return
        if o == "&>":  # a redirection in bash; dash and busybox read & and then >
            self.states = self.states | {_St("cmd")}
            return
        if self.dbr is not None and o in ("&&", "||"):
            self.dbr.append(o)
        self._stage_end(o not in ("|", "|&"))
        self.states = {_START}

    def open_paren(self) -> None:
        if self.in_pattern():
            return
        if self.dbr is not None:
            self.dbr.append("(")
        self.parens += 1
        self.groups.append(self.pipe)
        self.states = {_START}

    def close_paren(self) -> bool:
        if self.in_pattern():
            self.case[-1] = "body"
            self.states = {_START}
            return True
        if self.dbr is not None:
            self.dbr.append(")")
        if not self.parens:
            return False
        self.parens -= 1
        self._stage_end(False)
        if self.groups:
            self.pipe = self.groups.pop()
        self.states = {_START}
        return True

    def function_name(self) -> bool:
        """``name ()`` just ended: a function definition, whose body follows."""
        if self.last_name is None:
            return False
        self.sc.functions.add(self.last_name)
        self.states = {_START}
        return True

    def arith_command(self) -> None:
        self.states = {_START}

    def end(self) -> None:
        self._stage_end(True)
        if self.dbr is not None:
            self._dbracket()

    def _stage_end(self, boundary: bool) -> None:
        sc = self.sc
        if any(_reads_stdin(st) for st in self.states) or sc.feeds_code:
            if self.kind == "out":  # >(sh): whatever the outer command writes into it runs
                sc.feeds_code = True
            else:  # the pipeline so far, from where an earlier reading shell left off: linear in all
                m1 = len(sc.marks) if sc.feeds_code else self.stage
                sc.flag(sc.marks[max(self.pipe, self.done_m) : m1], PIPED)
                sc.flag(self.here, HERESTRING)
                sc.code_text(sc.s[max(self.pipe_at, self.done_at) : sc.i])
                self.done_at, self.done_m = sc.i, max(m1, self.done_m)
                for doc in self.heredocs:
                    doc.code = True
                sc.feeds_code = False
        for name in self.read_names:  # read takes the pipeline's and here-strings' values
            sc.links.setdefault(name, set()).update((f"#{self.pipe_at}", "#stdin"))
            self.pipe_read = True
        self.here, self.heredocs, self.read_names = [], [], []
        self.stage, self.stage_at = len(sc.marks), sc.i
        if boundary:
            if self.pipe_read:
                sc.assigns.append((f"#{self.pipe_at}", sc.marks[self.pipe : self.stage]))
            self.pipe, self.pipe_at, self.pipe_read = self.stage, self.stage_at, False

    def _dbracket(self) -> None:
        """bash's [[ ]]: operands beside arithmetic operators and after -v are evaluated."""
        sc, items = self.sc, self.dbr or []

        def at(k: int) -> _Word | None:
            it = items[k] if 0 <= k < len(items) else None
            return it if isinstance(it, _Word) else None

        for k, it in enumerate(items):
            if not isinstance(it, _Word):
                continue
            prev, nxt = at(k - 1), at(k + 1)
            if any(x is not None and x.plain and x.text in _ARITH_OPS for x in (prev, nxt)):
                sc.flag_word(it, DB_ARITH)
            elif prev is not None and prev.plain and prev.text in ("-v", "-R"):
                sc.flag_word(it, DB_V)
            elif it.m1 > it.m0 and any(x is not None and x.opword and x.m1 > x.m0 for x in (prev, nxt)):
                sc.flag_word(it, DB_NEXT)

    # -- the readings

    def _step(self, st: _St, w: _Word) -> set[_St]:
        sc, t, k, raw = self.sc, w.text, st.kind, self.sc.s[w.start : w.end]
        if st.fx and (t == ";" or (t == "+" and self.prev == "{}")):
            return {_St("find")}
        if k in ("inert", "forlist", "pvals", "fcall"):
            if k in ("forlist", "pvals"):
                self._set(st.name, raw, sc.marks[w.m0 : w.m1])
            elif k == "fcall":
                sc.calls.append((st.name, w))
                base = (t or "").rsplit("/", 1)[-1]
                if base in _PROGS and _PROGS[base].flag_code:  # docker exec c sh -c ..., nsenter ... sh -c
                    return {st, _St("prog", st.fx, base, xa=st.xa)}
            return {st}
        if k == "flag":
            sc.flag_word(w, st.name)
            return {st}
        if k in ("start", "cmd"):
            if k == "start" and w.plain and t in _KEYWORDS:
                return {st}
            if k == "start" and w.plain and t in ("for", "select", "function", "[["):
                return {replace(st, kind={"[[": "inert", "function": "fname"}.get(t, "for"))}
            return self._name(st.fx, w, shell=st.name != "argv")
        if k == "prog":
            return self._prog(st, w)
        if w.split:  # the special commands below read options or names from their arguments
            sc.flag(w.split, SPLIT)
        if k in ("let", "alias", "read"):
            sc.flag_word(w, {"let": LET, "alias": ALIAS, "read": READ}[k], target=k == "read")
            if k == "alias" and t and "=" in t:
                sc.aliases.add(t.split("=", 1)[0])
            if k == "read" and t and not t.startswith("-"):
                self.read_names.append(t)
            return {st}
        if k == "decl":
            return self._decl(st, w)
        if k == "export":
            if w.assign is not None:
                self._assignment(w)
            elif w.maybe_assign and w.named_assign:
                sc.flag_word(w, NAMED_ASSIGN)
            elif w.unq:
                sc.code_text(raw)  # export $x: x may hold BASH_ENV=...
            return {st}
        if k == "printf":  # options, until the format; name: the variable of the last -v (they repeat)
            if t == "-v":
                return {replace(st, kind="pname", code="v")}
            if t and t.startswith("-v"):
                return {replace(st, name=t[2:])}
            if t == "--":
                return {replace(st, kind="pvals")}
            if t is None and "".join(w.prefix).startswith("-"):  # -v{{x}}, or a value that makes it -vNAME
                sc.flag_word(w, PRINTF_V)
                return {st, replace(st, kind="pvals")}
            if w.first_open and (w.m1 > w.m0 or w.unq):  # a value that could be -v
                sc.code_text(raw)
                return {replace(st, kind="pname", code="a"), replace(st, kind="pvals")}
            return {replace(st, kind="pvals")}
        if k == "pname":
            sc.flag_word(w, PRINTF_V if st.code == "v" else PRINTF_AFTER, target=True)
            return {replace(st, kind="printf", name=t or "", code="")}
        if k == "test":
            if st.name:
                sc.flag_word(w, TEST_V)
            return {replace(st, name="v" if t in ("-v", "-R") else "open" if w.m1 > w.m0 or w.unq else "")}
        if k == "find":
            if t in ("-exec", "-execdir", "-ok", "-okdir"):
                return {_St("cmd", fx=True, name="argv")}
            if w.first_open and (w.m1 > w.m0 or w.unq):  # it could be -exec
                sc.code_text(raw)
                return {st, _St("cmd", fx=True, name="argv")}
            return {st}
        if k == "set":
            sc.pos_marks += sc.marks[w.m0 : w.m1]
            sc.pos_names |= _names(raw)
            return {st}
        if k == "for":
            return {replace(st, kind="forvar", name=t or "")}
        if k == "forvar":
            return {replace(st, kind="forlist" if t == "in" else "start" if t == "do" else "inert")}
        sc.functions.add(t or "")  # fname: function NAME { ...; }
        return {replace(st, kind="start")}

    def _name(self, fx: bool, w: _Word, shell: bool = True) -> set[_St]:
        """``w`` stands where a command name may: for the ``shell``, which may also read an assignment
        there, or in a program's argv (command NAME=x is a program called NAME=x)."""
        sc = self.sc
        if shell and w.assign is not None:
            self._assignment(w)
            return {_St("cmd", fx)}
        if shell and w.maybe_assign and w.named_assign:
            sc.flag_word(w, NAMED_ASSIGN)
        sc.flag(w.split, NAME_SPLIT)
        if w.unq or (w.tail_open and w.exp):  # $x, "$x" as a command: what x holds picks and splits it
            sc.code_text(sc.s[w.start : w.end])
        out = {_St("cmd", fx)} if shell and w.maybe_assign else set()
        name = "".join(w.tail)
        if w.tail_open:
            out.add(_St("flag", fx, NAMED))
        elif name in sc.aliases:
            out.add(_St("flag", fx, ALIASED))
        elif name in _RUNS_ARGS:
            out.add(_St("flag", fx, _RUNS_ARGS[name]))
        elif name in ("let", "alias", "read", "printf", "find", "test", "export", "set"):
            out.add(_St(name, fx))
        elif name in ("[", "readonly", "declare", "typeset", "local"):
            out.add(_St({"[": "test", "readonly": "export"}.get(name, "decl"), fx))
        elif name in _PROGS:
            out.add(_St("prog", fx, name, code="c" if _PROGS[name].script else ""))
        else:  # an ordinary program, unless a function of that name is defined, maybe later in a loop
            out.add(_St("fcall", fx, name))
        return out

    def _assignment(self, w: _Word) -> None:
        sc, raw = self.sc, self.sc.s[w.start : w.end]
        sc.flag(sc.marks[w.sub_m[0] : w.sub_m[1]], SUBSCRIPT)
        if w.has_sub:
            sc.code_text(raw[raw.find("[") + 1 : raw.find("]")])
        self._set(w.assign or "", raw, sc.marks[w.eq_m : w.m1] if w.eq_m >= 0 else [])

    def _set(self, name: str, raw: str, value: list[int]) -> None:
        sc = self.sc
        if name in _CODE_VARS or name.startswith("BASH_FUNC_"):
            sc.flag(value, f"assigned to {name} (the shell or a program runs or expands it as code)")
        if value:
            sc.assigns.append((name, value))
        sc.links.setdefault(name, set()).update(_names(raw))

    def _decl(self, st: _St, w: _Word) -> set[_St]:
        sc, t = self.sc, w.text
        if t and len(t) > 1 and t[0] in "-+":
            return {replace(st, code="i")} if "i" in t or "n" in t else {st}
        if w.assign is not None:
            if st.code == "i":
                sc.flag(sc.marks[w.eq_m : w.m1], DECL_VALUE)
                sc.int_names.add(w.assign)
                sc.code_text(sc.s[w.start : w.end])
            self._assignment(w)
        elif w.m1 > w.m0 or w.unq:
            sc.flag_word(w, DECL_NAME)
            return {replace(st, code="i")}  # it could have been -i
        elif t and st.code == "i":
            sc.int_names.add(t)
        return {st}

    def _prog(self, st: _St, w: _Word) -> set[_St]:
        spec, t = _PROGS[st.name], w.text
        if w.split and (st.phase == 0 or spec.permutes):
            self.sc.flag(w.split, SPLIT)
        if st.pending == "arg":
            return {replace(st, pending="")}
        if st.pending == "code":
            self.sc.flag_word(w, spec.why)
            return {replace(st, pending="")}
        if st.phase == 0:
            if t == "--" or (spec.plus and t in ("-", "+")):  # a lone - or + ends a shell's options too
                return {replace(st, phase=1)}
            opt = t if t is not None else "".join(w.prefix)
            if st.name == "tar" and st.nops == 0 and opt[:1] not in ("-", "") and not w.first_open:
                opt, t = "-" + opt, None if t is None else "-" + t  # tar xzf: options without the dash
            if (opt[:1] == "-" or (opt[:1] == "+" and spec.plus)) and (t is None or len(t) > 1):
                return self._option(st, spec, w, opt, complete=t is not None)
            if w.first_open:
                return self._maybe_option(st, spec, w)
        return self._operand(st, spec, w)

    def _option(self, st: _St, spec: _Prog, w: _Word, opt: str, complete: bool) -> set[_St]:
        sc, code, rest = self.sc, st.code, False
        if opt.startswith("--"):
            name, eq, _ = opt[2:].partition("=")
            if not (complete or eq):
                return self._maybe_option(st, spec, w)
            if name in spec.long_code:
                if eq:
                    sc.flag_word(w, spec.why)
                    return {st}
                return {replace(st, pending="code")}
            if name in spec.long_rest:
                return {_St("flag", st.fx, SUDO_SHELL)}
            if st.name == "xargs" and name == "replace":
                code = "I"
            return {replace(st, pending="arg" if name in spec.long_arg and not eq else "", code=code)}
        cluster = opt[1:]
        for j, c in enumerate(cluster):
            attached = j + 1 < len(cluster) or not complete
            if c in spec.script_opts:
                code = ""
            if c in spec.code:
                if attached:
                    sc.flag_word(w, spec.why)
                    return {replace(st, code=code)}
                return {replace(st, pending="code", code=code)}
            if st.name == "xargs" and c in "Ii":
                code = "I"
            if c in spec.arg:
                return {replace(st, pending="" if attached else "arg", code=code)}
            if c in spec.flag_code and opt[0] == "-":
                code = "c"
            elif c in spec.stdin_flag and code != "c":
                code = "s"
            rest = rest or c in spec.rest
        if rest:
            return {_St("flag", st.fx, SUDO_SHELL)}
        if not complete:
            return self._maybe_option(replace(st, code=code), spec, w)
        return {replace(st, code=code)}

    def _maybe_option(self, st: _St, spec: _Prog, w: _Word) -> set[_St]:
        """A value or expansion where options are read: it may be any option, or an operand."""
        sc = self.sc
        sc.code_text(sc.s[w.start : w.end])
        out = self._operand(st, spec, w)
        out.add(replace(st, code="v" if spec.flag_code and st.code != "c" else st.code))
        if spec.arg or spec.long_arg:
            out.add(replace(st, pending="arg"))
        if spec.code or spec.long_code:
            sc.flag_word(
                w,
                f"where {st.name} reads options (a value there can be an option that runs code; "
                "write -- before it)",
            )
            out.add(replace(st, pending="code"))
        if spec.rest or spec.long_rest:
            out.add(_St("flag", st.fx, SUDO_SHELL))
        return out

    def _operand(self, st: _St, spec: _Prog, w: _Word) -> set[_St]:
        sc, t, k = self.sc, w.text, st.nops
        if spec.assigns and w.assign is not None:
            self._assignment(w)
            return {st}
        if spec.assigns and w.maybe_assign and w.named_assign:
            sc.flag_word(w, NAMED_ASSIGN)
        phase = st.phase if spec.permutes else 1
        if st.code == "P":
            sc.flag_word(w, f"an argument that the script of {st.name} -c runs as code (through $1 or $@)")
            return {replace(st, nops=min(k + 1, 2))}
        if st.code == "s" and spec.stdin:  # sh -s ARGS: the piped script's $1 ...
            sc.pos_marks += sc.marks[w.m0 : w.m1]
            sc.pos_names |= _names(sc.s[w.start : w.end])
        if k == 0 and st.code in ("c", "v") and (spec.flag_code or spec.script):
            if spec.script:
                why = spec.why
            elif st.code == "c":
                why = f"the script of {st.name} -c (it would run as code)"
            else:
                why = (
                    f"an argument of {st.name} after a value that could be -c (it would run as code; "
                    "write -- before that value)"
                )
            sc.flag_word(w, why)
            args_code = bool(spec.flag_code) and self._runs_positional(w)
            return {replace(st, nops=1, phase=phase, code="P" if args_code else st.code)}
        if 0 <= spec.before <= k:
            if spec.after != "cmd":
                sc.flag_word(w, spec.after)
                return {_St("flag", st.fx, spec.after)}
            if t is not None and t[:1] == "-" and t[1:] and t[1:] in spec.code:  # flock FILE -c CMD
                return {replace(st, pending="code")}
            xa = st.xa or ({"I": "I"}.get(st.code, "x") if st.name == "xargs" else "")
            return {replace(s, xa=xa) for s in self._name(st.fx, w, shell=False)}
        if k == 0 and spec.stdin and t == "-":
            return {replace(st, code="s", nops=1, phase=phase)}
        if k == 0 and spec.stdin and not st.code:
            sc.flag(w.split, f"inside $(...) or <(...) naming the script {st.name} runs (its output is code)")
        return {replace(st, nops=min(k + 1, 2), phase=phase)}

    def _runs_positional(self, w: _Word) -> bool:
        """Does the script of sh -c SCRIPT run $1 or $@ as code? Scanned once, not recursively."""
        t = w.text
        if t is None or self.sc.inner:
            return _positional(self.sc.s[w.start : w.end])
        if w.start not in self.positional:
            inner = _Scan(t, inner=True)
            try:
                inner.run()
            except Exception:
                inner.pos_code = True
            self.positional[w.start] = inner.pos_code
        return self.positional[w.start]


def _reads_stdin(st: _St) -> bool:
    """Does this reading run its stdin as code (sh, bash -s, python with no script; xargs handing its input to
    eval, to sh -c as the script, or to a script that runs $1)?"""
    if st.xa and st.kind == "flag":
        return True
    if st.kind != "prog":
        return False
    if st.xa and (
        st.pending == "code" or st.code == "P" or (st.code in ("c", "v") and (not st.nops or st.xa == "I"))
    ):
        return True
    return _PROGS[st.name].stdin and (st.code == "s" or (st.nops == 0 and st.code in ("", "v")))
