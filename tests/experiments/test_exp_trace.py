"""`apkern run ... --trace FILE`: valid trace-event JSON, a track per CPU, flows per forwarded call."""

from __future__ import annotations

import json

import pytest

from apkern.cli import main


def test_pipeline_trace_has_cpu_tracks_and_flows(tmp_path, capsys) -> None:
    path = tmp_path / "t.json"
    with pytest.raises(SystemExit) as e:
        main(["run", "pipeline", "--kernel", "apkern", "--cpus", "4", "--trace", str(path)])
    assert e.value.code == 0
    doc = json.loads(path.read_text())
    events = doc["traceEvents"]
    names = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert sorted(names) == [0, 1, 2, 3]
    assert "bootstrap" in names[0] and all("application" in names[i] for i in (1, 2, 3))
    slices = [e for e in events if e["ph"] == "X"]
    assert {e["tid"] for e in slices} == {0, 1, 2, 3}
    assert {"user", "kernel", "idle"} <= {e["cat"] for e in slices}
    assert all(e["dur"] > 0 and e["ts"] >= 0 for e in slices)
    # user code of the program runs on application processors only; the BSP runs bootstrap threads
    user_on_aps = [e for e in slices if e["cat"] == "user" and e["tid"] != 0]
    assert any(":app" in e["name"] for e in user_on_aps)
    assert not any(":app" in e["name"] for e in slices if e["tid"] == 0)
    # flows: every start has exactly one end with the same id, later, passing through the BSP
    flows: dict[int, list[dict]] = {}
    for e in events:
        if e["ph"] in "stf":
            flows.setdefault(e["id"], []).append(e)
    assert len(flows) >= 20
    for fid, evs in flows.items():
        phs = [e["ph"] for e in evs]
        assert phs[0] == "s" and phs[-1] == "f" and phs.count("s") == 1 and phs.count("f") == 1, fid
        assert [e["ts"] for e in evs] == sorted(e["ts"] for e in evs)
        assert evs[0]["tid"] != 0 and any(e["tid"] == 0 for e in evs[1:])
    stats = doc["otherData"]["stats"]
    assert stats["forwarded_calls"] >= len([f for f in flows.values() if f[-1]["tid"] != 0])
