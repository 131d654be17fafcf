#!/usr/bin/env python3
"""A stand-in for ChRIS's pl-simpledsapp: copies every input file, adding a prefix to its name."""

import argparse
import shutil
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(prog="simpledsapp")
    parser.add_argument("inputdir")
    parser.add_argument("outputdir")
    parser.add_argument("--prefix", default="")
    parser.add_argument("--sleepLength", type=float, default=0)
    parser.add_argument("--ignoreInputDir", action="store_true")
    parser.add_argument("--dummyInt", type=int)
    parser.add_argument("--dummyFloat", type=float)
    parser.add_argument("--saveinputmeta", action="store_true")
    parser.add_argument("--saveoutputmeta", action="store_true")
    args = parser.parse_args()
    time.sleep(args.sleepLength)
    if args.ignoreInputDir:
        return 0
    source, target = Path(args.inputdir), Path(args.outputdir)
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        destination = target / path.relative_to(source).parent / (args.prefix + path.name)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
        print(f"{path.relative_to(source)} -> {destination.relative_to(target)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
