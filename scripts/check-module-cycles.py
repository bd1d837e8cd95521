#!/usr/bin/env python3
"""Fails when a module imports another that, directly or through others,
imports it back (an import cycle inside a crate).

The rule
--------
For each crate of the workspace (every directory with a Cargo.toml and a
src/ folder), each crate root under src/ (lib.rs, main.rs, bin/*.rs) and the
modules it declares form a graph:

- a node is a module: the crate root, or a `mod` declared in a file or
  inline (an inline module such as `mod tests { ... }` counts as part of the
  file's module: a test inside a module is that module's own code);
- an edge A -> B says that A's code names module B: a `use` of a path into B
  (`use crate::b::X`, `use super::b::{X, Y}`, `use b::X` for a child b), or a
  path written in code (`crate::b::f()`, `super::X`). The module named is the
  deepest declared module along the path (`crate::b::c::X` -> `b::c`).
  A module naming its own descendants (declaring them, re-exporting their
  items) is not an edge: a parent owns its children. A child naming its
  parent is an edge, so a cycle through the parent is still seen.
- comments (doc links included), string and character literals and
  `$crate` paths in macros are not references.

Every strongly connected component with more than one module is a cycle and
is reported with the references (file:line) that make it. Exit status 1 when
there is one, 0 otherwise.

Usage: check-module-cycles.py [ROOT]       check the workspace at ROOT (.)
       check-module-cycles.py --self-test  run the checker's own cases
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import unittest
from dataclasses import dataclass, field

SKIP_DIRS = {"target", ".git", ".venv", "bin", "node_modules", ".run"}


# --------------------------------------------------------------------------
# Lexing: keep the code, blank out comments and literals (line numbers kept).


def strip_code(text: str) -> str:
    """`text` with comments, string and char literals replaced by spaces
    (newlines kept, so that offsets still map to the same lines)."""
    out = []
    i, n = 0, len(text)

    def blank(s: str) -> str:
        return "".join(c if c == "\n" else " " for c in s)

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(text[i:j]))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif c in "br" and (m := RAW_STRING.match(text, i)) and (i == 0 or not _ident(text[i - 1])):
            end = '"' + m.group(1)
            j = text.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append(blank(text[i:j]))
            i = j
        elif c == '"' or (c == "b" and text.startswith('b"', i) and (i == 0 or not _ident(text[i - 1]))):
            j = i + (2 if c == "b" else 1)
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(blank(text[i:j]))
            i = j
        elif c == "'":
            # A char literal ('x', '\n', '\u{1F600}', '\'') or a lifetime ('a).
            m = CHAR_LITERAL.match(text, i)
            if m:
                out.append(blank(m.group(0)))
                i = m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


RAW_STRING = re.compile(r'b?r(#*)"')
CHAR_LITERAL = re.compile(r"'(\\(x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]{1,6}\}|.)|[^\\'])'", re.S)


def _ident(c: str) -> bool:
    return c.isalnum() or c == "_"


# --------------------------------------------------------------------------
# The module tree of one crate root.


@dataclass
class Module:
    path: tuple[str, ...]  # () for the crate root
    file: str
    code: str = ""  # stripped
    children: dict[str, "Module"] = field(default_factory=dict)
    # Inline modules: (start offset, end offset, path inside this file).
    inline: list[tuple[int, int, tuple[str, ...]]] = field(default_factory=list)


MOD_DECL = re.compile(
    r"(?<![\w$])(?:pub(?:\s*\([^)]*\))?\s+)?mod\s+(r#)?([A-Za-z_]\w*)\s*([;{])"
)


def load_tree(root_file: str) -> dict[tuple[str, ...], Module]:
    """Every file module reachable from `root_file` by `mod x;`, by path."""
    modules: dict[tuple[str, ...], Module] = {}

    def visit(path: tuple[str, ...], file: str, owns_dir: bool) -> Module:
        with open(file, encoding="utf-8") as f:
            code = strip_code(f.read())
        module = Module(path, file, code)
        modules[path] = module
        # Children of foo.rs live in foo/; of lib.rs, main.rs, mod.rs beside it.
        base = os.path.dirname(file)
        if not owns_dir:
            base = os.path.join(base, os.path.splitext(os.path.basename(file))[0])
        for m in MOD_DECL.finditer(code):
            name = m.group(2)
            if m.group(3) == "{":
                end = matching_brace(code, m.end() - 1)
                inner_path = inline_path(module, m.start()) + (name,)
                module.inline.append((m.end(), end, inner_path))
                continue
            inner = inline_path(module, m.start())
            child_dir = os.path.join(base, *inner)
            for candidate, owns in (
                (os.path.join(child_dir, name + ".rs"), False),
                (os.path.join(child_dir, name, "mod.rs"), True),
            ):
                if os.path.isfile(candidate):
                    child = visit(path + inner + (name,), candidate, owns)
                    module.children[name] = child
                    break
        return module

    visit((), root_file, True)
    # Register inline modules as nodes' children too, so that paths through
    # them resolve (they map to their file's module).
    for module in list(modules.values()):
        for _, _, inner in module.inline:
            parent = module
            for seg in inner:
                parent = parent.children.setdefault(seg, Module(parent.path + (seg,), module.file))
                modules.setdefault(parent.path, parent)
    return modules


def matching_brace(code: str, open_at: int) -> int:
    depth = 0
    for j in range(open_at, len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(code)


def inline_path(module: Module, offset: int) -> tuple[str, ...]:
    """The path of the innermost inline module around `offset` in the file."""
    best: tuple[str, ...] = ()
    for start, end, inner in module.inline:
        if start <= offset < end and len(inner) > len(best):
            best = inner
    return best


def file_module_of(modules, path: tuple[str, ...]) -> tuple[str, ...]:
    """The file module that holds `path` (an inline module maps to its file)."""
    while path and modules[path].file == modules[path[:-1]].file:
        path = path[:-1]
    return path


# --------------------------------------------------------------------------
# References.

USE_DECL = re.compile(r"(?<![\w$])use\s+([^;]*);")
CODE_PATH = re.compile(r"(?<![\w$:])((?:crate|super|self)(?:\s*::\s*(?:r#)?[A-Za-z_]\w*)+)")


def expand_use_tree(tree: str) -> list[list[str]]:
    """`a::{b, c::{d, e}}` -> [[a, b], [a, c, d], [a, c, e]] (segments only;
    `as` renames, `*` and `self` are dropped as leaves)."""
    tree = re.sub(r"\s+as\s+(r#)?\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)

    def parse(s: str, prefix: list[str]) -> list[list[str]]:
        s = s.strip(":")
        brace = s.find("{")
        if brace < 0:
            segs = [p for p in s.split("::") if p and p not in ("*", "self")]
            return [prefix + segs]
        head = [p for p in s[:brace].split("::") if p]
        body = s[brace + 1 : s.rfind("}")]
        results: list[list[str]] = []
        for part in split_top(body):
            if part:
                results.extend(parse(part, prefix + head))
        return results or [prefix + head]

    return parse(tree, [])


def split_top(s: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for c in s:
        if c == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        depth += c == "{"
        depth -= c == "}"
        cur.append(c)
    parts.append("".join(cur))
    return parts


def resolve(modules, here: tuple[str, ...], segs: list[str]) -> tuple[str, ...] | None:
    """The deepest declared module named by path `segs` written in module
    `here` (an inline module path), or None for another crate's path."""
    segs = [s[2:] if s.startswith("r#") else s for s in segs]
    if not segs:
        return None
    if segs[0] == "crate":
        base, rest = (), segs[1:]
    elif segs[0] in ("super", "self"):
        base, rest = here, segs
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                if not base:
                    return None
                base = base[:-1]
            rest = rest[1:]
    elif segs[0] in modules[here].children:
        base, rest = here, segs  # a relative path to a child (2018 edition)
    else:
        return None  # another crate, std, or an item in scope
    node = base
    for seg in rest:
        child = modules[node].children.get(seg)
        if child is None:
            break
        node = child.path
    return node


