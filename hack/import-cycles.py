#!/usr/bin/env python3
"""Finds import circles in the crate under src/: between files, and between top-level modules.

A file imports another when it names an item of it through `crate::` or `super::` (in `use`
trees and in paths in code). Re-exports (`pub use` in a module file) are followed to where the
item lives, so `template::Template` counts as an import of template/spec.rs, not template/mod.rs.
Unit-test modules (`#[cfg(test)] mod tests` at the end of a file) are left out: tests may look
anywhere. `make test` runs this; it prints each circle and exits 1 when there is one.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src"
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def module_of(path: Path) -> tuple:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts in (["lib"], ["main"]):
        return (parts[0],)
    if parts[-1] == "mod":
        parts = parts[:-1]
    return tuple(parts)


def strip_tests_and_comments(text: str) -> str:
    cut = re.search(r"^#\[cfg\(test\)\]\s*\n(pub(\(crate\))? )?mod tests", text, re.M)
    if cut:
        text = text[: cut.start()]
    return re.sub(r"//[^\n]*", "", text)


def expand_use_tree(tree: str) -> list:
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = re.sub(r"\s+", "", tree)

    def parse(s, i, prefix):
        out, cur = [], ""
        while i < len(s):
            ch = s[i]
            if ch == "{":
                inner, i = parse(s, i + 1, prefix + cur)
                out.extend(inner)
                cur = None
            elif ch == "}":
                if cur:
                    out.append(prefix + cur)
                return out, i + 1
            elif ch == ",":
                if cur:
                    out.append(prefix + cur)
                cur = ""
                i += 1
                continue
            else:
                cur = (cur or "") + ch
            if ch != "{":
                i += 1
        if cur:
            out.append(prefix + cur)
        return out, i

    paths, _ = parse(tree, 0, "")
    return [re.sub(r"\bas" + IDENT + "$", "", p) for p in paths]


FILES = set()


def main() -> int:
    files = {module_of(p): p for p in ROOT.rglob("*.rs")}
    FILES.update(files)
    texts = {m: strip_tests_and_comments(p.read_text()) for m, p in files.items()}

    # Re-exports: (module, name) -> absolute path of what it names.
    reexports = {}
    for mod, text in texts.items():
        for m in re.finditer(r"pub(?:\([a-z]+\))?\s+use\s+([^;]+);", text):
            for path in expand_use_tree(m.group(1)):
                absolute = absolutize(mod, path.split("::"))
                if absolute:
                    reexports[(mod, absolute[-1])] = absolute

    def resolve(segments, depth=0):
        """The file module an absolute path's item lives in."""
        for n in range(len(segments), 0, -1):
            mod = tuple(segments[:n])
            if mod in files:
                rest = segments[n:]
                if rest and (mod, rest[0]) in reexports and depth < 10:
                    target = reexports[(mod, rest[0])]
                    return resolve(list(target) + rest[1:], depth + 1)
                return mod
        return None

    edges = {m: set() for m in files}
    for mod, text in texts.items():
        paths = []
        for m in re.finditer(r"\buse\s+([^;]+);", text):
            paths += expand_use_tree(m.group(1))
        paths += re.findall(r"\b(?:crate|super)(?:::" + IDENT + ")+", text)
        # Paths into a child module written in code (`jobs::launch(...)` in cli/mod.rs).
        here = list(mod) if mod not in (("lib",), ("main",)) else []
        for path in re.findall(r"(?<![:\w])" + IDENT + "(?:::" + IDENT + ")+", text):
            if tuple(here + path.split("::")[:1]) in files:
                paths.append(path)
        for path in paths:
            absolute = absolutize(mod, path.split("::"))
            if not absolute:
                continue
            target = resolve(list(absolute))
            if target and target != mod:
                edges[mod].add(target)

    failed = False
    for label, graph in (("files", edges), ("top-level modules", top_level(edges))):
        for cycle in strongly_connected(graph):
            if len(cycle) > 1:
                failed = True
                print(f"import circle among {label}: " + " <-> ".join("::".join(c) for c in sorted(cycle)))
    if not failed:
        print(f"no import circles among {len(files)} files")
    return 1 if failed else 0


def absolutize(mod, segments):
    """An absolute module path for `crate::`/`super::`/`self::` paths and paths into a child module
    (`use args::X;` in cli/mod.rs); None for external crates."""
    here = list(mod) if mod not in (("lib",), ("main",)) else []
    if tuple(here + segments[:1]) in FILES:
        return tuple(here + segments)
    if segments[0] == "crate":
        return tuple(segments[1:])
    if segments[0] in ("super", "self"):
        base = list(here)
        # A non-mod.rs file's `super` is its parent; `self` is itself.
        while segments and segments[0] in ("super", "self"):
            if segments[0] == "super":
                base = base[:-1]
            segments = segments[1:]
        return tuple(base + segments)
    return None


def top_level(edges):
    graph = {}
    for src, targets in edges.items():
        a = src[:1]
        graph.setdefault(a, set())
        for t in targets:
            if t[:1] != a:
                graph[a].add(t[:1])
    return graph


def strongly_connected(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    sys.exit(main())
