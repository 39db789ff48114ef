"""BATCH: score a file of any size in chunks, the engine of ``modelpack predict`` for row files.

One step per module, in the order a row travels:

- :mod:`.readers`: CSV, JSON lines, Parquet and Arrow IPC files -> chunks of rows, each of which can
  be split (to isolate a bad row), decoded with the server's decoders, and located in the file;
- :mod:`.run`: the loop (read a chunk -> predict -> write), ``--keep`` columns, and what a bad row does
  (stop naming it, or go to the rejects file);
- :mod:`.writers`: predictions (and kept columns) -> CSV, JSON lines, Parquet, Arrow or the server's
  ``{"predictions": [...]}`` document, appended chunk by chunk to a temporary file renamed at the end;
- :mod:`.progress`: rows and rows/s on a terminal, nothing otherwise.

Memory holds a chunk or two at a time, whatever the file's size. Nothing here is imported by
``import modelpack``; pyarrow (the ``arrow`` extra) only when a Parquet or Arrow file is read or written.
"""
