"""OMBRIA's unseen 2021 events as a user scores them: import them, score a briefly trained run by event (skips without ../shared)."""
import json

import pandas as pd


def test_ombria_events_import_and_score_by_event(run_gold, tmp_path, real_data):
    tiles, events, run = tmp_path / "ombria", tmp_path / "events", tmp_path / "run"
    run_gold("import", "--ombria", real_data / "ombria", "--out", tiles, "--limit", 24, "--val", 0.25)
    run_gold("import", "--ombria-events", real_data / "ombria" / "events2021", "--out", events)
    df = pd.read_csv(events / "manifest.csv")
    assert df.event.value_counts().to_dict() == {"FRANCE": 88, "TIMOR": 10} and set(df.split) == {"test"}
    assert df.tile.str.match(r"^(FRANCE|TIMOR)_\d{4}$").all()
    run_gold("train", "--out", run, f"data.root={tiles}", "model.variant=lightweight", "ablation=baseline",
             "epochs=1", "data.crop=64", "data.batch_size=4", "max_batches=3")
    ev = run_gold("evaluate", "--run", run, "--data", events, "--by-event")
    scores = json.loads((run / "events_scores.json").read_text())
    assert ev.stdout.splitlines()[0].strip().startswith("all ( 98 tiles): F1")
    for event, n in (("FRANCE", 88), ("TIMOR", 10)):                    # every pixel of the event's tiles, once
        s = scores["events"][event]
        assert s["tp"] + s["fp"] + s["fn"] + s["tn"] == n * 256 * 256, (event, s)
        assert s["tp"] + s["fn"] == df[df.event == event].changed_pixels.sum()
    run_gold("evaluate", "--run", run, "--data", events)                 # the plain evaluation: the same overall matrix
    whole = json.loads((run / "test_scores.json").read_text())["student"]
    assert all(whole[k] == scores["student"][k] for k in ("tp", "fp", "fn", "tn"))
    bad = run_gold("evaluate", "--run", run, "--data", tiles, "--by-event", check=False)
    assert bad.returncode == 2 and "manifest has no event column" in bad.stderr
