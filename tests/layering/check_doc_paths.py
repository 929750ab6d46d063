#!/usr/bin/env python3
"""Every source path the docs name exists (README.md, docs/*.md).

docs/architecture.md tells a newcomer where each change belongs; a file that
moved or was split leaves it pointing at nothing. This test names each such
path with its line.

  check_doc_paths.py SOURCE_DIR              exit 1 on a path that does not exist
  check_doc_paths.py SOURCE_DIR --self-test  show that a planted dead path fails
"""
import pathlib
import re
import sys
import tempfile

PATH = re.compile(r"(?<![\w/.-])((?:runtime|kernels|models|actors|apps|tests|bench|scripts|cmake|data)"
                  r"/[\w./-]*\.(?:hpp|cpp|py|sh|cmake|md|json|txt|cu))")


def dead_paths(root: pathlib.Path, docs):
    found = []
    for doc in docs:
        for n, line in enumerate(doc.read_text().splitlines(), 1):
            for m in PATH.finditer(line):
                if not (root / m.group(1)).exists():
                    found.append(f"{doc.relative_to(root)}:{n}: {m.group(1)} does not exist")
    return found


def main():
    root = pathlib.Path(sys.argv[1]).resolve()
    docs = [root / "README.md"] + sorted((root / "docs").glob("*.md"))
    if "--self-test" in sys.argv[2:]:
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            planted = pathlib.Path(tmp) / "planted.md"
            planted.write_text("see actors/pipeline/no_such_file.cpp and actors/plan/plan.hpp\n")
            found = dead_paths(root, [planted])
        if len(found) != 1 or "no_such_file" not in found[0]:
            print("self-test failed:", found)
            return 1
        print("self-test: planted dead path found:", found[0])
        return 0
    found = dead_paths(root, docs)
    for f in found:
        print("docs:", f)
    if found:
        return 1
    print(f"docs: every source path named in {len(docs)} files exists")
    return 0


if __name__ == "__main__":
    sys.exit(main())
