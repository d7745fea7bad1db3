#!/usr/bin/env python3
"""A stand-in review agent for `baton worker ... -- python3 review.py`.

It reads its task as JSON on stdin (prompt, input, the outputs of the tasks
it needs, run and task ids) and answers with JSON on stdout; a real agent
would put the prompt to a model here. Token usage under the `baton` key
goes into the run's usage totals.
"""
import json
import sys

task = json.load(sys.stdin)
size = int((task.get("input") or {}).get("size") or 0)
verdict = "approve" if size < 100 * 1024 * 1024 else "reject"
print(json.dumps({
    "verdict": verdict,
    "notes": f"{task['task_id']} of run {task['run_id']}: {task['prompt']}",
    "baton": {"tokens": len(task["prompt"].split()) * 3, "cost": 0.0004},
}))
