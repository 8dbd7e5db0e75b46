"""The bookkeeping columns every cached split carries beside its model-facing ones."""

ROW_COLUMN = "__row__"  # the row's position in the manifest
ID_COLUMN = "__id__"  # the row's id (the manifest's id column, or its position)
SPLIT_COLUMN = "__split__"