@dataclass(frozen=True)
class Ref:
    source: tuple[str, ...]
    target: tuple[str, ...]
    file: str
    line: int


def references(modules) -> list[Ref]:
    refs = []
    for module in modules.values():
        if not module.code or module.path and modules.get(module.path[:-1]) and modules[module.path[:-1]].file == module.file:
            continue  # inline modules are read with their file
        code = module.code

        def emit(offset: int, segs: list[str]) -> None:
            here = module.path + inline_path(module, offset)
            target = resolve(modules, here, segs)
            if target is None:
                return
            source = module.path
            target = file_module_of(modules, target)
            if target == source or target[: len(source)] == source:
                return  # itself, or one of its own descendants
            line = code.count("\n", 0, offset) + 1
            refs.append(Ref(source, target, module.file, line))

        uses = []
        for m in USE_DECL.finditer(code):
            uses.append((m.start(), m.end()))
            for segs in expand_use_tree(m.group(1)):
                emit(m.start(), segs)
        for m in CODE_PATH.finditer(code):
            if any(s <= m.start() < e for s, e in uses):
                continue
            emit(m.start(), re.sub(r"\s+", "", m.group(1)).split("::"))
    return refs


# --------------------------------------------------------------------------
# Cycles.


def strongly_connected(nodes, edges) -> list[list]:
    """Tarjan's algorithm, iterative; components with more than one node."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, ())))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def name(path: tuple[str, ...]) -> str:
    return "::".join(("crate",) + path)


def crate_roots(root: str) -> list[tuple[str, str]]:
    """(label, root file) of every crate root under `root`."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        if "Cargo.toml" not in filenames or not os.path.isdir(os.path.join(dirpath, "src")):
            continue
        crate = os.path.relpath(dirpath, root)
        src = os.path.join(dirpath, "src")
        for main in ("lib.rs", "main.rs"):
            if os.path.isfile(os.path.join(src, main)):
                found.append((f"{crate}/src/{main}", os.path.join(src, main)))
        bins = os.path.join(src, "bin")
        if os.path.isdir(bins):
            for entry in sorted(os.listdir(bins)):
                path = os.path.join(bins, entry)
                if entry.endswith(".rs"):
                    found.append((f"{crate}/src/bin/{entry}", path))
                elif os.path.isfile(os.path.join(path, "main.rs")):
                    found.append((f"{crate}/src/bin/{entry}/main.rs", os.path.join(path, "main.rs")))
    return found


