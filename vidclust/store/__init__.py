"""SOURCE in, OUT out: listing the videos of a SOURCE, the layout of OUT, the output contract
(schemas, metadata, atomic writes, committed output sets), the writer lock and run.json.
Imports no half and never Ray."""
