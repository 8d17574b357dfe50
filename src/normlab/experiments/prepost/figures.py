"""prepost: the seed's own table (seed 003 README, Performance Comparison), per variant over seeds."""
from normlab.report.metrics import final_val_bpb, final_val_loss, max_train_loss, mean_train_loss, min_train_loss
from normlab.report.tables import Row, metric_row, stat


def rows(groups) -> list[Row]:
    return [metric_row("Parameters", lambda r: r.summary.get("params"), groups, 0),
            metric_row("Avg loss (first 50 steps)", lambda r: mean_train_loss(r, first=50), groups, 2),
            metric_row("Avg loss (last 100 steps)", lambda r: mean_train_loss(r, last=100), groups, 2),
            metric_row("Max loss (first 20 steps)", lambda r: max_train_loss(r, first=20), groups, 2),
            metric_row("Min loss seen", min_train_loss, groups, 2),
            metric_row("Final val loss", final_val_loss, groups, 3),
            metric_row("Final val bits/byte", final_val_bpb, groups, 3),
            metric_row("Single-character samples (share)", _single_share, groups, 2),
            metric_row("Empty samples (share)", _empty_share, groups, 2),
            Row("Diverged runs", {v: stat([sum(r.status == "diverged" for r in rs)]) for v, rs in groups.items()}, 0)]


def _single_share(run):
    return sum(len(s) == 1 for s in run.samples) / len(run.samples) if run.samples else None


def _empty_share(run):
    return sum(not s for s in run.samples) / len(run.samples) if run.samples else None


def notes(groups) -> list[str]:
    return ["The embedded corpus is the 5,163 US Census first names; seed 003 used makemore's 32,033 names "
            "(`data.source=text:/path/to/names.txt` trains on those)."]