def cycles_in(root_file: str) -> list[tuple[list, list[Ref]]]:
    """Each cycle of the crate rooted at `root_file`: its modules and the
    references between them."""
    modules = load_tree(root_file)
    refs = references(modules)
    edges: dict = {}
    for r in refs:
        edges.setdefault(r.source, set()).add(r.target)
    nodes = sorted({m for m in modules if file_module_of(modules, m) == m})
    result = []
    for component in strongly_connected(nodes, edges):
        members = set(component)
        inside = [r for r in refs if r.source in members and r.target in members]
        result.append((component, inside))
    return result


def check(root: str, out=sys.stdout) -> int:
    failures = 0
    for label, root_file in crate_roots(root):
        for component, inside in cycles_in(root_file):
            failures += 1
            print(f"{label}: import cycle between {', '.join(name(m) for m in component)}", file=out)
            seen = set()
            for r in sorted(inside, key=lambda r: (r.source, r.target, r.file, r.line)):
                if (r.source, r.target) in seen:
                    continue
                seen.add((r.source, r.target))
                where = os.path.relpath(r.file, root)
                print(f"    {name(r.source)} -> {name(r.target)}  ({where}:{r.line})", file=out)
    if failures:
        print(f"{failures} import cycle(s): a module must not import one that imports it back.", file=out)
        return 1
    return 0


# --------------------------------------------------------------------------
# The checker's own cases, on small synthetic crates.


