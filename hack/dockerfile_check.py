#!/usr/bin/env python3
"""Checks the Dockerfile against the repository, so that it cannot rot while nobody builds it.

There is no container engine on the development machines; this reads the Dockerfile as the builder
would and fails (exit 1, one line per problem) when:

  - a COPY source (not --from another stage) does not exist in the repository, or .dockerignore
    leaves it out of the build context;
  - a file the crate includes (include_str!/include_bytes! under src/) is not copied to the same
    place in the build stage;
  - a $VARIABLE is used where no ARG (or ENV) declares it: a global ARG outside FROM lines needs
    re-declaring in its stage, and a RUN's uppercase variables must be declared too;
  - the header's "Build arguments" list and the declared ARGs differ;
  - the dependency layer's stand-in targets (`for stub in ...`) are not exactly the targets
    Cargo.toml declares ([[bin]], [lib] or src/lib.rs, [[bench]], [[test]], [[example]]), a
    stand-in the sources overwrite is not touched before the real build (or a touched path is
    no target), or `--bin` names no [[bin]];
  - the defaults disagree with Cargo.toml: CARGO_PROFILE (a profile it has), VERSION (its
    version), LICENSES (its license), BUILD_IMAGE (a rust image at least its rust-version);
  - a BuildKit cache mount lacks sharing=locked, or the ENTRYPOINT is not the bare binary in exec
    form (`serve` belongs to the chart's args, so that `docker run IMAGE launch ...` is the CLI).

Usage: hack/dockerfile_check.py [--self-test] [REPO_ROOT]
--self-test also breaks a copy of the Dockerfile in each of those ways and fails unless every
breakage is reported: the checks themselves cannot go quiet.
"""

from __future__ import annotations

import fnmatch
import glob
import json
import os
import re
import shlex
import sys
import tomllib
from dataclasses import dataclass, field

# Variables a RUN may use without an ARG: set by the shell or by the base images.
SHELL_VARIABLES = {"PATH", "HOME", "PWD", "IFS", "CARGO_HOME", "RUSTUP_HOME"}


@dataclass
class Instruction:
    line: int
    keyword: str
    args: str
    stage: int  # -1: before the first FROM


@dataclass
class Dockerfile:
    header: list[str] = field(default_factory=list)
    instructions: list[Instruction] = field(default_factory=list)


def parse(text: str) -> Dockerfile:
    """Instructions with their continuation lines joined and comment lines dropped, as the builder
    reads them; the leading comment block is the header."""
    result = Dockerfile()
    lines = text.split("\n")
    in_header = True
    stage = -1
    i = 0
    while i < len(lines):
        raw = lines[i]
        stripped = raw.strip()
        if in_header and (stripped.startswith("#") or not stripped):
            result.header.append(raw)
            i += 1
            continue
        in_header = False
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        start = i
        parts = []
        current = raw
        while True:
            body = current.rstrip()
            if body.endswith("\\"):
                parts.append(body[:-1])
                i += 1
                # Comment lines inside an instruction are dropped by the builder.
                while i < len(lines) and lines[i].strip().startswith("#"):
                    i += 1
                if i >= len(lines):
                    break
                current = lines[i]
            else:
                parts.append(body)
                i += 1
                break
        joined = " ".join(p.strip() for p in parts)
        keyword, _, args = joined.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        result.instructions.append(Instruction(start + 1, keyword, args.strip(), stage))
    return result


def header_build_args(header: list[str]) -> set[str]:
    """The names listed under "# Build arguments" in the header, up to the next empty comment."""
    names: set[str] = set()
    inside = False
    for line in header:
        if re.match(r"^#\s*Build arguments\b", line):
            inside = True
            continue
        if inside:
            if line.strip() in ("#", ""):
                break
            m = re.match(r"^#\s{1,4}([A-Z][A-Z0-9_]+)\s{2,}\S", line)
            if m:
                names.add(m.group(1))
    return names


def split_options(args: str) -> tuple[list[str], list[str]]:
    """(--options, the rest) of an instruction's arguments; the JSON form of COPY too."""
    options = []
    rest = args
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        options.append(option)
        rest = rest.lstrip()
    if rest.startswith("["):
        words = json.loads(rest)
    else:
        words = shlex.split(rest)
    return options, words


