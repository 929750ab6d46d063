#!/usr/bin/env python3
"""The layering, checked on the sources: which folder may include what.

CMake enforces the links (troupe_check_layers in cmake/TroupeLibrary.cmake);
this test enforces the includes, which the links cannot catch on their own
(a header-only include of <caf/...> compiles against /usr/include whatever a
target links). Each rule names a folder (its files, not its subfolders unless
listed) and the include prefixes forbidden there.

  check_layers.py SOURCE_DIR            exit 1 and name every violation
  check_layers.py SOURCE_DIR --self-test  show that a planted violation fails
"""
import pathlib
import re
import sys
import tempfile
import shutil

NETWORK = ["<caf/", "<openssl/", "<boost/asio", "<boost/beast"]
ABOVE_RUNTIME = ["kernels/", "models/", "actors/", "apps/"]
ACTOR_TARGETS = ["actors/protocol/", "actors/pipeline/", "actors/collectives/", "actors/ps/", "actors/training/",
                 "actors/cluster/"]

# folder -> forbidden include prefixes (quoted project paths or <system> ones)
RULES = {
    "runtime": NETWORK + ABOVE_RUNTIME + ["runtime/io/", "runtime/net/", "runtime/telemetry/"],
    # io may hash with OpenSSL's libcrypto (file digests), nothing of the network
    "runtime/io": ["<caf/", "<boost/asio", "<boost/beast"] + ABOVE_RUNTIME + ["runtime/net/",
                                                                  "runtime/telemetry/"],
    "runtime/telemetry": ["<caf/", "<openssl/"] + ABOVE_RUNTIME + ["runtime/net/"],
    "runtime/net": ABOVE_RUNTIME,
    "runtime/net/transport": ABOVE_RUNTIME,
    "runtime/net/security": ABOVE_RUNTIME,
    "kernels": NETWORK + ["models/", "actors/", "apps/", "runtime/io/", "runtime/net/",
                          "runtime/telemetry/"],
    "kernels/cpu": NETWORK + ["models/", "actors/", "apps/", "runtime/io/", "runtime/net/",
                              "runtime/telemetry/"],
    "models/layers": NETWORK + ["actors/", "apps/", "runtime/net/", "runtime/telemetry/",
                                "models/train/", "models/zoo", "models/partitioner",
                                "models/tensor_parallel", "models/layer_costs"],
    "models/train": NETWORK + ["actors/", "apps/", "runtime/net/", "runtime/telemetry/",
                               "models/zoo", "models/partitioner", "models/tensor_parallel",
                               "models/layer_costs"],
    "models": NETWORK + ["actors/", "apps/", "runtime/net/", "runtime/telemetry/"],
    "actors/plan": NETWORK + ["apps/", "runtime/net/", "runtime/telemetry/"] + ACTOR_TARGETS,
    "actors/protocol": ["apps/", "models/", "kernels/", "actors/plan/", "actors/collectives/",
                        "actors/ps/", "actors/pipeline/", "actors/training/", "actors/cluster/"],
    "actors/collectives": ["apps/", "actors/pipeline/", "actors/ps/", "actors/training/",
                           "actors/cluster/"],
    "actors/ps": ["apps/", "actors/pipeline/", "actors/collectives/", "actors/training/",
                  "actors/cluster/"],
    "actors/pipeline": ["apps/", "actors/training/", "actors/cluster/"],
    "actors/training": ["apps/", "actors/cluster/"],
    "actors/cluster": ["apps/"],
}

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"][^>"]+[>"])', re.M)


def violations(root: pathlib.Path):
    found = []
    for folder, forbidden in RULES.items():
        d = root / folder
        if not d.is_dir():
            found.append(f"{folder}: folder missing (the rules name it)")
            continue
        for f in sorted(list(d.glob("*.hpp")) + list(d.glob("*.cpp")) + list(d.glob("*.cu"))):
            for m in INCLUDE.finditer(f.read_text(errors="replace")):
                inc = m.group(1)
                path = inc[1:-1]
                for bad in forbidden:
                    hit = inc.startswith(bad) if bad.startswith("<") else path.startswith(bad)
                    if hit:
                        found.append(f"{f.relative_to(root)}: includes {inc} ({folder} must not "
                                     f"include {bad})")
    return found


def main():
    root = pathlib.Path(sys.argv[1]).resolve()
    if "--self-test" in sys.argv[2:]:
        # A copy of two folders with a planted upward include must fail.
        with tempfile.TemporaryDirectory() as tmp:
            t = pathlib.Path(tmp)
            for folder in RULES:
                (t / folder).mkdir(parents=True, exist_ok=True)
            shutil.copy(root / "actors/plan/plan.hpp", t / "actors/plan/plan.hpp")
            clean = violations(t)
            (t / "actors/plan/planted.hpp").write_text('#include <caf/actor.hpp>\n')
            (t / "runtime/planted.cpp").write_text('#include "actors/protocol/messages.hpp"\n')
            planted = violations(t)
            if clean or len(planted) != 2:
                print("self-test failed: clean", clean, "planted", planted)
                return 1
            print("self-test: planted violations found:", *planted, sep="\n  ")
            return 0
    found = violations(root)
    for v in found:
        print("layering:", v)
    if found:
        print(f"{len(found)} include(s) cross the layers (docs/architecture.md, "
              "\"Layers and where a change belongs\")")
        return 1
    print(f"layering: {len(RULES)} folders checked, no include crosses a layer")
    return 0


if __name__ == "__main__":
    sys.exit(main())
