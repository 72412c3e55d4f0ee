"""The run directory: where a run lives and what it holds.

- :mod:`~pipeline.rundir.location`: a local folder or an object-store URL (:class:`Location`), atomic writes;
- :mod:`~pipeline.rundir.staging`: building a store aside and swapping it in; writing locally, then uploading;
- :mod:`~pipeline.rundir.credentials`: storage options screened before they are recorded;
- :mod:`~pipeline.rundir.layout`: every file, store and product name of a run (:class:`RunLayout`);
- :mod:`~pipeline.rundir.manifest`: ``manifest.json``, written when a run starts, checked when it resumes;
  the run directory checked and prepared before it is written;
- :mod:`~pipeline.rundir.ledger`: which tiles are finished, failed or pending, and their partial statistics;
- :mod:`~pipeline.rundir.lock`: one writer per run directory;
- :mod:`~pipeline.rundir.checksums` and :mod:`~pipeline.rundir.verified`: the finished stores' files
  against their checksum records;
- :mod:`~pipeline.rundir.status`: what ``status`` reports.
"""

__all__: list[str] = []