VAR_RE = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|([A-Za-z_][A-Za-z0-9_]*))")


def variables(text: str) -> set[str]:
    return {m.group(1) or m.group(2) for m in VAR_RE.finditer(text)}


def shell_assigned(script: str) -> set[str]:
    names = set(re.findall(r"\bfor\s+([A-Za-z_][A-Za-z0-9_]*)\s+in\b", script))
    names |= set(re.findall(r"(?:^|[;&|\s(])(?:export\s+|local\s+)?([A-Za-z_][A-Za-z0-9_]*)=", script))
    names |= set(re.findall(r"\bread\s+(?:-r\s+)?([A-Za-z_][A-Za-z0-9_ ]*)", script))
    return {n for group in names for n in group.split()}


def dockerignore_patterns(root: str) -> list[tuple[bool, str]]:
    path = os.path.join(root, ".dockerignore")
    patterns = []
    if os.path.exists(path):
        for line in open(path, encoding="utf-8"):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pattern = line[1:] if negate else line
            patterns.append((negate, os.path.normpath(pattern.strip("/"))))
    return patterns


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match plus `**`) as a regex over slash paths."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[" and "]" in pattern[i:]:
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1].replace("[!", "[^"), end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile("^" + out + "$")


def ignored(path: str, patterns: list[tuple[bool, str]]) -> bool:
    """Whether .dockerignore leaves PATH (relative, no leading ./) out of the context: the last
    matching pattern wins; a pattern matching a parent directory excludes what is inside it."""
    result = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for negate, pattern in patterns:
        regex = pattern_regex(pattern)
        if any(regex.match(p) for p in prefixes):
            result = not negate
    return result


def cargo_targets(root: str, manifest: dict) -> tuple[set[str], set[str]]:
    """(target source paths cargo needs to exist, [[bin]] names)."""
    package = manifest.get("package", {})
    paths: set[str] = set()
    bins: set[str] = set()
    for target in manifest.get("bin", []):
        name = target.get("name", package.get("name"))
        bins.add(name)
        default = "src/main.rs" if name == package.get("name") else f"src/bin/{name}.rs"
        paths.add(target.get("path", default))
    if not manifest.get("bin") and os.path.exists(os.path.join(root, "src/main.rs")):
        bins.add(package.get("name"))
        paths.add("src/main.rs")
    if "lib" in manifest:
        paths.add(manifest["lib"].get("path", "src/lib.rs"))
    elif os.path.exists(os.path.join(root, "src/lib.rs")):
        paths.add("src/lib.rs")
    for kind, folder in (("bench", "benches"), ("test", "tests"), ("example", "examples")):
        for target in manifest.get(kind, []):
            paths.add(target.get("path", f"{folder}/{target['name']}.rs"))
    return paths, bins


def included_files(root: str) -> set[str]:
    """Files the crate's sources include at compile time, relative to the repository."""
    found = set()
    for path in glob.glob(os.path.join(root, "src/**/*.rs"), recursive=True):
        text = open(path, encoding="utf-8").read()
        for m in re.finditer(r'include_(?:str|bytes)!\(\s*"([^"]+)"\s*\)', text):
            target = os.path.normpath(os.path.join(os.path.dirname(path), m.group(1)))
            found.add(os.path.relpath(target, root))
    return found


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


