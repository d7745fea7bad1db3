"""The NetworkX floor for `baton plan --json`: read the same spec, build a
DiGraph, take its topological generations, print them as JSON. Run as a
whole process: `python3 plan_networkx.py SPEC.json`."""

import json
import sys

import networkx


def main(path):
    with open(path) as spec:
        tasks = json.load(spec)["tasks"]
    graph = networkx.DiGraph()
    for task, body in tasks.items():
        graph.add_node(task)
        graph.add_edges_from((need, task) for need in body.get("needs", ()))
    levels = [sorted(level) for level in networkx.topological_generations(graph)]
    json.dump({"levels": levels}, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
