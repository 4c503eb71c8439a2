#!/usr/bin/env python3
"""Import cycles among a crate's modules, from its `use` lines.

    scripts/module_cycles.py crates/ragd-server crates/ragd-service ...

Each source file is a module (`a/b.rs` and `a/b/mod.rs` are `a::b`). An
edge A -> B is a path in A's non-test code (`use crate::b::...`,
`crate::b::f()`, `super::...`, or a child module named in a `use`) that
resolves to module B or an item in it; a parent's `mod child;` line is
not an edge (containment), but its `pub use child::X` is. Prints every
strongly connected component of more than one module and exits 1 if there
is one. Written because cargo-modules needs a nightly-only rust-analyzer
build here; it reads the same `use` graph, less precisely (macros, glob
imports of items, and `self::` paths are taken at face value).
"""
import re
import sys
from pathlib import Path

PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP = re.compile(r"\buse\s+(crate|super|self)?((?:::)?[A-Za-z_][A-Za-z0-9_:]*)::\{([^;]*)\};", re.S)


def modules(src: Path) -> dict:
    out = {}
    for f in src.rglob("*.rs"):
        rel = f.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "mod" or (len(parts) == 1 and parts[0] in ("lib", "main")):
            parts = parts[:-1]
        out[tuple(parts)] = f
    return out


def strip(text: str) -> str:
    text = text.split("#[cfg(test)]", 1)[0]
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r"/\*.*?\*/", "", text, flags=re.S)


def resolve(mods, here, anchor, segs):
    if anchor == "crate":
        base = []
    elif anchor == "super":
        base = list(here[:-1])
    else:
        base = list(here)
    while segs and segs[0] == "super":
        base, segs = base[:-1], segs[1:]
    path = tuple(base + segs)
    while path and path not in mods:
        path = path[:-1]
    return path


def edges(mods):
    graph = {m: set() for m in mods}
    for m, f in mods.items():
        text = strip(f.read_text())
        found = []
        for anchor, rest in PATH.findall(text):
            found.append((anchor, [s for s in rest.split("::") if s]))
        for anchor, prefix, group in USE_GROUP.findall(text):
            segs = [s for s in prefix.split("::") if s]
            for item in re.split(r"[,\s]+", group):
                item = item.split("::")[0].strip("{} ")
                if item and item != "self":
                    found.append((anchor or "self", segs + [item]))
        # `use child::X` / `pub use child::X` in a parent module.
        for child in re.findall(r"\buse\s+([a-z_][a-z0-9_]*)::", text):
            if m + (child,) in mods:
                found.append(("self", [child]))
        for anchor, segs in found:
            target = resolve(mods, m, anchor, segs)
            if target != m and target in mods and not (target == () and anchor == "crate" and not segs):
                graph[m].add(target)
    return graph


def cycles(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
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
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def main():
    bad = False
    for crate in sys.argv[1:]:
        mods = modules(Path(crate) / "src")
        graph = edges(mods)
        found = cycles(graph)
        n = sum(len(e) for e in graph.values())
        name = lambda m: "::".join(m) or "crate"
        if found:
            bad = True
            for comp in found:
                print(f"{crate}: cycle among {sorted(name(m) for m in comp)}")
        else:
            print(f"{crate}: {len(mods)} modules, {n} edges, no cycle")
    sys.exit(1 if bad else 0)


main()