def check(root: str, text: str) -> list[str]:
    problems: list[str] = []
    df = parse(text)
    manifest = tomllib.load(open(os.path.join(root, "Cargo.toml"), "rb"))
    package = manifest.get("package", {})
    patterns = dockerignore_patterns(root)

    # ARG scopes.
    global_args: dict[str, str | None] = {}
    declared: set[str] = set()
    stage_scope: dict[int, set[str]] = {}
    stage_names: dict[str, int] = {}
    defaults: dict[str, str | None] = {}
    workdir = {}
    copies: list[tuple[Instruction, list[str], str]] = []
    for ins in df.instructions:
        scope = stage_scope.setdefault(ins.stage, set())
        if ins.keyword == "ARG":
            for word in shlex.split(ins.args):
                name, eq, value = word.partition("=")
                declared.add(name)
                if ins.stage < 0:
                    global_args[name] = value if eq else None
                    defaults[name] = value if eq else None
                else:
                    scope.add(name)
                    if eq:
                        defaults.setdefault(name, value)
                    elif name in global_args:
                        defaults.setdefault(name, global_args[name])
                    else:
                        defaults.setdefault(name, None)
            continue
        if ins.keyword == "ENV":
            for word in shlex.split(ins.args):
                scope.add(word.partition("=")[0])
            continue
        if ins.keyword == "FROM":
            m = re.search(r"\bAS\s+(\S+)", ins.args, re.IGNORECASE)
            if m:
                stage_names[m.group(1)] = ins.stage
            for name in variables(ins.args):
                if name not in global_args:
                    problems.append(f"Dockerfile:{ins.line}: FROM uses ${name}, which no ARG before the first FROM declares")
            continue
        if ins.keyword == "WORKDIR":
            workdir[ins.stage] = ins.args
        used = variables(ins.args)
        allowed = set(scope)
        if ins.keyword == "RUN":
            # The shell expands a RUN's variables: its own (assigned in the script, or lowercase by
            # this repository's habit) are fine; an uppercase one must be an ARG or ENV.
            script = re.sub(r"--mount=\S+", "", ins.args)
            allowed |= shell_assigned(script) | SHELL_VARIABLES
            used = {u for u in variables(script) if u.upper() == u}
            for mount in re.findall(r"--mount=(\S+)", ins.args):
                if "type=cache" in mount and "sharing=locked" not in mount:
                    problems.append(f"Dockerfile:{ins.line}: a cache mount without sharing=locked ({mount})")
        for name in sorted(used):
            if name not in allowed:
                where = " (a global ARG: declare it again inside the stage)" if name in global_args else ""
                problems.append(f"Dockerfile:{ins.line}: {ins.keyword} uses ${name}, which no ARG or ENV of its stage declares{where}")
        if ins.keyword in ("COPY", "ADD"):
            options, words = split_options(ins.args)
            if any(o.startswith("--from=") for o in options):
                continue
            if len(words) < 2:
                problems.append(f"Dockerfile:{ins.line}: {ins.keyword} needs a source and a destination")
                continue
            sources, dest = words[:-1], words[-1]
            copies.append((ins, sources, dest))
            for source in sources:
                normalized = os.path.normpath(source)
                if normalized.startswith(".."):
                    problems.append(f"Dockerfile:{ins.line}: {source} is outside the build context")
                    continue
                matches = glob.glob(os.path.join(root, normalized))
                if not matches:
                    problems.append(f"Dockerfile:{ins.line}: COPY source {source} does not exist in the repository")
                    continue
                for match in matches:
                    relative = os.path.relpath(match, root)
                    if relative != "." and ignored(relative, patterns):
                        problems.append(f"Dockerfile:{ins.line}: COPY source {relative} is excluded by .dockerignore")
        if ins.keyword == "ENTRYPOINT":
            try:
                entry = json.loads(ins.args)
            except json.JSONDecodeError:
                problems.append(f"Dockerfile:{ins.line}: ENTRYPOINT must be in exec (JSON) form")
                continue
            if "serve" in entry:
                problems.append(f"Dockerfile:{ins.line}: ENTRYPOINT names `serve`: the bare binary is the entrypoint, the chart passes `serve`")

    # The header's build arguments.
    documented = header_build_args(df.header)
    if not documented:
        problems.append("Dockerfile: the header has no \"# Build arguments\" list")
    for name in sorted(documented - declared):
        problems.append(f"Dockerfile: the header documents the build argument {name}, which no ARG declares")
    for name in sorted(declared - documented):
        problems.append(f"Dockerfile: ARG {name} is not documented in the header's \"Build arguments\" list")

    # Where COPY puts repository files, relative to the stage's WORKDIR: each include must land at
    # its own path in a stage that builds.
    build_stage = stage_names.get("build", 0)
    placed: list[tuple[str, str]] = []
    for ins, sources, dest in copies:
        if ins.stage != build_stage:
            continue
        base = dest.rstrip("/") if dest not in ("./", ".") else "."
        for source in sources:
            normalized = os.path.normpath(source)
            if os.path.isdir(os.path.join(root, normalized)):
                placed.append((normalized, os.path.normpath(base)))
            else:
                target = os.path.normpath(os.path.join(base, os.path.basename(normalized))) if (len(sources) > 1 or dest.endswith("/")) else os.path.normpath(base)
                placed.append((normalized, target))
    for include in sorted(included_files(root)):
        ok = False
        for source, target in placed:
            if include == source or include.startswith(source + "/"):
                landed = os.path.normpath(target + include[len(source):])
                ok = ok or landed == include
        if not ok:
            problems.append(f"Dockerfile: src/ includes {include} (include_str!/include_bytes!), which no COPY of the build stage puts at ./{include}")

    # The dependency layer's stand-ins.
    targets, bins = cargo_targets(root, manifest)
    stubs: list[str] = []
    stub_line = None
    touched: set[str] = set()
    for ins in df.instructions:
        if ins.keyword != "RUN":
            continue
        m = re.search(r"\bfor\s+stub\s+in\s+([^;]+);", ins.args)
        if m:
            stubs = m.group(1).split()
            stub_line = ins
        elif stub_line is not None:
            for t in re.findall(r"\btouch\s+([^&;|]+)", ins.args):
                touched |= set(t.split())
        for name in re.findall(r"--bin\s+(\S+)", ins.args):
            if name.strip("\"'") not in bins:
                problems.append(f"Dockerfile:{ins.line}: --bin {name} is no [[bin]] of Cargo.toml ({', '.join(sorted(bins))})")
    if stub_line is None:
        problems.append("Dockerfile: no dependency layer (a RUN with `for stub in PATHS; do ...`)")
    else:
        for path in sorted(targets - set(stubs)):
            problems.append(f"Dockerfile:{stub_line.line}: Cargo.toml's target {path} has no stand-in in `for stub in`")
        for path in sorted(set(stubs) - targets):
            problems.append(f"Dockerfile:{stub_line.line}: the stand-in {path} is no target of Cargo.toml")
        copied_sources = [source for _, sources, _ in copies for source in sources]
        for path in sorted(set(stubs) & targets):
            overwritten = any(path == os.path.normpath(s) or path.startswith(os.path.normpath(s) + "/") for s in copied_sources)
            if overwritten and path not in touched:
                problems.append(f"Dockerfile: the stand-in {path} is overwritten by COPY but not touched before the real build (cargo would keep the stand-in's build)")
        for path in sorted(touched - targets):
            problems.append(f"Dockerfile: `touch {path}` names no target of Cargo.toml (it would create an empty file)")

    # Defaults that must agree with Cargo.toml.
    profiles = {"dev", "release", "test", "bench"} | set(manifest.get("profile", {}))
    profile = defaults.get("CARGO_PROFILE")
    if profile is not None and profile not in profiles:
        problems.append(f"Dockerfile: CARGO_PROFILE defaults to {profile}, which is no profile of Cargo.toml ({', '.join(sorted(profiles))})")
    if "VERSION" in defaults and defaults["VERSION"] != package.get("version"):
        problems.append(f"Dockerfile: VERSION defaults to {defaults['VERSION']!r}, Cargo.toml's version is {package.get('version')!r}")
    if "LICENSES" in defaults and defaults["LICENSES"] != package.get("license"):
        problems.append(f"Dockerfile: LICENSES defaults to {defaults['LICENSES']!r}, Cargo.toml's license is {package.get('license')!r}")
    build_image = defaults.get("BUILD_IMAGE") or ""
    m = re.match(r"^(?:[^/]+/)*rust:(\d+\.\d+(?:\.\d+)?)", build_image)
    if not m:
        problems.append(f"Dockerfile: BUILD_IMAGE defaults to {build_image!r}, not a rust:<version> image")
    elif package.get("rust-version") and version_tuple(m.group(1)) < version_tuple(package["rust-version"]):
        problems.append(f"Dockerfile: BUILD_IMAGE {build_image} is older than Cargo.toml's rust-version {package['rust-version']}")
    return problems


