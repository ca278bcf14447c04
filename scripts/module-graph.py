#!/usr/bin/env python3
"""Prints the `use crate::` graph between hybrid's modules and fails on a cycle.

Every file under src/ is a module (`src/a/b.rs` and `src/a/b/mod.rs` are
`a::b`). An edge M -> N means M names N through `crate::`, `super::` or
`self::` paths outside its `#[cfg(test)]` section. A cycle is two or more
modules that reach each other; `--dot` prints the graph for Graphviz.
Run by the test suite (tests/it/architecture.rs) and by hand."""
import os, pathlib, re, sys

ROOT = pathlib.Path(os.environ.get("HYBRID_SRC") or pathlib.Path(__file__).resolve().parent.parent / "src")


def module_of(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    if parts in (["lib"], ["main"]):
        return "crate"
    return "::".join(parts)


def graph():
    files = {module_of(p): p for p in ROOT.rglob("*.rs")}
    modules = set(files)
    edges = {m: set() for m in modules}
    for m, path in files.items():
        code = path.read_text().split("#[cfg(test)]")[0]
        code = re.sub(r"//[^\n]*", "", code)
        base = [] if m == "crate" else m.split("::")
        for root, rest in re.findall(r"\b(crate|super|self)::((?:\w+::)*(?:\w+|\{[^}]*\}))", code):
            if root == "crate":
                start = []
            elif root == "self":
                start = base
            else:
                start = base[:-1]
            heads = [rest]
            brace = re.match(r"((?:\w+::)*)\{([^}]*)\}", rest)
            if brace:
                heads = [brace.group(1) + item.strip() for item in brace.group(2).split(",") if item.strip()]
            for head in heads:
                segs = start + [s for s in head.split("::") if s and s != "self"]
                # The longest prefix that is a module is what is imported.
                for n in range(len(segs), 0, -1):
                    target = "::".join(segs[:n])
                    if target in modules:
                        if target != m:
                            edges[m].add(target)
                        break
        # A parent names its own children without a prefix (`context::linux`).
        for child in re.findall(r"^\s*(?:pub(?:\([\w:]+\))? )?mod (\w+);", code, re.M):
            target = "::".join(base + [child])
            if target in modules and re.search(rf"(?<![\w:]){child}::", code):
                edges[m].add(target)
    return edges


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
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
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    edges = graph()
    if "--dot" in sys.argv:
        print("digraph hybrid {")
        for m in sorted(edges):
            for n in sorted(edges[m]):
                print(f'  "{m}" -> "{n}";')
        print("}")
    found = cycles(edges)
    for comp in found:
        inner = [f"{a} -> {b}" for a in comp for b in sorted(edges[a]) if b in comp]
        print("cycle: " + ", ".join(inner), file=sys.stderr)
    print(f"{len(edges)} modules, {sum(len(v) for v in edges.values())} imports, {len(found)} cycle(s)")
    sys.exit(1 if found else 0)