class SelfTest(unittest.TestCase):
    def crate(self, files: dict[str, str]) -> list[list[str]]:
        with tempfile.TemporaryDirectory() as root:
            with open(os.path.join(root, "Cargo.toml"), "w") as f:
                f.write("[package]\n")
            for rel, text in files.items():
                path = os.path.join(root, "src", rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write(text)
            found = []
            for _, root_file in crate_roots(root):
                found.extend([name(m) for m in c] for c, _ in cycles_in(root_file))
            return found

    def test_two_modules_naming_each_other(self):
        cycles = self.crate({
            "lib.rs": "mod a;\nmod b;\n",
            "a.rs": "use crate::b::Thing;\n",
            "b.rs": "pub struct Thing;\nfn f() { crate::a::g(); }\n",
        })
        self.assertEqual(cycles, [["crate::a", "crate::b"]])

    def test_a_longer_cycle_through_super_and_nested_files(self):
        cycles = self.crate({
            "lib.rs": "pub mod net;\npub mod app;\n",
            "net/mod.rs": "pub mod wire;\n",
            "net/wire.rs": "use super::super::app::{Config, other::X};\n",
            "app.rs": "pub mod other;\npub fn f() -> crate::Root { todo!() }\n",
            "app/other.rs": "use crate::net::wire::Frame;\n",
        })
        self.assertEqual(cycles, [["crate::app::other", "crate::net::wire"]])

    def test_three_modules_in_a_ring(self):
        cycles = self.crate({
            "main.rs": "mod a; mod b; mod c;\n",
            "a.rs": "use crate::b;\n",
            "b.rs": "pub(crate) use crate::c::X as Y;\n",
            "c.rs": "fn f() { let _ = crate :: a :: f; }\n",
        })
        self.assertEqual(cycles, [["crate::a", "crate::b", "crate::c"]])

    def test_a_parent_owns_its_children(self):
        # Declaring and re-exporting children, and children naming their
        # parent, is not a cycle.
        cycles = self.crate({
            "lib.rs": "pub mod registry;\nuse registry::memory::Store;\n",
            "registry/mod.rs": "pub mod memory;\npub use memory::Store;\npub struct Record;\n",
            "registry/memory.rs": "use super::Record;\nuse crate::registry::Record as R;\npub struct Store;\n",
        })
        self.assertEqual(cycles, [])

    def test_a_cycle_through_a_parent(self):
        cycles = self.crate({
            "lib.rs": "pub mod registry;\npub mod config;\n",
            "registry/mod.rs": "pub mod redis;\nconst D: u64 = crate::config::D;\n",
            "registry/redis.rs": "use super::Record;\n",
            "config.rs": "use crate::registry::redis::Store;\n",
        })
        self.assertEqual(cycles, [["crate::config", "crate::registry", "crate::registry::redis"]])

    def test_comments_strings_and_macros_are_not_references(self):
        cycles = self.crate({
            "lib.rs": "mod a;\nmod b;\n",
            "a.rs": (
                "//! See [`crate::b::X`].\n"
                "/* crate::b::X /* nested */ crate::b */\n"
                "const S: &str = \"crate::b::X\";\n"
                "const R: &str = r#\"use crate::b;\"#;\n"
                "const C: char = '\"'; fn f<'a>(x: &'a str) {}\n"
                "macro_rules! m { () => { $crate::b::X } }\n"
                "use crate::b::X;\n"
            ),
            "b.rs": "// use crate::a;\nfn g() -> &'static str { \"crate::a::f\" }\npub struct X;\n",
        })
        self.assertEqual(cycles, [])

    def test_inline_test_modules_belong_to_their_file(self):
        cycles = self.crate({
            "lib.rs": "mod a;\nmod b;\n",
            "a.rs": "pub fn f() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::super::b::g;\n}\n",
            "b.rs": "pub fn g() {}\n",
        })
        self.assertEqual(cycles, [])
        cycles = self.crate({
            "lib.rs": "mod a;\nmod b;\n",
            "a.rs": "#[cfg(test)]\nmod tests {\n    use crate::b::g;\n}\n",
            "b.rs": "pub fn g() { super::a::f() }\n",
        })
        self.assertEqual(cycles, [["crate::a", "crate::b"]])

    def test_other_crates_and_relative_child_paths(self):
        cycles = self.crate({
            "lib.rs": "mod a;\nmod b;\n",
            "a.rs": "use std::fmt;\nuse serde::Serialize;\nuse other_crate::b::X;\nmod inner;\nuse inner::Y;\n",
            "a/inner.rs": "pub struct Y;\n",
            "b.rs": "use crate::a::f;\n",
        })
        self.assertEqual(cycles, [])

    def test_binaries_are_crates_of_their_own(self):
        cycles = self.crate({
            "lib.rs": "pub mod a;\n",
            "a.rs": "",
            "bin/tool/main.rs": "mod x;\nmod y;\n",
            "bin/tool/x.rs": "use crate::y::Y;\npub struct X;\n",
            "bin/tool/y.rs": "use crate::x::X;\npub struct Y;\n",
        })
        self.assertEqual(cycles, [["crate::x", "crate::y"]])


def main(argv: list[str]) -> int:
    if argv[1:2] == ["--self-test"]:
        suite = unittest.defaultTestLoader.loadTestsFromTestCase(SelfTest)
        result = unittest.TextTestRunner(verbosity=1).run(suite)
        return 0 if result.wasSuccessful() else 1
    root = argv[1] if len(argv) > 1 else "."
    return check(os.path.abspath(root))


if __name__ == "__main__":
    sys.exit(main(sys.argv))