def self_test(root: str, text: str) -> list[str]:
    """Breaks the Dockerfile in each way the checks look for; every breakage must be reported."""
    cases = [
        ("a COPY source that does not exist", lambda t: t.replace("COPY docs ./docs", "COPY documentation ./docs", 1), "does not exist"),
        ("a COPY source excluded by .dockerignore", lambda t: t.replace("COPY docs ./docs", "COPY docs ./docs\nCOPY hack/lib.sh ./hack/lib.sh", 1), "excluded by .dockerignore"),
        ("an include that is not copied", lambda t: t.replace("COPY docs ./docs\n", "", 1), "include_str!"),
        ("an ARG used but not declared", lambda t: t.replace('cargo build --profile "${CARGO_PROFILE}"', 'cargo build --profile "${CARGO_PROFILE}" --jobs "${CARGO_JOBS}"', 1), "$CARGO_JOBS"),
        ("a global ARG used inside a stage", lambda t: t.replace("\nARG RUNTIME_IMAGE\n", "\n", 1), "declare it again"),
        ("a documented build arg that is not declared", lambda t: re.sub(r"\nARG REVISION=\n", "\n", t, count=1).replace('org.opencontainers.image.revision="${REVISION}" \\\n', "", 1), "documents the build argument REVISION"),
        ("a declared ARG that is not documented", lambda t: t.replace("ARG LICENSES=Apache-2.0", "ARG LICENSES=Apache-2.0\nARG EXTRA=1", 1), "ARG EXTRA is not documented"),
        ("a stand-in missing", lambda t: t.replace("for stub in src/main.rs src/lib.rs benches/launcher/main.rs;", "for stub in src/main.rs src/lib.rs;", 1), "has no stand-in"),
        ("a stand-in that is no target", lambda t: t.replace("for stub in src/main.rs src/lib.rs", "for stub in src/main.rs src/lib.rs src/bin/extra.rs", 1), "is no target"),
        ("a stand-in not touched", lambda t: t.replace("touch src/main.rs src/lib.rs", "touch src/main.rs", 1), "not touched"),
        ("a touch of no target", lambda t: t.replace("touch src/main.rs src/lib.rs", "touch src/main.rs src/lib.rs src/bin/gone.rs", 1), "names no target"),
        ("a cache mount without sharing=locked", lambda t: t.replace("target=/usr/local/cargo/git/db,sharing=locked", "target=/usr/local/cargo/git/db", 1), "sharing=locked"),
        ("serve in the ENTRYPOINT", lambda t: t.replace('ENTRYPOINT ["/usr/local/bin/kube-job-launcher"]', 'ENTRYPOINT ["/usr/local/bin/kube-job-launcher", "serve"]', 1), "ENTRYPOINT names `serve`"),
        ("a VERSION default that is not Cargo.toml's", lambda t: t.replace("ARG VERSION=", "ARG VERSION=9", 1), "VERSION defaults to"),
        ("an unknown CARGO_PROFILE default", lambda t: t.replace("ARG CARGO_PROFILE=release", "ARG CARGO_PROFILE=fast", 1), "no profile of Cargo.toml"),
        ("a --bin that is no [[bin]]", lambda t: t.replace("--bin kube-job-launcher", "--bin launcher", 1), "no [[bin]]"),
    ]
    failures = []
    for what, mutate, expected in cases:
        broken = mutate(text)
        if broken == text:
            failures.append(f"self-test: could not break the Dockerfile for {what!r} (the text it edits changed: update the self-test)")
            continue
        problems = check(root, broken)
        if not any(expected in p for p in problems):
            failures.append(f"self-test: {what} was not reported (expected a problem containing {expected!r}; got {problems})")
    return failures


def main(argv: list[str]) -> int:
    run_self_test = "--self-test" in argv
    args = [a for a in argv if a != "--self-test"]
    root = os.path.abspath(args[0] if args else os.path.join(os.path.dirname(__file__), ".."))
    text = open(os.path.join(root, "Dockerfile"), encoding="utf-8").read()
    problems = check(root, text)
    if run_self_test and not problems:
        problems = self_test(root, text)
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f"dockerfile-check: the Dockerfile agrees with the repository{' (and each of the self-test breakages was caught)' if run_self_test else ''}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
