#!/usr/bin/env python3
"""Checks that README.md's C++ is code that compiles and runs.

Every ```cpp block of README.md must be, verbatim, a marked region of a source file
under examples/ (which the build compiles and ctest runs), and every marked region must
be quoted in README.md. A region is the lines between

    // [readme:NAME]
    // [/readme]

with the indentation they share removed. Exit status 0 when all match, 1 with one line
per problem otherwise.

    check_readme_snippets.py [--readme README.md] [--examples examples/]
    check_readme_snippets.py --self-test    # the check catches a drifted block and an unquoted region
"""
import argparse
import pathlib
import re
import sys
import tempfile
import textwrap

ROOT = pathlib.Path(__file__).resolve().parents[2]
BEGIN = re.compile(r"^\s*// \[readme:([A-Za-z0-9_-]+)\]\s*$")
END = re.compile(r"^\s*// \[/readme\]\s*$")
SOURCE_SUFFIXES = {".cpp", ".hpp", ".h", ".cc"}


def readme_blocks(text):
    """(line number, code) of each ```cpp block."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        if lines[i].strip() == "```cpp":
            start, body = i + 1, []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            if i == len(lines):
                raise SystemExit(f"README: the ```cpp block at line {start} is never closed")
            blocks.append((start, "\n".join(body)))
        i += 1
    return blocks


def regions(examples_dir):
    """{(file, name): code} of every marked region; problems with the markers."""
    found, problems = {}, []
    for path in sorted(examples_dir.rglob("*")):
        if path.suffix not in SOURCE_SUFFIXES or not path.is_file():
            continue
        rel = path.relative_to(examples_dir.parent) if examples_dir.parent in path.parents else path
        name, body, start = None, [], 0
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if BEGIN.match(line):
                if name is not None:
                    problems.append(f"{rel}:{number}: region '{BEGIN.match(line).group(1)}' starts inside '{name}'")
                name, body, start = BEGIN.match(line).group(1), [], number
            elif END.match(line):
                if name is None:
                    problems.append(f"{rel}:{number}: [/readme] without a region")
                else:
                    key = (str(rel), name)
                    if key in found:
                        problems.append(f"{rel}:{start}: region '{name}' is marked twice")
                    found[key] = textwrap.dedent("\n".join(body))
                name = None
            elif name is not None:
                body.append(line)
        if name is not None:
            problems.append(f"{rel}:{start}: region '{name}' is never closed")
    return found, problems


def check(readme_path, examples_dir):
    problems = []
    found, marker_problems = regions(examples_dir)
    problems += marker_problems
    blocks = readme_blocks(readme_path.read_text(encoding="utf-8"))
    by_code = {}
    for key, code in found.items():
        by_code.setdefault(code, []).append(key)
    quoted = set()
    for line, code in blocks:
        keys = by_code.get(code)
        if not keys:
            problems.append(f"{readme_path.name}:{line}: this ```cpp block is not a marked region of any file "
                            f"under {examples_dir.name}/ (mark the code it shows with // [readme:NAME] ... "
                            f"// [/readme], or copy the region again)")
        else:
            quoted.update(keys)
    for key in sorted(set(found) - quoted):
        problems.append(f"{key[0]}: region '{key[1]}' is not quoted in {readme_path.name}")
    if not blocks:
        problems.append(f"{readme_path.name}: no ```cpp block found")
    return problems


def self_test():
    """The check passes on the real files and fails on a drifted copy of each kind."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert not check(ROOT / "README.md", ROOT / "examples"), "the real README must pass first"
    blocks = readme_blocks(readme)
    assert blocks, "README has no ```cpp block"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        # One line of one block changed.
        fence = "```cpp\n" + blocks[0][1] + "\n```"
        lines = blocks[0][1].splitlines()
        lines[0] += "  // drifted"
        drifted = readme.replace(fence, "```cpp\n" + "\n".join(lines) + "\n```", 1)
        assert drifted != readme
        (tmp / "README.md").write_text(drifted, encoding="utf-8")
        problems = check(tmp / "README.md", ROOT / "examples")
        assert any("is not a marked region" in p for p in problems), problems
        assert any("is not quoted" in p for p in problems), problems
        # One block dropped: its region is reported as not quoted.
        dropped = readme.replace("```cpp\n" + blocks[-1][1] + "\n```", "", 1)
        assert dropped != readme
        (tmp / "README.md").write_text(dropped, encoding="utf-8")
        problems = check(tmp / "README.md", ROOT / "examples")
        assert problems and all("is not quoted" in p for p in problems), problems
        # A block that quotes no file at all.
        (tmp / "README.md").write_text(readme + "\n```cpp\nint main() {}\n```\n", encoding="utf-8")
        assert any("is not a marked region" in p for p in check(tmp / "README.md", ROOT / "examples"))
        # Unbalanced markers in an example.
        (tmp / "examples").mkdir()
        (tmp / "examples" / "x.cpp").write_text("// [readme:a]\nint x;\n", encoding="utf-8")
        assert any("never closed" in p for p in regions(tmp / "examples")[1])
    print("self-test ok: drifted, dropped and foreign blocks and unclosed regions are caught")
    return 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readme", type=pathlib.Path, default=ROOT / "README.md")
    parser.add_argument("--examples", type=pathlib.Path, default=ROOT / "examples")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    problems = check(args.readme, args.examples)
    for problem in problems:
        print(problem)
    if problems:
        return 1
    print(f"{args.readme.name}: every ```cpp block is a marked region of {args.examples.name}/, and every region is quoted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
