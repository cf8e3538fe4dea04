"""leadflow learns from won and lost leads: features as of a cut-off, a calibrated likelihood to
convert with its factors, honest evaluation beside the rules, and rules it proposes.

The pure parts (`activity`, `features`, `outcomes`, `training`, `model`, `proposals`) do no I/O;
`dataset` reads the stored history and `picture` draws a model's evaluation. docs/learning.md
tells the whole story.
"""
