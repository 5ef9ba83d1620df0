"""Loader for ``nyu-mll/glue`` on the Hugging Face hub (needs internet; the GLUE folder does not)."""

from __future__ import annotations

import pandas as pd

from de3pipe.data.glue_dir import COLUMNS
from de3pipe.errors import De3Error
from de3pipe.data.tasks import GlueTask

HUB_DATASET = "nyu-mll/glue"


def read_task(task: GlueTask) -> dict[str, pd.DataFrame]:
    import datasets

    try:
        dataset = datasets.load_dataset(HUB_DATASET, task.name)
    except Exception as exc:  # noqa: BLE001 - any hub failure gets the same advice
        raise De3Error(
            f"could not load {HUB_DATASET}/{task.name} from the Hugging Face hub ({type(exc).__name__}: {exc}); "
            "if you are offline, point GLUE_DIR (or data.glue_dir) at a folder in the GLUE TSV layout"
        ) from None
    frames = {}
    for split, (_, hub_split) in task.splits.items():
        frame = dataset[hub_split].to_pandas()
        text_b = task.hub_columns[1] if task.is_pair else None
        frames[split] = pd.DataFrame(
            {
                "idx": frame["idx"].astype("int64"),
                "text_a": frame[task.hub_columns[0]],
                "text_b": frame[text_b] if text_b else None,
                "label": frame["label"].astype("int64"),
            },
            columns=COLUMNS,
        )
    return frames
