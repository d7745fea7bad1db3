"""The Python floor for `baton plan --json`: read the same spec, order its
tasks in levels with the standard library's graphlib, print the levels as
JSON. Run as a whole process: `python3 plan_graphlib.py SPEC.json`."""

import graphlib
import json
import sys


def main(path):
    with open(path) as spec:
        tasks = json.load(spec)["tasks"]
    sorter = graphlib.TopologicalSorter()
    for task, body in tasks.items():
        sorter.add(task, *body.get("needs", ()))
    sorter.prepare()
    levels = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        levels.append(ready)
        sorter.done(*ready)
    json.dump({"levels": levels}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
